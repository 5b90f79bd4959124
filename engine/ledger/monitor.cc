#include "engine/ledger/monitor.h"

#include <cerrno>
#include <cstdlib>

#include "engine/common/digest.h"

namespace carewatch::ledger {

namespace {

// Hashes in a consistency proof between two sizes below 2^64: at most one
// per level of the larger tree, and one more.
constexpr size_t kMaxProofHashes = 65;

}  // namespace

std::string FormatMonitorState(const MonitorState& state) {
  return std::to_string(state.size) + " " + HexEncode(state.root) + "\n";
}

Status ParseMonitorState(std::string_view text, MonitorState* out) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return Status::InvalidArgument(
        "it is empty where it should hold 'SIZE HEXROOT' (written and then lost, e.g. by a "
        "crash); restore it, or delete it to trust the server's current checkpoint afresh");
  }
  constexpr char kExpected[] = "expected 'SIZE HEXROOT' (a decimal size, 64 lower-case hex digits)";
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  const size_t space = text.find(' ');
  if (space == std::string_view::npos) return Status::InvalidArgument(kExpected);
  const std::string size_text(text.substr(0, space));
  const std::string_view root_hex = text.substr(space + 1);
  if (size_text.empty() || size_text.size() > 20 ||
      size_text.find_first_not_of("0123456789") != std::string::npos || root_hex.size() != 64) {
    return Status::InvalidArgument(kExpected);
  }
  errno = 0;
  const unsigned long long size = std::strtoull(size_text.c_str(), nullptr, 10);
  if (errno == ERANGE) return Status::InvalidArgument(kExpected);
  Hash root;
  if (!HexDecode(root_hex, &root)) return Status::InvalidArgument(kExpected);
  out->size = size;
  out->root = std::move(root);
  return Status::Ok();
}

Status MonitorCheck(const TrustedKey& key, const v1::Checkpoint& c, const ConsistencyFetch& fetch,
                    MonitorState* state) {
  Status s = key.VerifyCheckpoint(c);
  if (!s.ok()) return Status::DataLoss(s.message() + " (not signed by the published key)");
  const uint64_t size = c.tree_size();
  if (size > 0 && c.root_hash().size() != 32) {
    return Status::DataLoss("checkpoint at size " + std::to_string(size) +
                            ": its root is not 32 bytes");
  }
  if (state->size > size) {
    return Status::DataLoss("split view: the log shrank from " + std::to_string(state->size) +
                            " to " + std::to_string(size) + " events");
  }
  if (state->size == size) {
    if (size > 0 && state->root != c.root_hash()) {
      return Status::DataLoss("split view: two different roots for size " + std::to_string(size));
    }
  } else if (state->size > 0) {
    std::vector<Hash> proof;
    s = fetch(state->size, size, &proof);
    if (!s.ok()) return s;
    if (proof.size() > kMaxProofHashes) {
      return Status::DataLoss("the consistency proof from size " + std::to_string(state->size) +
                              " to " + std::to_string(size) + " holds " +
                              std::to_string(proof.size()) + " hashes (a proof needs at most " +
                              std::to_string(kMaxProofHashes) + ")");
    }
    for (const Hash& h : proof) {
      if (h.size() != 32) {
        return Status::DataLoss("the consistency proof from size " + std::to_string(state->size) +
                                " holds a hash of " + std::to_string(h.size()) + " bytes");
      }
    }
    if (!VerifyConsistency(state->size, size, state->root, c.root_hash(), proof)) {
      return Status::DataLoss("split view: the checkpoint at size " + std::to_string(size) +
                              " is not consistent with the one at size " +
                              std::to_string(state->size) + " accepted before");
    }
  }
  state->size = size;
  state->root = c.root_hash();
  return Status::Ok();
}

}  // namespace carewatch::ledger
