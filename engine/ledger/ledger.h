#ifndef CAREWATCH_ENGINE_LEDGER_LEDGER_H_
#define CAREWATCH_ENGINE_LEDGER_LEDGER_H_

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"
#include "engine/ledger/derive.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/merkle.h"

namespace carewatch::ledger {

class WriterLock;  // pg_backend.h

// One row of the event log as stored.
struct StoredEvent {
  uint64_t seq = 0;
  int type = 0;
  int64_t time = 0;     // unix seconds of the event
  std::string payload;  // deterministic serialisation of v1::LedgerEvent
  Hash leaf_hash;       // LeafHash(payload)
};

// Counts of reports for the regulator's statistics, per service, day
// (YYYY-MM-DD, UTC), surface and reason. Unmatched reports exist only here.
struct StatsRow {
  std::string service_id, day, surface, reason;
  int64_t reports = 0;
  int64_t flagged = 0;
};

// One report the service has seen, flagged or not: the idempotency index,
// keyed by (service_id, report_id). Rows of flagged reports are derived from
// their REPORT_FLAGGED event by the backend; rows of reports that matched
// nothing are written explicitly with their batch.
struct ReportIndexRow {
  std::string service_id, report_id;
  std::string digest;           // hex HMAC-SHA256 of the report as submitted
  uint64_t seq = 0;             // its REPORT_FLAGGED event; 0 when it matched nothing
  int64_t recorded_at = 0;      // server time of the first submission
  std::string ruleset_version;  // the rule set that judged it
};

// A signal token as stored (docs/signals.md): kept until retention or until
// its service withdraws it, never in the log itself.
struct SignalRow {
  std::string kind, token;  // token: the 64-byte OPRF output
  std::string service_id, report_id, category;
  int64_t recorded_at = 0;  // server time
};

// The token an alert was raised for: how a withdrawal finds the alerts it
// affects. Kept and pruned with the tokens.
struct AlertTokenRow {
  std::string alert_id, service_id, kind, token;
  int64_t recorded_at = 0;
};

// An alert as the store holds it.
struct AlertRecord {
  v1::LinkageAlert alert;    // with status, feedback and cursor current
  int64_t delivered_at = 0;  // server time of its LINKAGE_DETECTED event
  int64_t reviewed_at = 0;   // claimed time of the first review (0: none)
  bool breached = false;     // its review obligation was breached
};

struct AlertQuery {
  std::string service_id;  // empty: any
  std::string alert_id;    // exactly this one
  std::string status;      // open | withdrawn | empty: any
  uint64_t after_seq = 0;  // alerts whose latest event is after this seq
  int64_t delivered_from = INT64_MIN, delivered_to = INT64_MAX;
  size_t limit = 100;
};

// What one command adds to the store besides its events; written in the same
// transaction as them.
struct BatchExtras {
  std::vector<SignalRow> signals;
  std::vector<AlertTokenRow> alert_tokens;
  // Signals (and alert tokens) of (service_id, report_id) to delete.
  std::vector<std::pair<std::string, std::string>> withdraw_signals;
  // Retention: delete signals and alert tokens recorded before this (0: none).
  int64_t prune_signals_before = 0;
  std::vector<StatsRow> stats;
  std::vector<ReportIndexRow> reports;  // unflagged reports only
  // Retention: delete up to `prune_limit` index rows of unflagged reports
  // first recorded before this server time (0: none).
  int64_t prune_unflagged_before = 0;
  size_t prune_limit = 0;
  // Rows of `meta` to set in the same transaction (a key rotation's new
  // public key).
  std::vector<std::pair<std::string, std::string>> meta;
  // Commands of the unsequenced queue this batch sequences (PostgreSQL,
  // replicas): removed from the queue in the same transaction, so a command
  // is sequenced exactly once even if the writer dies right after.
  std::vector<int64_t> dequeue;
};

// The rows a ledger holds that its events alone cannot give: what a copy to
// another store carries besides the log (`carewatch ledger copy`).
struct CarriedRows {
  std::vector<std::pair<std::string, std::string>> meta;  // without schema_version
  std::vector<ReportIndexRow> unflagged;                  // index rows of unflagged reports
  std::vector<StatsRow> stats, stats_pending;
  std::vector<SignalRow> signals;
  std::vector<AlertTokenRow> alert_tokens;
};

// One part of a copy: written in one transaction into an empty store.
struct CopyChunk {
  std::vector<StoredEvent> events;
  std::vector<TreeNode> nodes;
  std::vector<v1::Checkpoint> checkpoints;
  const CarriedRows* carried = nullptr;
};

// One transaction of the writer: events, the subtrees they complete, an
// optional signed checkpoint, the rows derived from the events and the
// command's extras.
struct WriteSet {
  std::vector<StoredEvent> events;
  std::vector<TreeNode> nodes;  // level >= 1; level 0 is the events' leaf hashes
  const v1::Checkpoint* checkpoint = nullptr;
  DerivedBatch derived;
  BatchExtras extras;
  size_t* pruned = nullptr;  // receives the index rows the prune deleted
};

struct BreachQuery {
  std::string service_id, duty_id, rule_id;  // empty: any
  int64_t from = INT64_MIN, to = INT64_MAX;  // breach time (`at`), inclusive
  uint64_t after_seq = 0;                    // paging: rows after this seq
  size_t limit = 100;
};

struct FindingQuery {
  std::string service_id, duty_id, status;   // empty: any
  int64_t from = INT64_MIN, to = INT64_MAX;  // opened_at, or see `overlap`
  // True: [from, to] selects the findings open at some moment in it
  // (opened_at <= to, and still open or closed_at >= from): what a
  // regulator asking about a period means. False: opened_at in [from, to].
  bool overlap = false;
  std::string after_id;             // paging
  std::string finding_id;           // exactly this one
  bool with_obligation_ids = true;  // false: counters and people only
  size_t limit = 100;
};

// Storage for the ledger: rows in, rows out. Implementations: SQLite
// (embedded) now; PostgreSQL implements the same contract. A backend never
// interprets events: what events change besides themselves arrives derived
// (DerivedBatch, by shared code), so every backend stores the same rows.
//
// Contract:
// - Transactions. WriteBatch applies a whole WriteSet atomically and durably:
//   when it returns OK, all of it survives a crash or power loss; when it
//   fails, none of it is visible.
// - Ordering. WriteSets arrive in seq order with no gaps, from one writer
//   thread; a read started after WriteBatch returned sees all of it, and a
//   read never sees part of a WriteSet.
// - Reads may come from any thread at any time; implementations synchronise
//   them. Reads cost O(log n) per row found (indexes), except where a method
//   says it scans.
// - Errors are Unavailable (the store could not be reached or written) or
//   DataLoss (a row is malformed); nothing throws.
class LedgerBackend {
 public:
  virtual ~LedgerBackend() = default;
  virtual std::string url() const = 0;
  virtual Status GetMeta(const std::string& key, std::string* value, bool* found) = 0;
  virtual Status PutMeta(const std::string& key, const std::string& value) = 0;
  virtual Status WriteBatch(const WriteSet& w) = 0;
  // Housekeeping the writer thread runs between batches, after their
  // callers were answered (e.g. keeping a write-ahead log bounded).
  virtual void Maintain() {}

