#include "engine/ledger/merkle.h"

#include <openssl/evp.h>

#include <memory>

#include "engine/common/digest.h"

namespace carewatch::ledger {

namespace {

Hash Sha256(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           &EVP_MD_CTX_free);
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char out[32];
  unsigned int len = 0;
  EVP_DigestInit_ex(ctx.get(), md, nullptr);
  EVP_DigestUpdate(ctx.get(), a.data(), a.size());
  if (!b.empty()) EVP_DigestUpdate(ctx.get(), b.data(), b.size());
  if (!c.empty()) EVP_DigestUpdate(ctx.get(), c.data(), c.size());
  EVP_DigestFinal_ex(ctx.get(), out, &len);
  return Hash(reinterpret_cast<const char*>(out), len);
}

// Largest power of two smaller than n. REQUIRES: n > 1.
uint64_t SplitPoint(uint64_t n) {
  uint64_t k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}

bool IsPowerOfTwo(uint64_t n) { return n && !(n & (n - 1)); }

}  // namespace

Hash LeafHash(std::string_view data) { return Sha256(std::string_view("\x00", 1), data); }

Hash NodeHash(std::string_view left, std::string_view right) {
  return Sha256(std::string_view("\x01", 1), left, right);
}

Hash EmptyTreeHash() { return Sha256(""); }

void MerkleTree::Append(const Hash& leaf_hash) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf_hash);
  // Complete every subtree this leaf closes.
  size_t level = 0;
  while (levels_[level].size() % 2 == 0) {
    const auto& lower = levels_[level];
    Hash parent = NodeHash(lower[lower.size() - 2], lower[lower.size() - 1]);
    if (levels_.size() == level + 1) levels_.emplace_back();
    levels_[level + 1].push_back(std::move(parent));
    ++level;
  }
}

void MerkleTree::Truncate(uint64_t size) {
  for (size_t level = 0; level < levels_.size(); ++level) {
    uint64_t keep = size >> level;
    if (levels_[level].size() > keep) levels_[level].resize(keep);
  }
}

namespace {

// MTH(D[begin:end]) for the ranges RFC 6962's recursions visit: begin is a
// multiple of the largest power of two below end - begin.
Status SubtreeHash(uint64_t begin, uint64_t end, const NodeReader& read, Hash* out) {
  uint64_t n = end - begin;
  if (n == 0) {
    *out = EmptyTreeHash();
    return Status::Ok();
  }
  if (IsPowerOfTwo(n) && begin % n == 0) {
    int level = 0;
    while ((uint64_t{1} << level) < n) ++level;
    return read(level, begin >> level, out);
  }
  uint64_t k = SplitPoint(n);
  Hash left, right;
  Status s = SubtreeHash(begin, begin + k, read, &left);
  if (s.ok()) s = SubtreeHash(begin + k, end, read, &right);
  if (s.ok()) *out = NodeHash(left, right);
  return s;
}

Status SubProof(uint64_t m, uint64_t begin, uint64_t end, bool complete, const NodeReader& read,
                std::vector<Hash>* out) {
  uint64_t n = end - begin;
  Hash h;
  if (m == n) {
    if (complete) return Status::Ok();
    Status s = SubtreeHash(begin, end, read, &h);
    if (s.ok()) out->push_back(std::move(h));
    return s;
  }
  uint64_t k = SplitPoint(n);
  Status s = m <= k ? SubProof(m, begin, begin + k, complete, read, out)
                    : SubProof(m - k, begin + k, end, false, read, out);
  if (s.ok())
    s = m <= k ? SubtreeHash(begin + k, end, read, &h) : SubtreeHash(begin, begin + k, read, &h);
  if (s.ok()) out->push_back(std::move(h));
  return s;
}

}  // namespace

Status RootFromNodes(uint64_t n, const NodeReader& read, Hash* out) {
  return SubtreeHash(0, n, read, out);
}

Status InclusionProofFromNodes(uint64_t m, uint64_t n, const NodeReader& read,
                               std::vector<Hash>* out) {
  // PATH(m, D[begin:end]) per RFC 6962 2.1.1, iteratively from the top.
  std::vector<Hash> path;
  uint64_t begin = 0, end = n;
  while (end - begin > 1) {
    uint64_t k = SplitPoint(end - begin);
    Hash h;
    Status s = m - begin < k ? SubtreeHash(begin + k, end, read, &h)
                             : SubtreeHash(begin, begin + k, read, &h);
    if (!s.ok()) return s;
    path.push_back(std::move(h));
    if (m - begin < k) {
      end = begin + k;
    } else {
      begin += k;
    }
  }
  // The RFC lists the path bottom-up.
  out->assign(path.rbegin(), path.rend());
  return Status::Ok();
}

