#ifndef CAREWATCH_ENGINE_DUTY_DUTY_ENGINE_H_
#define CAREWATCH_ENGINE_DUTY_DUTY_ENGINE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"
#include "engine/duty/obligation.h"
#include "engine/eval/evaluator.h"
#include "engine/ledger/ledger.h"

namespace carewatch::duty {

struct DutyEngineOptions {
  // Key for the HMAC-SHA256 digests of text fields (no content is stored).
  std::string hmac_key;
  // Keep every breach and finding in memory for Breaches()/Findings()
  // (replay); the service reads them from the ledger instead.
  bool keep_history = false;
  // Wait for the ledger to make each command's events durable before
  // returning (the service). Batch jobs (replay) turn it off and Flush the
  // ledger at the end, so the writer can group many commands per commit.
  bool wait_durable = true;
};

// An action a platform reports against one of its reports.
struct ActionInput {
  std::string service_id;
  std::string report_id;
  std::string action;
  int64_t taken_at = 0;  // unix seconds
  std::string actor;
};

// The duty pipeline after evaluation: obligations (OPEN -> MET, DISCHARGED or
// BREACHED), the deadline sweeper, the systemic-failure detector and the
// accountability of senior managers. Event-sourced: every command produces
// ledger events and state changes only by applying them, so Recover()
// rebuilds the same state from the ledger after a restart.
//
// Time is the caller's: reports and actions carry their own timestamps, and
// Sweep(now) advances the clock (a wall-clock thread in the service, a
// simulated clock in `carewatch replay`). Thread-safe.
class DutyEngine {
 public:
  // `ledger` may be null (events are then numbered locally and not stored).
  DutyEngine(ledger::Ledger* ledger, DutyEngineOptions options);
  ~DutyEngine();

  // Rebuilds state from every event in the ledger. Call before anything else.
  Status Recover();

  // Serves `evaluator` from now on; records RULESET_ACTIVATED when its
  // version is new, and ACCOUNTABILITY_CHANGED for accountability records
  // not recorded before.
  Status Activate(std::shared_ptr<const eval::Evaluator> evaluator, int64_t now);
  std::shared_ptr<const eval::Evaluator> evaluator() const;

  // Evaluates and records a report; returns once its events are durable.
  // Idempotent on (service_id, report_id): a retry opens nothing new and
  // returns the first verdict. InvalidArgument names a missing field.
  Status SubmitReport(const v1::ContentReport& report, v1::Verdict* verdict);

  // Records an action and the transitions it causes. `obligations` receives
  // the report's obligations after it. Unknown reports, duplicate actions and
  // actions on closed obligations are recorded and change nothing.
  Status RecordAction(const ActionInput& action, std::vector<v1::Obligation>* obligations);

  // Advances the clock: every open obligation whose deadline is before `now`
  // is breached (missed), and findings are re-evaluated. A clock going
  // backwards is refused (FailedPrecondition) and changes nothing.
  Status Sweep(int64_t now);

  // The earliest deadline of an open obligation, if any.
  std::optional<int64_t> NextDeadline() const;
  int64_t clock() const;

  // History (keep_history only).
  std::vector<v1::Breach> Breaches() const;
  std::vector<v1::Finding> Findings() const;

  struct Counts {
    uint64_t reports = 0, flagged = 0, open = 0, met = 0, discharged = 0, breached = 0,
             findings_open = 0, events = 0;
  };
  Counts counts() const;

 private:
  struct TrackedObligation {
    v1::Obligation obligation;
    std::string service_id, report_id;
    int64_t received_at = 0;
    int64_t breach_at = 0;
    std::vector<ActionRecord> actions;
  };
  struct ReportState {
    v1::Verdict verdict;
    int64_t received_at = 0;
  };
  struct Window {
    std::vector<std::pair<int64_t, std::string>> breaches;  // (at, obligation id), sorted
    std::vector<int64_t> obligations;                       // received_at, sorted
    std::optional<v1::Finding> open;                        // the whole open finding
    std::set<std::string> in_finding;                       // its obligation ids
    std::vector<std::string> pending;                       // breaches since the last finding event
  };

  // Commands append events here (under mu_), then Commit() applies and
  // enqueues them.
  static v1::LedgerEvent NewEvent(v1::EventType type, int64_t time);
  Status Commit(std::vector<v1::LedgerEvent>* events, std::unique_lock<std::mutex>& lock);
  void Apply(const v1::LedgerEvent& e);
  void Detect(const std::string& service_id, const std::string& duty_id, int64_t now,
              std::vector<v1::LedgerEvent>* events);
  void BreachEvent(const TrackedObligation& ob, BreachKind kind, int64_t at,
                   std::vector<v1::LedgerEvent>* events);
  // Adds the breaches `ids` to f's accountable people (and unattributed).
  void AddAccountability(const std::vector<std::string>& ids, v1::Finding* f) const;
  // Applies `e` at once and keeps it for Commit.
  void Emit(std::vector<v1::LedgerEvent>* events, v1::LedgerEvent e);

  ledger::Ledger* ledger_;
  DutyEngineOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const eval::Evaluator> evaluator_;
  std::string active_version_;
  std::set<std::string> accountability_keys_;
  std::vector<rules::Accountability> accountability_;
  std::map<std::pair<std::string, std::string>, ReportState> reports_;
  std::unordered_set<std::string> seen_unflagged_;
  std::map<std::string, TrackedObligation> obligations_;
  std::multimap<int64_t, std::string> deadlines_;  // open obligations by deadline
  std::map<std::pair<std::string, std::string>, Window> windows_;
  std::map<std::string, v1::Finding> findings_;
  std::vector<v1::Breach> breaches_;
  std::set<std::string> extra_actions_;  // required by the active rules, beyond the vocabulary
  int64_t clock_ = INT64_MIN;
  uint64_t local_seq_ = 0;
  Counts counts_;
};

}  // namespace carewatch::duty

#endif  // CAREWATCH_ENGINE_DUTY_DUTY_ENGINE_H_
