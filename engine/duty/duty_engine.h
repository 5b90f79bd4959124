#ifndef CAREWATCH_ENGINE_DUTY_DUTY_ENGINE_H_
#define CAREWATCH_ENGINE_DUTY_DUTY_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"
#include "engine/duty/obligation.h"
#include "engine/eval/evaluator.h"
#include "engine/ledger/ledger.h"

namespace carewatch::duty {

// The earliest claimed time accepted (2000-01-01T00:00:00Z).
constexpr int64_t kMinClaimedTime = 946684800;

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
  // The server's clock, unix seconds: carewatchd's wall clock, a simulated
  // clock in `carewatch replay` and in tests. Unset: the wall clock.
  std::function<int64_t()> now;
  // A claimed time (received_at, taken_at) later than now() + this is refused.
  int64_t max_clock_skew_seconds = 300;
  // How much history the engine keeps beside open work, in server time:
  // decided obligations for the systemic windows (a duty's window may not be
  // longer) and the ids of reports that matched nothing, for idempotency.
  int64_t retention_seconds = 90 * 86400;
  // Largest number of unflagged report ids past retention deleted per
  // sweep: small, so the transaction never holds up acknowledgements. A full
  // batch prunes again at the next sweep; otherwise every 10 minutes.
  size_t prune_batch = 1000;
};

// An action a platform reports against one of its reports.
struct ActionInput {
  std::string service_id;
  std::string report_id;
  std::string action;
  int64_t taken_at = 0;  // claimed, unix seconds
  std::string actor;
  int32_t taken_at_nanos = 0;
  // The queue entry this action came from (a ledger shared by replicas):
  // removed from the queue in the transaction that records the action.
  int64_t queue_id = 0;
};

// Checks a time the platform claims: in [2000-01-01, now + max_skew], nanos
// in [0, 1e9). The error names `field`.
Status CheckClaimedTime(const char* field, int64_t seconds, int64_t nanos, int64_t now,
                        int64_t max_skew);

// The duty pipeline after evaluation: obligations (OPEN -> MET, DISCHARGED or
// BREACHED), the deadline sweeper, the systemic-failure detector and the
// accountability of senior managers. Event-sourced: every command produces
// ledger events and state changes only by applying them, so Recover()
// rebuilds the same state from the ledger after a restart.
//
// Two clocks (docs/duties.md): reports and actions carry the platform's
// claimed times, which decide deadlines and whether an action was on time;
// every event also records the server's own time (`recorded_at`, from
// options.now), and only server time moves the engine: the sweeper, the
// systemic windows, late recording and Recover() never follow a claimed time.
//
// Order of calls: Recover -> Activate -> SubmitReport / RecordAction / Sweep
// from any thread. Thread-safe.
class DutyEngine {
 public:
  // `ledger` may be null (events are then numbered locally and not stored).
  DutyEngine(ledger::Ledger* ledger, DutyEngineOptions options);
  ~DutyEngine();
  DutyEngine(const DutyEngine&) = delete;
  DutyEngine& operator=(const DutyEngine&) = delete;

  // Resumes from the state the ledger's store holds: open obligations, the
  // counters, the rule set and accountability in force, and the systemic
  // windows (decided obligations within retention). Costs what is open and
  // what is within retention, not the length of the log. Call before
  // anything else.
  Status Recover();

  // Serves `evaluator` from now on; records RULESET_ACTIVATED when its
  // version is new, and ACCOUNTABILITY_CHANGED for accountability records
  // not recorded before.
  Status Activate(std::shared_ptr<const eval::Evaluator> evaluator);
  std::shared_ptr<const eval::Evaluator> evaluator() const;