Status ConsistencyProofFromNodes(uint64_t m, uint64_t n, const NodeReader& read,
                                 std::vector<Hash>* out) {
  out->clear();
  if (m == 0 || m >= n) return Status::Ok();
  return SubProof(m, 0, n, true, read, out);
}

NodeReader MerkleTree::Reader() const {
  return [this](int level, uint64_t index, Hash* out) {
    if (static_cast<size_t>(level) >= levels_.size() || index >= levels_[level].size())
      return Status::NotFound("no subtree at level " + std::to_string(level));
    *out = levels_[level][index];
    return Status::Ok();
  };
}

Hash MerkleTree::Root(uint64_t n) const {
  Hash h;
  (void)RootFromNodes(n, Reader(), &h);  // every subtree of a held size is held
  return h;
}

std::vector<Hash> MerkleTree::InclusionProof(uint64_t m, uint64_t n) const {
  std::vector<Hash> proof;
  (void)InclusionProofFromNodes(m, n, Reader(), &proof);
  return proof;
}

std::vector<Hash> MerkleTree::ConsistencyProof(uint64_t m, uint64_t n) const {
  std::vector<Hash> proof;
  (void)ConsistencyProofFromNodes(m, n, Reader(), &proof);
  return proof;
}

Status CompactTree::Load(uint64_t size, const NodeReader& read, CompactTree* out) {
  CompactTree t;
  t.size_ = size;
  uint64_t offset = 0;
  for (int level = 63; level >= 0; --level) {
    if (!(size >> level & 1)) continue;
    Hash h;
    Status s = read(level, offset >> level, &h);
    if (!s.ok()) return s;
    t.edge_.emplace_back(level, std::move(h));
    offset += uint64_t{1} << level;
  }
  *out = std::move(t);
  return Status::Ok();
}

NodeReader StoredNodeReader(NodeReader read) {
  return [read = std::move(read)](int level, uint64_t index, Hash* out) -> Status {
    if (level == 0 || level >= kLowestStoredLevel) return read(level, index, out);
    if (level < 0) return Status::InvalidArgument("negative tree level");
    // The subtree's 2^level leaves, hashed pairwise up to its root.
    const uint64_t width = uint64_t{1} << level;
    std::vector<Hash> row(width);
    for (uint64_t i = 0; i < width; ++i) {
      Status s = read(0, (index << level) + i, &row[i]);
      if (!s.ok()) return s;
    }
    while (row.size() > 1) {
      std::vector<Hash> up;
      up.reserve(row.size() / 2);
      for (size_t i = 0; i + 1 < row.size(); i += 2) up.push_back(NodeHash(row[i], row[i + 1]));
      row.swap(up);
    }
    *out = std::move(row[0]);
    return Status::Ok();
  };
}

void CompactTree::Append(const Hash& leaf_hash, std::vector<TreeNode>* completed) {
  edge_.emplace_back(0, leaf_hash);
  ++size_;
  while (edge_.size() >= 2 && edge_[edge_.size() - 2].first == edge_.back().first) {
    int level = edge_.back().first + 1;
    Hash parent = NodeHash(edge_[edge_.size() - 2].second, edge_.back().second);
    edge_.pop_back();
    edge_.back() = {level, parent};
    if (completed && level >= kLowestStoredLevel) {
      completed->push_back({level, (size_ >> level) - 1, std::move(parent)});
    }
  }
}

Hash CompactTree::Root() const {
  if (edge_.empty()) return EmptyTreeHash();
  Hash root = edge_.back().second;
  for (size_t i = edge_.size() - 1; i-- > 0;) root = NodeHash(edge_[i].second, root);
  return root;
}

bool VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t tree_size,
                     const std::vector<Hash>& proof, const Hash& root) {
  if (index >= tree_size) return false;
  uint64_t fn = index, sn = tree_size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      if (!(fn & 1)) {
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

bool VerifyConsistency(uint64_t size1, uint64_t size2, const Hash& root1, const Hash& root2,
                       const std::vector<Hash>& proof) {
  if (size1 > size2) return false;
  if (size1 == size2) return proof.empty() && root1 == root2;
  if (size1 == 0) return proof.empty();
  std::vector<Hash> path = proof;
  if (IsPowerOfTwo(size1)) path.insert(path.begin(), root1);
  if (path.empty()) return false;
  uint64_t fn = size1 - 1, sn = size2 - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        while (fn != 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == root1 && sr == root2 && sn == 0;
}

}  // namespace carewatch::ledger