  // --- The log and its tree.
  // The number of events stored (the highest seq).
  virtual Status ReadTreeSize(uint64_t* size) = 0;
  // A stored subtree hash (NodeReader): level 0 reads an event's leaf hash.
  virtual Status ReadNode(int level, uint64_t index, Hash* out) = 0;
  // Stores subtree hashes outside an event batch (carrying a ledger written
  // before stored subtrees forward); idempotent.
  virtual Status WriteNodes(const std::vector<TreeNode>& nodes) = 0;
  // Every leaf hash in order (scans: for verifiers that read the whole log).
  virtual Status ReadLeafHashes(std::vector<Hash>* out) = 0;
  virtual Status ReadEvents(uint64_t from_seq, size_t limit, std::vector<StoredEvent>* out) = 0;
  // Every checkpoint, by tree size (scans: for verifiers).
  virtual Status ReadCheckpoints(std::vector<v1::Checkpoint>* out) = 0;
  // The checkpoint of exactly `tree_size` events, or with tree_size 0 the
  // latest; found false when there is none.
  virtual Status ReadCheckpoint(uint64_t tree_size, v1::Checkpoint* out, bool* found) = 0;

  // --- The engine's state.
  // The counters (kCounterNames) and the latest server time recorded.
  virtual Status ReadCounters(std::map<std::string, int64_t>* counters, int64_t* clock) = 0;
  // Open obligations (O(open)), from one snapshot: `row` hears each one,
  // without its actions, by sweep time; then `action` each action recorded
  // on an open obligation, in the order recorded. Nothing is gathered: a
  // restart holds one row at a time. A failure `row` returns ends the read.
  // The callbacks run inside the read: they must not call the backend.
  virtual Status EachOpenObligation(
      const std::function<Status(ObligationRow& row)>& row,
      const std::function<void(std::string_view obligation_id, ObligationActionRow&& action)>&
          action) = 0;
  // Open obligations with their actions, gathered (verifiers).
  Status ReadOpenObligations(std::vector<ObligationRow>* out);
  // Decided obligations whose deadline is after `deadline_after`, without
  // body or actions (O(rows returned)).
  virtual Status ReadDecidedObligations(int64_t deadline_after,
                                        std::vector<ObligationRow>* out) = 0;
  // A decided obligation as a systemic window counts it. The views are
  // valid during the callback only.
  struct WindowRow {
    std::string_view service_id, duty_id;
    int64_t deadline = 0;
    bool breached = false;
    // Breached only (empty otherwise):
    std::string_view obligation_id, breach_kind, finding_id;
    int64_t breach_at = 0;
  };
  // Calls `each`, by deadline, for every decided obligation whose deadline
  // is after `deadline_after` and that was breached or is due at
  // `held_from` or later: what a systemic window holds one by one. Reads
  // only what the windows need and holds no more than one row; the rest of
  // the decided obligations are counted by hour (EachWindowHour). `each`
  // runs inside the read: it must not call the backend.
  virtual Status EachWindowRow(int64_t deadline_after, int64_t held_from,
                               const std::function<void(const WindowRow&)>& each) = 0;
  // The first deadline EachWindowRow reads every decided obligation from:
  // after `deadline_after` and at `held_from` or later, as one bound (with
  // two, SQLite ranges over one and filters by the other, reading every
  // decided obligation after `deadline_after`).
  // REQUIRES: deadline_after < INT64_MAX (nothing is after INT64_MAX).
  static constexpr int64_t HeldFrom(int64_t deadline_after, int64_t held_from) {
    return std::max(deadline_after + 1, held_from);
  }
  // The length of a systemic window's hour, in seconds: what it counts by.
  static constexpr int64_t kWindowHour = 3600;
  // The hour a deadline falls in: floor(deadline / kWindowHour).
  static constexpr int64_t WindowHourOf(int64_t deadline) {
    return deadline / kWindowHour - (deadline % kWindowHour < 0 ? 1 : 0);
  }
  // The same in SQL, of a column `deadline` (both backends' integer
  // division truncates, as C++'s does); used to carry a ledger forward.
  static constexpr const char* kWindowHourSql =
      "(deadline / 3600 - CASE WHEN deadline % 3600 < 0 THEN 1 ELSE 0 END)";
  // SQL that counts window_hours again from the decided obligations, and
  // sets the counter of decisions it holds (kWindowHoursCounter) to met +
  // discharged + breached: for a ledger written before the table, or that
  // a carewatch from before it went on deciding in. Both backends.
  static std::string CountWindowHoursSql();
  // SQL of one row: (met + discharged + breached, kWindowHoursCounter).
  static std::string WindowHoursCountersSql();
  // The decided obligations of one (service, duty) whose deadlines fall in
  // one hour: a table written in the same transaction as the decisions
  // (window_hours), so that a restart reads a row an hour, not one an
  // obligation.
  struct WindowHourRow {
    std::string_view service_id, duty_id;
    int64_t hour = 0;
    int64_t decided = 0;
  };
  // Calls `each` for every row of window_hours with hour >= `from_hour`, by
  // hour (O(rows returned)). The views are valid during the callback only;
  // `each` must not call the backend.
  virtual Status EachWindowHour(int64_t from_hour,
                                const std::function<void(const WindowHourRow&)>& each) = 0;
  // The decided obligations of (service_id, duty_id) with from <= deadline
  // < to: (deadline, obligation_id), in any order.
  virtual Status ReadWindowDeadlines(const std::string& service_id, const std::string& duty_id,
                                     int64_t from, int64_t to,
                                     std::vector<std::pair<int64_t, std::string>>* out) = 0;
  virtual Status ReadObligation(const std::string& obligation_id, ObligationRow* out,
                                bool* found) = 0;
  // The current row of a finding (FindingReader).
  virtual Status ReadFinding(const std::string& finding_id, v1::Finding* out, bool* found) = 0;
  // The index row of (service_id, report_id), if the report was recorded
  // durably and, for a report that matched nothing, not yet past retention.
  virtual Status LookupReport(const std::string& service_id, const std::string& report_id,
                              ReportIndexRow* out, bool* found) = 0;
  // How LookupReport has answered since open: from a filter of the index's
  // ids held in memory (a report never indexed), or by reading the index.
  // `filter_ready`: the filter holds every id and answers.
  struct LookupStats {
    bool filter_ready = false;
    bool filter_restored = false;  // left by the last clean stop, not scanned
    uint64_t filtered = 0, read = 0;
  };
  virtual LookupStats lookup_stats() const { return {}; }
  // SQLite: the times a WAL restart was put off because a reader held an
  // old snapshot past a short wait (the WAL grows meanwhile; writes go on).
  virtual uint64_t wal_restarts_deferred() const { return 0; }

