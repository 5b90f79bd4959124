#ifndef CAREWATCH_ENGINE_LEDGER_MERKLE_H_
#define CAREWATCH_ENGINE_LEDGER_MERKLE_H_

#include <cstdint>
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

// An append-only RFC 6962 Merkle tree over leaf hashes. Keeps every complete
// aligned subtree, so roots and proofs for any size cost O(log^2 n) hashes.
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
  Hash SubtreeHash(uint64_t begin, uint64_t end) const;  // MTH(D[begin:end])
  void SubProof(uint64_t m, uint64_t begin, uint64_t end, bool complete,
                std::vector<Hash>* out) const;
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
