#ifndef CAREWATCH_ENGINE_LEDGER_VERIFY_H_
#define CAREWATCH_ENGINE_LEDGER_VERIFY_H_

#include <cstdint>
#include <string>

#include "engine/ledger/ledger.h"

namespace carewatch::ledger {

struct VerifyReport {
  bool ok = false;
  uint64_t events = 0;
  uint64_t checkpoints = 0;
  uint64_t unsigned_tail = 0;  // events after the last signed checkpoint
  uint64_t first_bad_seq = 0;  // 0 when ok or when no single event is to blame
  std::string message;         // what is wrong, naming the sequence number
  // True when the checkpoints were checked against a key the caller trusts;
  // false when only the key the ledger stores about itself was used
  // (integrity, not authenticity).
  bool authenticated = false;
};

// Verifies a ledger from its rows alone, trusting nothing it stores about
// itself: every event's seq and position, every leaf hash recomputed from the
// payload, the Merkle root of every checkpoint recomputed from the leaves,
// every checkpoint signature (C2SP notes, or the legacy signature of older
// checkpoints), and consistency between consecutive checkpoints.
// `trusted_key`: a verifier key string or PEM public key (TrustedKey::Load);
// empty: the key the ledger stores about itself, which proves integrity
// only, not who signed (report.authenticated says which).
VerifyReport VerifyLedger(LedgerBackend& backend, const std::string& trusted_key);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_VERIFY_H_
