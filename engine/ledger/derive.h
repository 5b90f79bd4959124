#ifndef CAREWATCH_ENGINE_LEDGER_DERIVE_H_
#define CAREWATCH_ENGINE_LEDGER_DERIVE_H_

#include <climits>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"

namespace carewatch::ledger {

// The event format that records server time (recorded_at) and record_grace.
constexpr uint32_t kTwoClockFormat = 2;

struct ObligationActionRow {
  std::string action;
  int64_t taken_at = 0;  // claimed, unix seconds
};

// An obligation as the engine tracks it: the obligations table. The row of an
// open obligation is what a restart needs to resume it; a decided one keeps
// what the systemic windows and evidence queries need.
struct ObligationRow {
  std::string obligation_id, service_id, report_id, duty_id, rule_id;
  int64_t deadline = 0;      // claimed-time arithmetic: received_at + the duty's deadline
  int64_t received_at = 0;   // claimed
  int64_t record_grace = 0;  // seconds
  int64_t sweep_at = 0;      // server time the sweeper breaches it if still open
  uint64_t opened_seq = 0, decided_seq = 0;  // decided_seq 0: open
  int status = v1::OBLIGATION_STATUS_OPEN;   // v1::ObligationStatus
  int64_t breach_at = 0;
  std::string breach_kind;                   // missed | late | late_recorded
  std::string finding_id;                    // the finding its breach belongs to
  std::string body;                          // v1::Obligation as opened, serialised
  std::vector<ObligationActionRow> actions;  // in the order recorded
};

// The server time the sweeper breaches an obligation opened by `opened` (an
// OBLIGATION_OPENED event) that is still open: record_grace after both its
// deadline and the moment carewatch opened it; with no grace, the deadline.
// Events written before two clocks were swept at the deadline itself.
int64_t SweepAt(const v1::LedgerEvent& opened);
// The record_grace an OBLIGATION_OPENED event gives (0 before two clocks).
int64_t RecordGraceOf(const v1::LedgerEvent& opened);

// Counter names of the engine's running totals (the counters table).
inline constexpr const char* kCounterNames[] = {"reports",    "flagged",  "open",         "met",
                                                "discharged", "breached", "findings_open"};
// A counter beside them: the decisions counted in window_hours, one a
// decision, as met + discharged + breached are. The two sums differ only
// when a carewatch from before window_hours decided obligations in the
// ledger; its next writable open counts the hours again (docs/storage.md).
inline constexpr const char* kWindowHoursCounter = "window_hours";

// Everything one batch of events changes in the store besides the events
// themselves: query rows, evidence indexes and the engine's state. Derived by
// shared code (Derive), so a backend only stores rows and never interprets
// events.
struct DerivedBatch {
  struct Decision {
    std::string obligation_id;
    uint64_t seq = 0;
    int status = 0;
    int64_t breach_at = 0;
    std::string breach_kind;
  };
  struct Action {
    std::string obligation_id;
    ObligationActionRow action;
  };
  struct FindingRow {
    v1::Finding finding;  // whole, as of this event, without obligation id lists
    uint64_t seq = 0;     // its last event
  };
  struct FindingMember {
    std::string finding_id, obligation_id;
    std::string name, role;  // empty: the finding's own list
  };
  struct Flagged {
    std::string service_id, report_id, digest, ruleset_version;
    uint64_t seq = 0;
    int64_t recorded_at = 0;
  };
  std::vector<ObligationRow> opened;
  std::vector<Action> actions;
  std::vector<Decision> decided;
  std::vector<std::pair<std::string, std::string>> in_finding;  // (obligation, finding)
  std::vector<std::pair<uint64_t, v1::Breach>> breaches;
  std::vector<FindingRow> findings;  // in event order; the last row of an id is current
  std::vector<FindingMember> finding_members;
  std::vector<std::pair<std::string, uint64_t>> obligation_events, finding_events;
  std::vector<std::pair<int, uint64_t>> key_events;  // (type, seq): rulesets, accountability, keys
  std::vector<Flagged> flagged;
  // Counts a STATS_ROLLUP put into the log: no longer pending.
  std::vector<std::tuple<std::string, std::string, std::string, std::string, int64_t, int64_t>>
      rolled_up;
  // Cross-platform signals: alerts as delivered and what later events change
  // in them, in event order.
  struct AlertChange {
    std::string alert_id;
    bool delivered = false;  // a LINKAGE_DETECTED: `alert` is its payload
    v1::LinkageAlert alert;
    int64_t delivered_at = 0;  // server time
    uint64_t seq = 0;          // 0: the cursor does not move
    std::string status;        // "" : unchanged
    std::string feedback;      // "" : unchanged
    int64_t reviewed_at = 0;   // 0: unchanged; else the earliest review wins
    bool breached = false;
  };
  std::vector<AlertChange> alert_changes;
  std::vector<std::tuple<std::string, std::string, int64_t>> signal_quota;  // (service, day, n)
  std::map<std::string, int64_t> counter_deltas;                            // kCounterNames
  int64_t clock = INT64_MIN;  // the latest server time the engine recorded
};

// Review obligations of a linkage alert are recorded under this report id
// prefix, followed by the alert id.
inline constexpr const char* kLinkageReportPrefix = "linkage:";
inline constexpr const char* kReviewAction = "review_linked_account";

// The current row of a finding (without id lists), if any.
using FindingReader =
    std::function<Status(const std::string& finding_id, v1::Finding* out, bool* found)>;

// Derives what `events` (consecutive, in seq order) change. Findings are
// recorded as deltas; `read` gives the row each starts from.
Status Derive(const std::vector<const v1::LedgerEvent*>& events, const FindingReader& read,
              DerivedBatch* out);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_DERIVE_H_