  // --- One snapshot for a whole check (read-only backends).
  // Until EndSnapshot, every read of a read-only backend sees the store as
  // one moment left it, however long the reads take and whatever a writer
  // of another process commits meanwhile: a check of the log against its
  // query tables, or a report, of a ledger that carewatchd is writing
  // (SQLite: one read transaction; PostgreSQL: one REPEATABLE READ
  // transaction on one connection). Reads then come from one thread. Calls
  // nest: the outermost pair opens and ends the snapshot. On a writable
  // backend both are no-ops: its process's own threads read it.
  virtual Status BeginSnapshot() { return Status::Ok(); }
  virtual void EndSnapshot() {}

  // --- Queries.
  virtual Status QueryBreaches(const BreachQuery& q,
                               std::vector<std::pair<uint64_t, v1::Breach>>* out) = 0;
  virtual Status QueryFindings(const FindingQuery& q, std::vector<v1::Finding>* out) = 0;
  virtual Status QueryStats(const std::string& service_id, const std::string& from_day,
                            const std::string& to_day, std::vector<StatsRow>* out) = 0;
  // Obligations opened per UTC day of their report's claimed received_at,
  // for reports received in [from, to] (seconds), as (day, count) in day
  // order; `service_id` empty: every service.
  virtual Status QueryObligationDays(const std::string& service_id, int64_t from, int64_t to,
                                     std::vector<std::pair<std::string, int64_t>>* out) = 0;
  // Report counts written but not yet in a STATS_ROLLUP event. Every batch
  // adds its statistics deltas here as well as to the statistics; a batch
  // holding a STATS_ROLLUP event subtracts the event's counts.
  virtual Status ReadStatsPending(std::vector<StatsRow>* out) = 0;
  // Event seqs that mention an obligation (for evidence chains).
  virtual Status EventsForObligation(const std::string& obligation_id,
                                     std::vector<uint64_t>* seqs) = 0;
  virtual Status FindingEvents(const std::string& finding_id, std::vector<uint64_t>* seqs) = 0;
  // The events behind a systemic window's denominator: for every obligation
  // of (service_id, duty_id) with deadline in (start, end] decided by an
  // event before `before_seq`, its OBLIGATION_OPENED and deciding event.
  virtual Status DenominatorEvents(const std::string& service_id, const std::string& duty_id,
                                   int64_t start, int64_t end, uint64_t before_seq,
                                   std::vector<uint64_t>* seqs) = 0;
  // Seqs of the events of `type` (RULESET_ACTIVATED, ACCOUNTABILITY_CHANGED,
  // KEY_ROTATED) before `before_seq` (at most INT64_MAX).
  virtual Status EventsOfType(int type, uint64_t before_seq, std::vector<uint64_t>* seqs) = 0;

