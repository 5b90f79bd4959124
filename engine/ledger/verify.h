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
};

// Verifies a ledger from its rows alone, trusting nothing it stores about
// itself: every event's seq and position, every leaf hash recomputed from the
// payload, the Merkle root of every checkpoint recomputed from the leaves,
// every checkpoint signature, and consistency between consecutive
// checkpoints. `public_key_pem` empty: use the key the ledger names (checks
// internal consistency only; pass the deployment's published key to check
// provenance too).
VerifyReport VerifyLedger(LedgerBackend& backend, const std::string& public_key_pem);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_VERIFY_H_
