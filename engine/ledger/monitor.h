#ifndef CAREWATCH_ENGINE_LEDGER_MONITOR_H_
#define CAREWATCH_ENGINE_LEDGER_MONITOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/note.h"

namespace carewatch::ledger {

// What a monitor of a carewatchd (`carewatch verify --server`) decides about
// the checkpoints the server shows it, apart from how it asks for them.
// Everything the server sends comes from the party held to account, which
// also holds the signing key: a checkpoint it signed is its own word, and
// the monitor's job is to catch two words that disagree (a split view).

// The last checkpoint the monitor accepted (its --state file).
struct MonitorState {
  uint64_t size = 0;  // 0: none accepted yet
  Hash root;          // raw, 32 bytes when size > 0
};

// The state file's text: "SIZE HEXROOT\n" (64 lower-case hex digits).
std::string FormatMonitorState(const MonitorState& state);
// Parses FormatMonitorState's text. Empty text is an error (a crash can
// leave an empty file, and starting over would accept any log), as is
// anything but one size below 2^64 and one root.
Status ParseMonitorState(std::string_view text, MonitorState* out);

// Asks the server for the consistency proof between two of its tree sizes.
using ConsistencyFetch =
    std::function<Status(uint64_t first_size, uint64_t second_size, std::vector<Hash>* proof)>;

// One check of the server's current checkpoint `c`:
//  - its note is signed by `key` and names the key's log, its size and root;
//  - it is consistent with `state`: not smaller, the same root at the same
//    size, and a consistency proof from `fetch` that verifies when larger.
// On success `*state` becomes `c`'s size and root. A checkpoint that fails
// a check is Status::kDataLoss (an alert: the server's own word contradicts
// what it showed before, or is not its word); a failed `fetch` is returned
// as it is (the server may be down). `*state` changes only on success.
Status MonitorCheck(const TrustedKey& key, const v1::Checkpoint& c, const ConsistencyFetch& fetch,
                    MonitorState* state);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_MONITOR_H_