  // --- Cross-platform signals (docs/signals.md).
  // Signals of (kind, token) recorded at or after `since` (server time).
  virtual Status LookupSignals(const std::string& kind, const std::string& token, int64_t since,
                               std::vector<SignalRow>* out) = 0;
  virtual Status SignalsOfReport(const std::string& service_id, const std::string& report_id,
                                 std::vector<SignalRow>* out) = 0;
  virtual Status AlertsOfToken(const std::string& kind, const std::string& token,
                               std::vector<AlertTokenRow>* out) = 0;
  // Alerts by cursor (seq of their latest event) order.
  virtual Status QueryAlerts(const AlertQuery& q, std::vector<AlertRecord>* out) = 0;
  // Blinded elements a service had evaluated on a UTC day (YYYY-MM-DD).
  virtual Status ReadSignalQuota(const std::string& service_id, const std::string& day,
                                 int64_t* used) = 0;

  // --- Copying a ledger to another store (engine/ledger/copy.h).
  // Every carried row (scans).
  virtual Status ReadCarried(CarriedRows* out) = 0;
  // Writes one part of a copy, in one transaction, into a store opened for
  // writing that held no events when the copy began. The tables derived
  // from events are derived again from the copied log when the store is
  // next opened. Unimplemented where a backend cannot be a copy's target.
  virtual Status WriteCopy(const CopyChunk& chunk) {
    return Status::FailedPrecondition("this ledger backend cannot be the target of a copy");
  }
};

// The deterministic serialisation of a message: the bytes hashed into a
// leaf (events) and into a report's digest.
std::string SerializeDeterministic(const google::protobuf::Message& m);

// An event's payload from its serialisation without a seq (`body`, the event
// serialised with seq 0) and its seq: seq is field 1, so deterministic
// serialisation writes it first, and the two are the same bytes
// (test `Ledger.APayloadFromItsBodyIsTheEventsSerialisation`).
std::string PayloadWithSeq(uint64_t seq, std::string_view body);

// Opens "sqlite:///abs/path.db", "sqlite://rel/path.db" or a plain path.
// `read_only` opens an existing ledger without creating or changing it.
// `busy_timeout_ms`: how long a write waits for a lock another process holds
// before it fails.
Status OpenBackend(const std::string& url, bool read_only, std::unique_ptr<LedgerBackend>* out,
                   int busy_timeout_ms = 10000, std::shared_ptr<WriterLock> writer_lock = nullptr);

// Whether `s` says another process holds the ledger's writer lock (a
// second carewatchd on one ledger; a standby waits while it is so).
bool IsLedgerInUse(const Status& s);

// The directory a ledger URL's file lives in ("." when none): the default home
// of its signing and HMAC keys.
std::string LedgerDirectory(const std::string& url);

// BeginSnapshot for a scope; `status()` says whether it began.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(LedgerBackend& backend) : backend_(backend) {
    status_ = backend_.BeginSnapshot();
  }
  ~ReadSnapshot() {
    if (status_.ok()) backend_.EndSnapshot();
  }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;
  const Status& status() const { return status_; }

 private:
  LedgerBackend& backend_;
  Status status_;
};

