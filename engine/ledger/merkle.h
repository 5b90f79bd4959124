#ifndef CAREWATCH_ENGINE_LEDGER_MERKLE_H_
#define CAREWATCH_ENGINE_LEDGER_MERKLE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/common/status.h"

namespace carewatch::ledger {

// 32 raw bytes.
using Hash = std::string;

// RFC 6962 section 2.1: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || l || r).
Hash LeafHash(std::string_view data);
Hash NodeHash(std::string_view left, std::string_view right);
Hash EmptyTreeHash();  // SHA-256 of the empty string

// Reads the hash of the complete aligned subtree over leaves
// [index << level, (index + 1) << level): level 0 is a leaf hash. NotFound
// when it is not stored.
using NodeReader = std::function<Status(int level, uint64_t index, Hash* out)>;

// Subtrees below this level are not stored (CompactTree::Append does not
// report them): StoredNodeReader computes one from its at most four leaves,
// which are neighbours in the log. They were three stored subtrees in four
// (about three rows for every four events appended), and storing subtrees
// about a sixth of the ledger writer's time (docs/performance.md).
inline constexpr int kLowestStoredLevel = 3;

// `read` (leaves and stored subtrees) completed by computing the subtrees of
// levels 1 to kLowestStoredLevel - 1 from their leaves.
NodeReader StoredNodeReader(NodeReader read);

// One complete aligned subtree (see NodeReader).
struct TreeNode {
  int level = 0;
  uint64_t index = 0;
  Hash hash;
};

// RFC 6962 roots and proofs from stored subtree hashes: O(log n) reads for a
// root or an inclusion proof, O(log^2 n) at most for a consistency proof.
// REQUIRES as MerkleTree's methods of the same names; errors are the reader's.
Status RootFromNodes(uint64_t n, const NodeReader& read, Hash* out);
Status InclusionProofFromNodes(uint64_t m, uint64_t n, const NodeReader& read,
                               std::vector<Hash>* out);
Status ConsistencyProofFromNodes(uint64_t m, uint64_t n, const NodeReader& read,
                                 std::vector<Hash>* out);

// The right edge of an append-only tree (a "compact range"): one hash per set
// bit of the size, so O(log n) memory however long the log. Appending reports
// the subtrees each leaf completes, for the store that serves proofs.
// Copyable: a writer keeps a copy to undo appends whose write failed.
class CompactTree {
 public:
  // The edge of a tree of `size` leaves, read from its stored subtrees.
  static Status Load(uint64_t size, const NodeReader& read, CompactTree* out);
  // Appends a leaf; `completed` (may be null) receives the subtrees of level
  // >= kLowestStoredLevel it completes: the ones a store keeps.
  void Append(const Hash& leaf_hash, std::vector<TreeNode>* completed);
  uint64_t size() const { return size_; }
  // MTH of all leaves appended.
  Hash Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<std::pair<int, Hash>> edge_;  // (level, hash), highest level first
};

// An append-only RFC 6962 Merkle tree over leaf hashes held in memory. Keeps
// every complete aligned subtree, so roots and proofs for any size cost
// O(log^2 n) hashes. For verifiers that read a whole log anyway; the ledger
// itself keeps a CompactTree and reads stored subtrees.
// Not thread-safe; callers serialise.
class MerkleTree {
 public:
  void Append(const Hash& leaf_hash);
  // Drops leaves after `size` (used when a write fails).
  void Truncate(uint64_t size);
  uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
  const Hash& leaf(uint64_t index) const { return levels_[0][index]; }

  // MTH(D[0:n]). REQUIRES: n <= size().
  Hash Root(uint64_t n) const;
  // PATH(m, D[0:n]) for leaf m. REQUIRES: m < n <= size().
  std::vector<Hash> InclusionProof(uint64_t m, uint64_t n) const;
  // PROOF(m, D[0:n]). REQUIRES: 0 < m <= n <= size().
  std::vector<Hash> ConsistencyProof(uint64_t m, uint64_t n) const;

 private:
  NodeReader Reader() const;
  // levels_[k][i] = hash of leaves [i * 2^k, (i + 1) * 2^k).
  std::vector<std::vector<Hash>> levels_;
};

// Verifiers that trust nothing but their inputs (RFC 9162 section 2.1.3 and
// 2.1.4 algorithms). They never consult a tree.
bool VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t tree_size,
                     const std::vector<Hash>& proof, const Hash& root);
bool VerifyConsistency(uint64_t size1, uint64_t size2, const Hash& root1, const Hash& root2,
                       const std::vector<Hash>& proof);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_MERKLE_H_