  // Evaluates and records a report; returns once its events are durable
  // (and, for a report that matched nothing, once it is counted durably).
  // Idempotent on (service_id, report_id): a retry with the same content
  // waits for the first submission and returns its verdict (or its error);
  // the same id with other content is AlreadyExists naming the first
  // submission. InvalidArgument names a missing or implausible field.
  //
  // With `pending`, returns once the report's events are queued for the
  // ledger: the verdict is filled, but it must not be answered before
  // pending->Wait() returns OK (durable). Callers that answer many reports
  // (EvaluateStream) keep more of them in one group commit this way.
  //
  // With `extracted`, a flagged new report's identifiers that the rules'
  // `extract:` leaves found are added to it (kind, value): for signal
  // tokens, never stored (a retry extracts nothing).
  class Pending;
  using Identifiers = std::vector<std::pair<std::string, std::string>>;
  Status SubmitReport(const v1::ContentReport& report, v1::Verdict* verdict,
                      Pending* pending = nullptr, Identifiers* extracted = nullptr);

  // The two halves of SubmitReport, for a ledger shared by replicas: a
  // replica that is not the writer checks and prepares a report (evaluates
  // it and computes its digests: what its REPORT_FLAGGED event holds, no
  // content) and queues it; the writer records the prepared report with
  // SubmitPrepared, as SubmitReport would have, removing queue entry
  // `queue_id` (0: none) in the same transaction. A prepared report
  // evaluated with another rule set than the active one is refused
  // (FailedPrecondition).
  static Status CheckReport(const v1::ContentReport& report, int64_t now, int64_t max_skew);
  static Status Prepare(const eval::Evaluator& evaluator, const std::string& hmac_key,
                        const v1::ContentReport& report, v1::ReportFlagged* out,
                        Identifiers* extracted = nullptr, const std::string* digest = nullptr);
  Status SubmitPrepared(const v1::ReportFlagged& prepared, v1::Verdict* verdict,
                        Pending* pending = nullptr, int64_t queue_id = 0);

  // Records an action and the transitions it causes. `obligations` receives
  // the report's obligations after it, `seq` (may be null) the seq of its
  // ACTION_RECORDED event. Unknown reports, duplicate actions and actions on
  // closed obligations are recorded and change nothing.
  Status RecordAction(const ActionInput& action, std::vector<v1::Obligation>* obligations,
                      uint64_t* seq = nullptr);

  // Advances the server clock to `now`: every open obligation whose
  // deadline + record_grace is before `now` (and which was opened more than
  // record_grace ago) is breached (missed), and the systemic windows are
  // re-evaluated. A clock going backwards is refused
  // (FailedPrecondition) and changes nothing.
  Status Sweep(int64_t now);

  // The earliest server time at which Sweep has an obligation to breach.
  std::optional<int64_t> NextSweepDue() const;
  // The server time of the last Sweep (INT64_MIN before the first).
  int64_t clock() const;

  // Reports and obligations held in memory (open work, and closed work not
  // yet durable): for tests of bounded memory.
  size_t reports_in_memory() const;
  size_t obligations_in_memory() const;
  // Deadlines of decided obligations the systemic windows hold one by one
  // (the rest are counts by hour), and their breaches.
  size_t window_deadlines_in_memory() const;
  // Rows the last read of the windows from the store returned (a restart's:
  // an hour's count is one row, as is each deadline held one by one).
  uint64_t window_rows_loaded() const;

  // History (keep_history only).
  std::vector<v1::Breach> Breaches() const;
  std::vector<v1::Finding> Findings() const;

  struct Counts {
    uint64_t reports = 0, flagged = 0, open = 0, met = 0, discharged = 0, breached = 0,
             findings_open = 0, events = 0;
  };
  Counts counts() const;