// The log's KEY_ROTATED events, oldest first: the last `limit` of them.
Status ReadKeyRotations(LedgerBackend& backend, size_t limit,
                        std::vector<v1::KeyRotationEntry>* out);

// The text a checkpoint's Ed25519 signature covers.
std::string CheckpointSignedText(uint64_t tree_size, const Hash& root, int64_t time);

struct LedgerOptions {
  std::string url = "sqlite://data/ledger.db";
  std::string signing_key_path;  // default: beside the ledger, ledger.key
  // The log's origin: the first line of every checkpoint and the name of its
  // key. Empty: the one the ledger recorded, else "carewatch/" + the first
  // 16 hex digits of the public key. A ledger keeps its origin for life.
  std::string origin;
  uint64_t checkpoint_every = 1000;       // events between signed checkpoints
  int64_t checkpoint_interval_ms = 1000;  // or this long, whichever first
  // Wall clock for checkpoint times (tests inject their own).
  std::function<int64_t()> now = nullptr;
  int busy_timeout_ms = 10000;  // see OpenBackend
  // How often report counts are rolled up into a STATS_ROLLUP event (also
  // at every Flush and on close).
  int64_t stats_rollup_interval_ms = 60000;
  // A PostgreSQL ledger's writer lock already taken (TryWriterLock): the
  // ledger's writer connection takes it over, so that no other process can
  // take the lock between the two (a replica taking over).
  std::shared_ptr<WriterLock> writer_lock;
};

