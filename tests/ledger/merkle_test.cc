#include "engine/ledger/merkle.h"

#include <gtest/gtest.h>

#include <map>

#include "engine/common/digest.h"

namespace carewatch::ledger {
namespace {

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// RFC 6962 reference data (certificate-transparency test vectors).
const char* kLeaves[] = {"",
                         "00",
                         "10",
                         "2021",
                         "3031",
                         "40414243",
                         "5051525354555657",
                         "606162636465666768696a6b6c6d6e6f"};
const char* kRoots[] = {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
                        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
                        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
                        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
                        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

MerkleTree ReferenceTree() {
  MerkleTree t;
  for (const char* leaf : kLeaves) t.Append(LeafHash(Unhex(leaf)));
  return t;
}

TEST(Merkle, RootsMatchRfc6962Vectors) {
  MerkleTree t = ReferenceTree();
  for (uint64_t n = 0; n <= 8; ++n) EXPECT_EQ(HexEncode(t.Root(n)), kRoots[n]) << "size " << n;
}

TEST(Merkle, InclusionProofsMatchRfc6962Vectors) {
  MerkleTree t = ReferenceTree();
  std::vector<Hash> p0 = t.InclusionProof(0, 8);
  ASSERT_EQ(p0.size(), 3u);
  EXPECT_EQ(HexEncode(p0[0]), "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
  EXPECT_EQ(HexEncode(p0[1]), "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e");
  EXPECT_EQ(HexEncode(p0[2]), "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4");
  std::vector<Hash> p5 = t.InclusionProof(5, 8);
  ASSERT_EQ(p5.size(), 3u);
  EXPECT_EQ(HexEncode(p5[0]), "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b");
  EXPECT_EQ(HexEncode(p5[1]), "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0");
  EXPECT_EQ(HexEncode(p5[2]), "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7");
}

TEST(Merkle, ConsistencyProofMatchesRfc6962Vector) {
  MerkleTree t = ReferenceTree();
  std::vector<Hash> p = t.ConsistencyProof(2, 8);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(HexEncode(p[0]), "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e");
  EXPECT_EQ(HexEncode(p[1]), "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4");
}

TEST(Merkle, EveryProofVerifiesAndTamperedOnesDoNot) {
  MerkleTree t;
  for (int i = 0; i < 37; ++i) t.Append(LeafHash("leaf-" + std::to_string(i)));
  for (uint64_t n = 1; n <= 37; ++n) {
    Hash root = t.Root(n);
    for (uint64_t m = 0; m < n; ++m) {
      std::vector<Hash> proof = t.InclusionProof(m, n);
      ASSERT_TRUE(VerifyInclusion(t.leaf(m), m, n, proof, root)) << m << " in " << n;
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion(t.leaf(m), (m + 1) % n, n, proof, root));
        std::vector<Hash> bad = proof;
        bad[0][0] ^= 1;
        EXPECT_FALSE(VerifyInclusion(t.leaf(m), m, n, bad, root));
      }
    }
    for (uint64_t m = 1; m <= n; ++m) {
      std::vector<Hash> proof = t.ConsistencyProof(m, n);
      ASSERT_TRUE(VerifyConsistency(m, n, t.Root(m), root, proof)) << m << " -> " << n;
      if (m < n) {
        Hash wrong = t.Root(m);
        wrong[0] ^= 1;
        EXPECT_FALSE(VerifyConsistency(m, n, wrong, root, proof));
      }
    }
  }
}

TEST(Merkle, TruncateRestoresAnEarlierTree) {
  MerkleTree t;
  for (int i = 0; i < 10; ++i) t.Append(LeafHash(std::to_string(i)));
  Hash root7 = t.Root(7);
  t.Truncate(7);
  EXPECT_EQ(t.size(), 7u);
  EXPECT_EQ(t.Root(7), root7);
  t.Append(LeafHash("x"));
  EXPECT_EQ(t.size(), 8u);
}

// The ledger keeps only a tree's right edge in memory and answers proofs from
// the subtrees it stored while appending: every root, edge and proof must be
// the full tree's.
TEST(CompactTree, StoredSubtreesGiveTheFullTreesRootsAndProofs) {
  MerkleTree full;
  CompactTree compact;
  std::map<std::pair<int, uint64_t>, Hash> stored;
  const int kLeaves = 70;
  for (int i = 0; i < kLeaves; ++i) {
    Hash leaf = LeafHash("leaf-" + std::to_string(i));
    full.Append(leaf);
    stored[{0, i}] = leaf;
    std::vector<TreeNode> completed;
    compact.Append(leaf, &completed);
    for (TreeNode& n : completed) {
      EXPECT_FALSE(stored.count({n.level, n.index})) << "subtree reported twice";
      stored[{n.level, n.index}] = n.hash;
    }
    EXPECT_EQ(compact.size(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(compact.Root(), full.Root(i + 1)) << "size " << i + 1;
  }
  // Every complete aligned subtree of a stored level was reported, and none
  // below: n leaves have floor(n / 2^level) of each level.
  size_t expected = 0;
  for (int level = kLowestStoredLevel; (kLeaves >> level) > 0; ++level)
    expected += kLeaves >> level;
  EXPECT_EQ(stored.size() - kLeaves, expected);
  for (const auto& [key, hash] : stored) {
    EXPECT_TRUE(key.first == 0 || key.first >= kLowestStoredLevel) << "level " << key.first;
  }
  int reads = 0;
  // The store's reader, completed with the levels computed from the leaves.
  NodeReader read = StoredNodeReader([&](int level, uint64_t index, Hash* out) {
    ++reads;
    auto it = stored.find({level, index});
    if (it == stored.end()) return Status::NotFound("missing");
    *out = it->second;
    return Status::Ok();
  });
  for (uint64_t n = 1; n <= kLeaves; ++n) {
    CompactTree loaded;
    reads = 0;
    ASSERT_TRUE(CompactTree::Load(n, read, &loaded).ok());
    // The edge is one read per set bit: one stored subtree or leaf, or the
    // 2 or 4 leaves of a subtree of level 1 or 2.
    int expected_reads = 0;
    for (int level = 0; level < 64; ++level) {
      if (n >> level & 1)
        expected_reads += level > 0 && level < kLowestStoredLevel ? 1 << level : 1;
    }
    EXPECT_EQ(reads, expected_reads) << "size " << n;
    EXPECT_EQ(loaded.Root(), full.Root(n));
    Hash root;
    ASSERT_TRUE(RootFromNodes(n, read, &root).ok());
    EXPECT_EQ(root, full.Root(n));
    for (uint64_t m = 0; m < n; ++m) {
      std::vector<Hash> proof;
      ASSERT_TRUE(InclusionProofFromNodes(m, n, read, &proof).ok());
      EXPECT_EQ(proof, full.InclusionProof(m, n)) << m << " in " << n;
      ASSERT_TRUE(ConsistencyProofFromNodes(m + 1, n, read, &proof).ok());
      EXPECT_EQ(proof, full.ConsistencyProof(m + 1, n)) << m + 1 << " -> " << n;
    }
  }
  // Appending to a loaded edge continues the same tree.
  CompactTree resumed;
  ASSERT_TRUE(CompactTree::Load(37, read, &resumed).ok());
  for (int i = 37; i < kLeaves; ++i) resumed.Append(LeafHash("leaf-" + std::to_string(i)), nullptr);
  EXPECT_EQ(resumed.Root(), full.Root(kLeaves));
  // A missing subtree is the reader's error, not a wrong hash.
  stored.erase({5, 1});
  stored.erase({6, 0});
  std::vector<Hash> proof;
  EXPECT_EQ(InclusionProofFromNodes(0, 64, read, &proof).code(), Status::Code::kNotFound);
  EXPECT_FALSE(CompactTree::Load(64, read, &resumed).ok());
}

}  // namespace
}  // namespace carewatch::ledger