 private:
  // What every obligation of one rule owes alike: shared by them all, not
  // held once per open obligation.
  struct ObligationTerms {
    std::string rule_id, duty_id;
    std::vector<std::string> required_actions;
  };
  struct TrackedObligation {
    std::string id;
    std::shared_ptr<const ObligationTerms> terms;
    int64_t deadline = 0;  // seconds, and its nanos
    int32_t deadline_nanos = 0;
    std::string service_id, report_id;
    int64_t received_at = 0;
    int64_t record_grace = 0;
    int64_t sweep_at = 0;  // when the sweeper breaches it if still open
    std::vector<ActionRecord> actions;
    const std::string& duty_id() const { return terms->duty_id; }
    const std::string& rule_id() const { return terms->rule_id; }
    const std::vector<std::string>& required_actions() const { return terms->required_actions; }
  };
  // `ob` tracked from the obligation it was opened with (status open).
  void Track(const v1::Obligation& o, TrackedObligation* ob);
  // A report in memory (open work, or not yet durable). Its verdict is kept
  // serialised: a parsed one costs several times its bytes in memory, and it
  // is read only by actions on the report and retries of it.
  struct ReportState {
    std::string verdict;  // v1::Verdict, obligation statuses as last applied
    uint64_t ledger_seq = 0;
    int64_t received_at = 0;
    std::string digest;
    int open = 0;  // obligations still open
    v1::Verdict Verdict() const;
    void SetVerdict(const v1::Verdict& v);
  };
  // A breach inside a systemic window.
  struct WindowBreach {
    int64_t deadline = 0;
    std::string obligation_id;
    std::string kind;
    int64_t at = 0;          // breach time, for who was accountable
    std::string finding_id;  // the finding it belongs to, if any
    static bool Less(const WindowBreach& x, const WindowBreach& y) {
      return x.deadline != y.deadline ? x.deadline < y.deadline : x.obligation_id < y.obligation_id;
    }
  };
  // One (service, duty)'s systemic window: its decided obligations by
  // deadline, and its breaches. Memory does not hold every decided
  // obligation's deadline: with a ledger, only those of the hour before the
  // clock and later (`recent`) and of the hour the window starts in
  // (`edge`, read from the store when the window's start enters it); the
  // hours between are counts. Without a ledger every deadline stays in
  // `recent`. Either way a window counts to the second (docs/storage.md).
  struct Window {
    // Decided obligations by hour of deadline, in order of hour: only hours
    // that have some, 16 bytes each.
    struct HourCount {
      int64_t hour = 0;
      int64_t count = 0;
    };
    std::deque<HourCount> hours;
    // Counts `n` more decided obligations in `hour`.
    void CountHour(int64_t hour, int64_t n = 1);
    // The first hour after `hour` (hours.end() if none).
    std::deque<HourCount>::const_iterator HoursAfter(int64_t hour) const;
    std::deque<int64_t> recent;         // deadlines of hours >= recent_from, sorted
    int64_t recent_from = INT64_MIN;    // an hour
    std::deque<int64_t> edge;           // deadlines of hour edge_hour, sorted
    int64_t edge_hour = INT64_MIN;      // INT64_MIN: none held
    std::deque<WindowBreach> breached;  // by deadline
    std::optional<v1::Finding> open;    // the open finding's counters (no id lists)
  };
  // The hour a deadline falls in (floor(deadline / 3600)).
  static int64_t HourOf(int64_t t) { return ledger::LedgerBackend::WindowHourOf(t); }
  // A submission in progress; retries of the same report wait on it.
  struct Inflight {
    std::string digest;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
    v1::Verdict verdict;
  };
  using Key = std::pair<std::string, std::string>;  // (service_id, report_id)
  struct KeyHash {
    size_t operator()(const Key& k) const {
      const size_t a = std::hash<std::string>()(k.first);
      return a ^ (std::hash<std::string>()(k.second) + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
    }
  };
  // Adds a decided obligation's deadline to its window.
  void AddDue(const Key& window, Window& w, int64_t deadline, const std::string& obligation_id);
  // Decided obligations of `w` whose deadline is in (start, t], reading
  // the start's hour from the store when memory does not hold it. False
  // when that read fails.
  bool DueIn(const Key& window, Window& w, int64_t start, int64_t t, int64_t* due);
  // With a ledger: forgets the deadlines of hours before the one before
  // `t` (their counts stay).
  void TrimRecent(Window& w, int64_t t) const;
  // Reads the windows of the duties `want` accepts from the store: their
  // counts by hour from `horizon`'s hour on (window_hours), then the
  // breaches due after `horizon` and the deadlines of the hour before `now`
  // and later. Then SortWindows.
  Status LoadWindows(int64_t horizon, int64_t now,
                     const std::function<bool(std::string_view duty)>& want);