// The append-only, tamper-evident event log: an RFC 6962 Merkle tree over
// events, signed checkpoints, proofs; group commit through one writer thread.
//
// Order of calls: Open -> Enqueue/Append from any thread -> destruction
// flushes, signs a final checkpoint and stops the writer.
class Ledger {
 public:
  class Ticket;

  static Status Open(const LedgerOptions& options, std::unique_ptr<Ledger>* out);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Assigns consecutive seqs to `events` (written into them) and queues them,
  // with `extras`, for the writer; events queued earlier get lower seqs. Wait
  // on the ticket for durability: everything queued with it is stored in one
  // transaction or not at all.
  std::shared_ptr<Ticket> Enqueue(std::vector<v1::LedgerEvent>* events, BatchExtras extras = {});
  // Enqueue and wait: returns once the events are durable (or failed). The
  // events are serialised on the calling thread, before the queue's lock,
  // so the writer only puts each seq in front (PayloadWithSeq).
  Status Append(std::vector<v1::LedgerEvent>* events);
  // Writes any pending statistics and signs a checkpoint now; waits.
  Status Flush();
  // Hands the log over to `next`: appends a KEY_ROTATED event naming the
  // verifier keys before and after (and `reason`), signs the checkpoint
  // that covers it with both keys, and records `next` as the ledger's key,
  // all in one transaction. Every later checkpoint is signed by `next`
  // alone, and the ledger opens with `next` only. Whoever trusts either key
  // can follow the log across the handover (VerifyLedger).
  // REQUIRES: nothing else reads key() meanwhile (`carewatch key rotate`
  // holds the ledger to itself).
  Status RotateKey(std::unique_ptr<SigningKey> next, const std::string& reason);
  // Deletes up to `limit` index rows of unflagged reports first recorded
  // before `before` (server time); waits. `deleted` (may be null) receives
  // how many were.
  Status PruneUnflagged(int64_t before, size_t limit, size_t* deleted = nullptr);

  // Events durably written so far.
  uint64_t size() const;
  Status LatestCheckpoint(v1::Checkpoint* out) const;
  Status InclusionProof(uint64_t seq, uint64_t tree_size, std::vector<Hash>* proof) const;
  Status ConsistencyProof(uint64_t size1, uint64_t size2, std::vector<Hash>* proof) const;
  Status RootAt(uint64_t size, Hash* root) const;

  // Transactions written so far (for benchmarks: events / commits is the
  // mean group-commit size).
  uint64_t commits() const;

  LedgerBackend& backend() { return *backend_; }
  const SigningKey& key() const { return *key_; }
  const std::string& origin() const { return origin_; }
  // The verifier key string regulators use: "<origin>+<key id>+<key>".
  std::string VerifierKey() const;
  // The same key as a PEM public key (for `verify --pubkey` and OpenSSL).
  std::string PublicKeyPem() const;
  // The signed checkpoint of exactly `tree_size` events.
  Status CheckpointAt(uint64_t tree_size, v1::Checkpoint* out) const;
  // OK, or why the ledger cannot write now: a write failing and being
  // retried (it clears itself when the write succeeds), or a failure that
  // stops writes until restart.
  Status health() const;
  // Writes retried after a transient failure, since open.
  uint64_t write_retries() const;