  v1::LedgerEvent NewEvent(v1::EventType type, int64_t time) const;
  int64_t ServerNow() const;
  // Enqueues `events` (and extras) for the ledger and waits, with `lock`
  // released, until they are durable; with `defer`, hands the wait to the
  // caller instead.
  Status Commit(std::vector<v1::LedgerEvent>* events, std::unique_lock<std::mutex>& lock,
                ledger::BatchExtras extras = {},
                std::shared_ptr<ledger::Ledger::Ticket>* defer = nullptr);
  void Apply(const v1::LedgerEvent& e);
  void Detect(const Key& window, int64_t t, std::vector<v1::LedgerEvent>* events);
  void BreachEvent(const TrackedObligation& ob, BreachKind kind, int64_t at, int64_t now,
                   std::vector<v1::LedgerEvent>* events);
  void CloseEvent(const TrackedObligation& ob, ObligationState state, int64_t at,
                  std::vector<v1::LedgerEvent>* events);
  // Adds the breaches `ids` to f's accountable people (and unattributed).
  void AddAccountability(const std::vector<const WindowBreach*>& breaches, v1::Finding* f) const;
  // The report as the store holds it (closed work leaves memory once durable).
  Status LoadReport(const Key& key, ReportState* out, bool* found) const;
  // Forgets reports whose obligations are all decided, once durable.
  void RetireDurable();
  // Adds decided obligations read from the store to their windows (then
  // SortWindows orders the breaches), finding each row's window among those
  // it found before.
  class WindowAdder {
   public:
    explicit WindowAdder(DutyEngine* engine) : engine_(engine) {}
    // The window of (service_id, duty_id), made if new.
    Window& Of(std::string_view service_id, std::string_view duty_id);

   private:
    DutyEngine* engine_;
    std::vector<std::tuple<std::string, std::string, Window*>> seen_;
  };
  void SortWindows();
  // Applies `e` at once and keeps it for Commit.
  void Emit(std::vector<v1::LedgerEvent>* events, v1::LedgerEvent e);
  // A retry's answer from what the first submission left.
  Status SubmitReportOnce(const v1::ContentReport& report, v1::Verdict* verdict, Pending* pending,
                          Identifiers* extracted);
  // Sets actions_done and actions_outstanding of `o` from what is recorded.
  // REQUIRES: mu_ held.
  void FillProgressLocked(v1::Obligation* o) const;
  Status Retry(const Key& key, const std::string& digest, const std::string& first_digest,
               const v1::Verdict& first, v1::Verdict* verdict,
               const std::string& first_described) const;
  Status SubmitNew(const v1::ContentReport& report, const std::string& digest, v1::Verdict* verdict,
                   std::shared_ptr<ledger::Ledger::Ticket>* defer, Identifiers* extracted);
  // One submission of (service_id, report_id) at a time: a retry waits for
  // the submission in flight and gets its outcome; `fresh` records a new one.
  Status Once(const std::string& service_id, const std::string& report_id,
              const std::string& digest, v1::Verdict* verdict, Pending* pending,
              const std::function<Status(std::shared_ptr<ledger::Ledger::Ticket>*)>& fresh);
  // A report recorded durably before: its answer (or AlreadyExists).
  Status Recorded(const std::string& service_id, const std::string& report_id,
                  const std::string& digest, v1::Verdict* verdict, bool* found);
  // Records a prepared report. REQUIRES: the report's Inflight entry held.
  Status Record(const v1::ReportFlagged& prepared, v1::Verdict* verdict,
                std::shared_ptr<ledger::Ledger::Ticket>* defer, int64_t queue_id);

  ledger::Ledger* ledger_;
  DutyEngineOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const eval::Evaluator> evaluator_;
  std::string active_version_;
  std::set<std::string> accountability_keys_;
  std::vector<rules::Accountability> accountability_;
  // Looked up by every report: hashed, not ordered (nothing iterates it in order).
  std::unordered_map<Key, ReportState, KeyHash>
      reports_;  // with open obligations, or not yet durable
  // Reports whose last open obligation was decided by events up to seq:
  // forgotten once the ledger holds them.
  std::deque<std::pair<uint64_t, Key>> retire_;
  std::vector<Key> to_retire_;  // decided in the command being built
  // Submissions in flight. Its own lock (taken inside mu_, never the other
  // way round): a submission's end may run on the ledger's finisher thread
  // (Pending::Then), which must not wait for mu_, whose holders may be
  // waiting for the ledger (Activate flushes it).
  std::mutex inflight_mu_;
  std::unordered_map<Key, std::shared_ptr<Inflight>, KeyHash> inflight_;
  // Digests of unflagged reports: without a ledger, or not waiting for
  // durability (batch jobs); otherwise the ledger's report index holds them.
  std::map<Key, std::string> seen_unflagged_;
  // Open only; looked up by id, never iterated in order.
  std::unordered_map<std::string, TrackedObligation> obligations_;
  // The terms tracked obligations share, by rule, duty and actions: as many
  // as the rules ever active in this process.
  std::map<std::string, std::shared_ptr<const ObligationTerms>> terms_;
  std::multimap<int64_t, std::string> sweep_due_;  // open obligations by deadline + grace
  std::map<Key, Window> windows_;
  // Decisions applied but perhaps not yet in the store: a window's start
  // hour read from the store adds those it does not hold (by obligation
  // id). decided_now_: the command being built's; undurable_: handed to
  // the ledger in the command that ended with event `seq`, forgotten once
  // the ledger holds it (RetireDurable).
  struct Decided {
    Key window;
    std::string obligation_id;
    int64_t deadline = 0;
    uint64_t seq = 0;
  };
  std::vector<Decided> decided_now_;
  std::deque<Decided> undurable_;
  uint64_t window_rows_loaded_ = 0;  // LoadWindows
  // How far back (seconds of deadline before the clock) memory holds each
  // duty's decided obligations; default_covered_ for duties not listed
  // (everything, without a ledger to read from; retention after Recover).
  std::map<std::string, int64_t> covered_;
  int64_t default_covered_ = INT64_MAX;
  std::map<std::string, v1::Finding> findings_;  // keep_history only
  std::vector<v1::Breach> breaches_;             // keep_history only
  std::set<std::string> extra_actions_;   // required by the active rules, beyond the vocabulary
  int64_t clock_ = INT64_MIN;             // the last Sweep
  int64_t decided_ = INT64_MIN;           // the latest server time anything was decided at
  int64_t last_prune_ = INT64_MIN;        // server time of the last retention prune
  std::atomic<bool> prune_behind_{true};  // the last prune deleted a full batch
  uint64_t local_seq_ = 0;
  Counts counts_;
};

// A submitted report not yet known to be durable (SubmitReport's `pending`).
class DutyEngine::Pending {
 public:
  Pending() = default;
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  // Finishes the submission: a retry waiting on it gets its outcome.
  ~Pending() { (void)Wait(); }
  // Blocks until the report is durable; OK, or the ledger's error (then the
  // report was not recorded and must not be acknowledged).
  Status Wait() {
    if (!done_) {
      done_ = true;
      status_ = ticket_->Wait();
      finish_(status_);
    }
    return status_;
  }
  // Instead of Wait: runs `then` with the same outcome once the report is
  // durable, without a thread waiting for it (on the ledger's finisher
  // thread, or on this one at once if the outcome is known). `then` must
  // not block (Ledger::Ticket::OnDone). Call at most once, not with Wait.
  void Then(std::function<void(const Status&)> then) {
    if (done_) {
      then(status_);
      return;
    }
    done_ = true;
    std::shared_ptr<ledger::Ledger::Ticket> ticket = std::move(ticket_);
    ticket->OnDone([finish = std::move(finish_), then = std::move(then)](const Status& s) {
      finish(s);
      then(s);
    });
  }

 private:
  friend class DutyEngine;
  std::shared_ptr<ledger::Ledger::Ticket> ticket_;
  std::function<void(const Status&)> finish_;
  Status status_;
  bool done_ = true;
};

}  // namespace carewatch::duty

#endif  // CAREWATCH_ENGINE_DUTY_DUTY_ENGINE_H_