 private:
  Ledger() = default;
  // Below this many queued tickets the writer yields its CPU once before
  // taking them (WriterLoop). 64 rather than 16 since unary calls are
  // answered without a waiting thread: streamed reports about 6% faster,
  // unary calls and the ledger benchmark unchanged (docs/performance.md).
  static constexpr size_t kGatherBelow = 64;
  void WriterLoop();
  std::shared_ptr<Ticket> EnqueueTicket(std::shared_ptr<Ticket> ticket,
                                        std::vector<v1::LedgerEvent>* events);
  // Finishes the tickets of written batches, in order (see to_finish_).
  void FinisherLoop();
  // `written` receives the statistics deltas the batch stored.
  Status WriteOne(std::deque<std::shared_ptr<Ticket>>& batch, bool force_checkpoint,
                  std::vector<StatsRow>* written = nullptr);
  // Runs `attempt` again while it fails Unavailable (a fault that may clear
  // by itself: the database restarting, a lock held elsewhere, a full
  // disk), backing off from 10 ms to a second, until it succeeds, fails
  // otherwise or the ledger closes; health() says why meanwhile.
  // `durable`: the last seq written, for the message.
  Status RetryTransient(uint64_t durable, const std::function<Status()>& attempt);
  // Queues a STATS_ROLLUP of the counts written since the last one, if any.
  // REQUIRES: mu_ held.
  void QueueRollupLocked();
  // Reads stored subtrees for proofs.
  NodeReader Reader() const;

  LedgerOptions options_;
  std::unique_ptr<LedgerBackend> backend_;
  std::unique_ptr<SigningKey> key_;
  // The key a KEY_ROTATED event being written hands over to (RotateKey);
  // the writer signs that batch's checkpoint with both, then keeps it.
  std::unique_ptr<SigningKey> next_key_;
  std::string origin_;

  mutable std::mutex mu_;  // queue, seq counter, stats, error
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Ticket>> queue_;
  uint64_t next_seq_ = 1;
  // Counts written durably but not yet queued in a rollup, by (service,
  // day, surface, reason); and when the last rollup was queued.
  std::map<std::tuple<std::string, std::string, std::string, std::string>,
           std::pair<int64_t, int64_t>>
      unrolled_;
  int64_t last_rollup_ms_ = 0;
  bool stop_ = false;
  bool flush_requested_ = false;
  std::string degraded_;  // a transient write failure being retried ("" when none)
  uint64_t write_retries_ = 0;
  Status error_;

  mutable std::mutex tree_mu_;  // tree, durable size, checkpoints
  CompactTree tree_;            // O(log n) hashes; proofs read stored subtrees
  uint64_t durable_size_ = 0;
  uint64_t commits_ = 0;
  v1::Checkpoint latest_checkpoint_;
  uint64_t last_checkpoint_size_ = 0;
  int64_t last_checkpoint_ms_ = 0;

  // Batches written (or failed) whose tickets the finisher thread has yet
  // to finish, with their status, oldest first.
  std::mutex finish_mu_;
  std::condition_variable finish_cv_;
  std::deque<std::pair<std::deque<std::shared_ptr<Ticket>>, Status>> to_finish_;
  bool finish_stop_ = false;
  std::thread finisher_;
  std::thread writer_;
};

class Ledger::Ticket {
 public:
  // Blocks until the ticket's batch is durable or failed; any number of
  // threads may wait, any number of times.
  Status Wait();
  // Runs `then` with the outcome once the batch is durable or failed: at
  // once on this thread if it already is, else on the ledger's finisher
  // thread. `then` must not block nor wait for the ledger (a Flush, another
  // ticket): the finisher finishes every later batch, so waiting there
  // would wait for itself.
  void OnDone(std::function<void(const Status&)> then);

 private:
  friend class Ledger;
  std::vector<v1::LedgerEvent> events;
  // Empty, or each event serialised without its seq (Append).
  std::vector<std::string> bodies;
  BatchExtras extras;
  bool flush = false;
  size_t pruned = 0;  // a prune's deleted rows, once done
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;
  std::vector<std::function<void(const Status&)>> then;
  void Finish(const Status& s);
};

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_LEDGER_H_
