// The shared ledger backend on PostgreSQL (pg_backend.h).
#include "engine/ledger/pg_backend.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/common/thread_name.h"
#include "engine/ledger/derive.h"
#include "engine/ledger/report_filter.h"

namespace carewatch::ledger {

namespace {

// Advisory locks carewatch takes, keyed by (class, the ledger's schema):
// a ledger is the tables of the first schema on its search_path, so ledgers
// in different schemas or databases never meet. The writer's is held by the
// writer connection for as long as a carewatchd writes ("care" in ASCII);
// the migrations' per transaction, so replicas starting together apply each
// migration once.
constexpr const char* kWriterLock = "1667330661, hashtext(current_schema())";
constexpr const char* kMigrationLock = "1667330662, hashtext(current_schema())";

// Numbered migrations: each runs once, in order, in one transaction, and is
// recorded in schema_migrations. Append; never edit a released one.
struct Migration {
  int version;
  const char* description;
  const char* sql;
};
const Migration kMigrations[] = {
    {1, "the ledger schema of carewatch ledger version 4", R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE events (
  seq BIGINT PRIMARY KEY, type INTEGER NOT NULL, time BIGINT NOT NULL,
  payload BYTEA NOT NULL, leaf_hash BYTEA NOT NULL);
CREATE TABLE tree_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL,
  PRIMARY KEY (level, idx));
CREATE TABLE checkpoints (
  tree_size BIGINT PRIMARY KEY, root_hash BYTEA NOT NULL, time BIGINT NOT NULL,
  signature BYTEA NOT NULL, note BYTEA);
CREATE TABLE report_index (
  service_id TEXT NOT NULL, report_id TEXT NOT NULL, digest TEXT NOT NULL, seq BIGINT NOT NULL,
  recorded_at BIGINT NOT NULL, ruleset_version TEXT NOT NULL,
  PRIMARY KEY (service_id, report_id));
CREATE INDEX report_index_unflagged ON report_index (recorded_at) WHERE seq = 0;
CREATE TABLE stats_pending (
  service_id TEXT NOT NULL, day TEXT NOT NULL, surface TEXT NOT NULL, reason TEXT NOT NULL,
  reports BIGINT NOT NULL, flagged BIGINT NOT NULL,
  PRIMARY KEY (service_id, day, surface, reason));
CREATE TABLE stats (
  service_id TEXT NOT NULL, day TEXT NOT NULL, surface TEXT NOT NULL, reason TEXT NOT NULL,
  reports BIGINT NOT NULL, flagged BIGINT NOT NULL,
  PRIMARY KEY (service_id, day, surface, reason));
CREATE TABLE signal_tokens (
  kind TEXT NOT NULL, token BYTEA NOT NULL, service_id TEXT NOT NULL, report_id TEXT NOT NULL,
  category TEXT NOT NULL, recorded_at BIGINT NOT NULL,
  PRIMARY KEY (kind, token, service_id, report_id, category));
CREATE INDEX signal_tokens_report ON signal_tokens (service_id, report_id);
CREATE INDEX signal_tokens_time ON signal_tokens (recorded_at);
CREATE TABLE signal_alert_tokens (
  alert_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, kind TEXT NOT NULL, token BYTEA NOT NULL,
  recorded_at BIGINT NOT NULL);
CREATE INDEX signal_alert_tokens_token ON signal_alert_tokens (kind, token);
CREATE INDEX signal_alert_tokens_time ON signal_alert_tokens (recorded_at);
)sql"},
    {2, "the unsequenced queue of replicas' commands and the writer's answers", R"sql(
CREATE TABLE unsequenced (
  id BIGSERIAL PRIMARY KEY, service_id TEXT NOT NULL, report_key TEXT,
  digest TEXT NOT NULL, body BYTEA NOT NULL, accepted_at BIGINT NOT NULL);
CREATE UNIQUE INDEX unsequenced_report ON unsequenced (service_id, report_key);
CREATE TABLE sequenced (id BIGINT PRIMARY KEY, body BYTEA NOT NULL, answered_at BIGINT NOT NULL);
CREATE INDEX sequenced_time ON sequenced (answered_at);
)sql"},
};

// Tables derived from the events alone (DerivedBatch): dropped and derived
// again from the log when the derived schema's version changes.
const char* kDerivedTables[] = {"breaches",           "findings",          "finding_obligations",
                                "finding_events",     "obligation_events", "obligations",
                                "obligation_actions", "key_events",        "counters",
                                "signal_alerts",      "signal_quota",      "window_hours"};
const char* kDerivedSchema = R"sql(
CREATE TABLE IF NOT EXISTS breaches (
  seq BIGINT PRIMARY KEY, obligation_id TEXT NOT NULL, report_id TEXT NOT NULL,
  service_id TEXT NOT NULL, duty_id TEXT NOT NULL, rule_id TEXT NOT NULL,
  deadline BIGINT NOT NULL, at BIGINT NOT NULL, kind TEXT NOT NULL, body BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS breaches_service ON breaches (service_id, at);
CREATE INDEX IF NOT EXISTS breaches_duty ON breaches (duty_id, at);
CREATE INDEX IF NOT EXISTS breaches_rule ON breaches (rule_id, at);
CREATE TABLE IF NOT EXISTS findings (
  finding_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, duty_id TEXT NOT NULL,
  status TEXT NOT NULL, opened_at BIGINT NOT NULL, last_seq BIGINT NOT NULL, body BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS findings_service ON findings (service_id, duty_id, opened_at);
CREATE INDEX IF NOT EXISTS findings_open ON findings (status) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS finding_obligations (id BIGSERIAL PRIMARY KEY,
  finding_id TEXT NOT NULL, obligation_id TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS finding_obligations_id ON finding_obligations (finding_id);
CREATE TABLE IF NOT EXISTS finding_events (finding_id TEXT NOT NULL, seq BIGINT NOT NULL,
  PRIMARY KEY (finding_id, seq));
CREATE TABLE IF NOT EXISTS obligation_events (obligation_id TEXT NOT NULL, seq BIGINT NOT NULL,
  PRIMARY KEY (obligation_id, seq));
CREATE TABLE IF NOT EXISTS obligations (
  obligation_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, report_id TEXT NOT NULL,
  duty_id TEXT NOT NULL, rule_id TEXT NOT NULL, deadline BIGINT NOT NULL,
  received_at BIGINT NOT NULL, record_grace BIGINT NOT NULL, sweep_at BIGINT NOT NULL,
  opened_seq BIGINT NOT NULL, decided_seq BIGINT NOT NULL, status INTEGER NOT NULL,
  breach_at BIGINT NOT NULL, breach_kind TEXT NOT NULL, finding_id TEXT NOT NULL,
  body BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS obligations_window ON obligations (service_id, duty_id, deadline);
CREATE INDEX IF NOT EXISTS obligations_open ON obligations (sweep_at) WHERE decided_seq = 0;
CREATE INDEX IF NOT EXISTS obligations_decided ON obligations (deadline) WHERE decided_seq > 0;
CREATE INDEX IF NOT EXISTS obligations_received ON obligations (received_at, service_id);
CREATE INDEX IF NOT EXISTS obligations_breached ON obligations (deadline) WHERE status = 4 AND
  decided_seq > 0;
CREATE TABLE IF NOT EXISTS window_hours (
  hour BIGINT NOT NULL, service_id TEXT NOT NULL, duty_id TEXT NOT NULL, decided BIGINT NOT NULL,
  PRIMARY KEY (hour, service_id, duty_id));
CREATE TABLE IF NOT EXISTS obligation_actions (id BIGSERIAL PRIMARY KEY,
  obligation_id TEXT NOT NULL, action TEXT NOT NULL, taken_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS obligation_actions_id ON obligation_actions (obligation_id);
CREATE TABLE IF NOT EXISTS key_events (type INTEGER NOT NULL, seq BIGINT NOT NULL,
  PRIMARY KEY (type, seq));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS signal_alerts (
  alert_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, seq BIGINT NOT NULL, status TEXT NOT NULL,
  feedback TEXT NOT NULL, delivered_at BIGINT NOT NULL, reviewed_at BIGINT NOT NULL,
  breached INTEGER NOT NULL, body BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS signal_alerts_service ON signal_alerts (service_id, seq);
CREATE INDEX IF NOT EXISTS signal_alerts_seq ON signal_alerts (seq);
CREATE INDEX IF NOT EXISTS signal_alerts_delivered ON signal_alerts (delivered_at);
CREATE TABLE IF NOT EXISTS signal_quota (
  service_id TEXT NOT NULL, day TEXT NOT NULL, elements BIGINT NOT NULL,
  PRIMARY KEY (service_id, day));
)sql";

// The partial index obligations_breached and its queries name the status.
static_assert(v1::OBLIGATION_STATUS_BREACHED == 4);

// The version of the derived tables (the same numbering as SQLite's).
constexpr const char* kSchemaVersion = "4";

// A query parameter: text, or bytes sent in binary (BYTEA columns).
struct Param {
  std::string value;
  bool binary = false;
};
Param I(int64_t v) { return {std::to_string(v), false}; }
Param U(uint64_t v) { return {std::to_string(static_cast<int64_t>(v)), false}; }
Param T(const std::string& v) { return {v, false}; }
// A row limit (SIZE_MAX: no limit).
Param L(size_t v) {
  return I(v > static_cast<size_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v));
}
Param B(const std::string& v) { return {v, true}; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// SetPostgresReadChunk.
std::atomic<int> g_read_chunk{4096};

class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() {
    if (r_) PQclear(r_);
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result& operator=(Result&& o) noexcept {
    if (this != &o) {
      if (r_) PQclear(r_);
      r_ = o.r_;
      o.r_ = nullptr;
    }
    return *this;
  }
  PGresult* get() const { return r_; }
  int rows() const { return r_ ? PQntuples(r_) : 0; }
  bool Null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
  }
  // Valid while the result is.
  std::string_view View(int row, int col) const {
    return std::string_view(PQgetvalue(r_, row, col),
                            static_cast<size_t>(PQgetlength(r_, row, col)));
  }
  int64_t Int(int row, int col) const {
    return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
  }
  // A BYTEA column in text format ("\x" and hex digits).
  std::string Bytes(int row, int col) const {
    const char* p = PQgetvalue(r_, row, col);
    size_t n = static_cast<size_t>(PQgetlength(r_, row, col));
    if (n >= 2 && p[0] == '\\' && p[1] == 'x' && n % 2 == 0) {
      std::string out((n - 2) / 2, '\0');
      for (size_t i = 0; i < out.size(); ++i) {
        int hi = HexValue(p[2 + 2 * i]), lo = HexValue(p[3 + 2 * i]);
        if (hi < 0 || lo < 0) return std::string();
        out[i] = static_cast<char>(hi << 4 | lo);
      }
      return out;
    }
    size_t len = 0;
    unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(p), &len);
    std::string out = raw ? std::string(reinterpret_cast<char*>(raw), len) : std::string();
    PQfreemem(raw);
    return out;
  }
  // Rows an INSERT, UPDATE or DELETE changed.
  int64_t Changed() const { return std::strtoll(PQcmdTuples(r_), nullptr, 10); }

 private:
  PGresult* r_ = nullptr;
};

// One libpq connection with its own statements, used by one thread at a time
// (callers hold `mu`). Broken connections are made again on the next call.
class Conn {
 public:
  ~Conn() { Close(); }
  std::mutex mu;
  std::string conninfo;
  std::string shown;  // the redacted URL, for messages
  // Runs on every new connection (the writer takes its lock); a failure
  // closes the connection again.
  Status (*on_connect)(Conn&, void*) = nullptr;
  void* on_connect_arg = nullptr;
  int lock_timeout_ms = 10000;  // how long a statement waits for a lock held elsewhere

  void Close() {
    if (c_) PQfinish(c_);
    c_ = nullptr;
    prepared_.clear();
  }
  // The libpq connection (null when closed), for what this class does not
  // wrap (a listener's notifications).
  PGconn* raw() { return c_; }
  // Takes over `other`'s connection (and any session locks it holds).
  void Adopt(Conn& other) {
    Close();
    c_ = other.c_;
    other.c_ = nullptr;
    prepared_ = std::move(other.prepared_);
    other.prepared_.clear();
  }

  Status Ensure() {
    if (c_ && PQstatus(c_) == CONNECTION_OK) return Status::Ok();
    Close();
    // connect_timeout and keepalives first: the URL's own settings win.
    const char* keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "application_name",
                          "dbname",
                          nullptr};
    const char* values[] = {"10", "30", "10", "3", "carewatch", conninfo.c_str(), nullptr};
    c_ = PQconnectdbParams(keys, values, 1);
    if (!c_ || PQstatus(c_) != CONNECTION_OK) {
      std::string m = c_ ? Trim(PQerrorMessage(c_)) : "out of memory";
      Close();
      return Status::Unavailable("cannot reach the PostgreSQL ledger " + shown + ": " + m);
    }
    PQsetNoticeProcessor(
        c_, [](void*, const char*) {}, nullptr);
    Result r(PQexec(
        c_, ("SET client_min_messages = warning; SET synchronous_commit = on; SET TIME ZONE 'UTC'; "
             "SET lock_timeout = " +
             std::to_string(lock_timeout_ms))
                .c_str()));
    if (on_connect) {
      Status s = on_connect(*this, on_connect_arg);
      if (!s.ok()) {
        Close();
        return s;
      }
    }
    return Status::Ok();
  }

  // The name of `sql`'s statement, prepared on this connection once.
  Status Prepared(const std::string& sql, const std::string& what, const std::string** name) {
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      std::string n = "cw" + std::to_string(prepared_.size());
      Result p(PQprepare(c_, n.c_str(), sql.c_str(), 0, nullptr));
      if (PQresultStatus(p.get()) != PGRES_COMMAND_OK) return Fail(p.get(), what);
      it = prepared_.emplace(sql, n).first;
    }
    *name = &it->second;
    return Status::Ok();
  }

  // Runs one statement (prepared once per connection) with parameters; while
  // queueing (StartQueue), queues it for SendQueued instead.
  Status Run(const std::string& sql, const std::vector<Param>& params, Result* out,
             const std::string& what) {
    if (queueing_) {
      queue_.push_back({sql, params, what, nullptr});
      return Status::Ok();
    }
    last_transient_ = true;
    Status s = Ensure();
    if (!s.ok()) return s;
    const std::string* name = nullptr;
    s = Prepared(sql, what, &name);
    if (!s.ok()) return s;
    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size()), formats(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      values[i] = params[i].value.data();
      lengths[i] = static_cast<int>(params[i].value.size());
      formats[i] = params[i].binary ? 1 : 0;
    }
    Result r(PQexecPrepared(c_, name->c_str(), static_cast<int>(params.size()), values.data(),
                            lengths.data(), formats.data(), 0));
    ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(r.get(), what);
    if (out) *out = std::move(r);
    return Status::Ok();
  }

  // Runs SQL text without parameters (several statements allowed).
  Status Exec(const std::string& sql, const std::string& what, Result* out = nullptr) {
    last_transient_ = true;
    Status s = Ensure();
    if (!s.ok()) return s;
    Result r(PQexec(c_, sql.c_str()));
    ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(r.get(), what);
    if (out) *out = std::move(r);
    return Status::Ok();
  }

  // Statements queued by Run (or Queue, with `then` called with their
  // result) and sent by SendQueued in one transaction through libpq's
  // pipeline mode: a round trip per kPipelineChunk statements, not one each.
  struct Queued {
    std::string sql;
    std::vector<Param> params;
    std::string what;
    std::function<void(const Result&)> then;
  };
  void StartQueue() {
    queue_.clear();
    queueing_ = true;
  }
  void Queue(const std::string& sql, std::vector<Param> params, const std::string& what,
             std::function<void(const Result&)> then) {
    queue_.push_back({sql, std::move(params), what, std::move(then)});
  }
  void DropQueue() {
    queueing_ = false;
    queue_.clear();
  }
  // BEGIN, the queued statements, COMMIT. On failure nothing is committed,
  // unless the connection was lost once COMMIT may have been sent (then
  // broken() is true and the caller must find out).
  Status SendQueued(const std::string& what) {
    queueing_ = false;
    std::vector<Queued> q = std::move(queue_);
    queue_.clear();
    last_transient_ = true;
    Status s = Ensure();
    if (!s.ok()) return s;
    std::vector<const std::string*> names(q.size());
    for (size_t i = 0; i < q.size(); ++i) {
      s = Prepared(q[i].sql, q[i].what, &names[i]);
      if (!s.ok()) return s;
    }
    if (PQenterPipelineMode(c_) != 1) return Lost(what);
    // Chunks, each ended by a sync whose results are read before the next
    // is sent (so neither side's buffers fill). BEGIN travels with the
    // first, COMMIT with the last; after an error the server skips the
    // rest of its chunk and the transaction is rolled back.
    size_t i = 0;
    bool begun = false, committed = false;
    while (s.ok() && !committed) {
      std::vector<const Queued*> sent;  // null: BEGIN or COMMIT
      if (!begun) {
        if (!SendText("BEGIN")) return Lost(what);
        sent.push_back(nullptr);
        begun = true;
      }
      for (; i < q.size() && sent.size() < kPipelineChunk; ++i) {
        std::vector<const char*> values(q[i].params.size());
        std::vector<int> lengths(values.size()), formats(values.size());
        for (size_t k = 0; k < values.size(); ++k) {
          values[k] = q[i].params[k].value.data();
          lengths[k] = static_cast<int>(q[i].params[k].value.size());
          formats[k] = q[i].params[k].binary ? 1 : 0;
        }
        if (PQsendQueryPrepared(c_, names[i]->c_str(), static_cast<int>(values.size()),
                                values.data(), lengths.data(), formats.data(), 0) != 1)
          return Lost(what);
        sent.push_back(&q[i]);
      }
      if (i == q.size()) {
        if (!SendText("COMMIT")) return Lost(what);
        sent.push_back(nullptr);
        committed = true;
      }
      if (PQpipelineSync(c_) != 1) return Lost(what);
      for (const Queued* item : sent) {
        Result r(PQgetResult(c_));
        if (!r.get()) return Lost(what);
        ExecStatusType st = PQresultStatus(r.get());
        if (st == PGRES_FATAL_ERROR && s.ok()) {
          s = Fail(r.get(), item ? item->what : what);
          if (!c_) return s;  // Fail closed a lost connection
        } else if ((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) && item && item->then) {
          item->then(r);
        }
        while (PGresult* end = PQgetResult(c_)) PQclear(end);  // the statement's end
      }
      Result sync(PQgetResult(c_));
      if (PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) return Lost(what);
    }
    PQexitPipelineMode(c_);
    return s;
  }

  // Whether the last failure may clear by itself (a lost connection, a
  // server shutting down or out of space, a serialisation conflict).
  bool last_transient() const { return last_transient_; }
  bool in_transaction() const {
    return c_ && PQtransactionStatus(c_) != PQTRANS_IDLE &&
           PQtransactionStatus(c_) != PQTRANS_UNKNOWN;
  }
  bool broken() const { return !c_ || PQstatus(c_) != CONNECTION_OK; }

 private:
  static std::string Trim(std::string m) {
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
  }
  Status Fail(PGresult* r, const std::string& what) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string code = state ? state : "";
    std::string m = Trim(r ? PQresultErrorMessage(r) : "");
    if (m.empty() && c_) m = Trim(PQerrorMessage(c_));
    // 08: connection; 53: resources (disk full); 57P: shutdown; 40:
    // serialisation and deadlock; 55P03: a lock held elsewhere past
    // lock_timeout; none: libpq itself lost the server.
    last_transient_ = code.empty() || code.rfind("08", 0) == 0 || code.rfind("53", 0) == 0 ||
                      code.rfind("57P", 0) == 0 || code.rfind("40", 0) == 0 || code == "55P03" ||
                      broken();
    if (broken()) Close();
    return Status::Unavailable(what + ": " + (m.empty() ? "PostgreSQL failed" : m) +
                               (code.empty() ? "" : " (SQLSTATE " + code + ")"));
  }

  bool SendText(const char* sql) {
    return PQsendQueryParams(c_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1;
  }
  // A pipeline that cannot go on: the connection is dropped, which rolls
  // back whatever it had not committed.
  Status Lost(const std::string& what) {
    std::string m = c_ ? Trim(PQerrorMessage(c_)) : "";
    Close();
    last_transient_ = true;
    return Status::Unavailable(what + ": " + (m.empty() ? "the connection was lost" : m));
  }

  static constexpr size_t kPipelineChunk = 256;
  PGconn* c_ = nullptr;
  bool last_transient_ = true;
  bool queueing_ = false;
  std::vector<Queued> queue_;
  std::map<std::string, std::string> prepared_;  // SQL -> statement name
};

class PgWriterLock : public WriterLock {
 public:
  ~PgWriterLock() override {
    std::lock_guard<std::mutex> lock(c.mu);
    if (!c.broken())
      (void)c.Exec(std::string("SELECT pg_advisory_unlock(") + kWriterLock + ")", "unlocking");
  }
  Conn c;
};

class PgBackend : public LedgerBackend {
 public:
  ~PgBackend() override {
    stop_scan_.store(true, std::memory_order_relaxed);
    if (filter_scan_.joinable()) filter_scan_.join();
    // Let go of the writer lock before the connection closes: PostgreSQL
    // releases a closed session's locks only when its backend process has
    // ended, a moment after the socket closes, and a writer started right
    // after this one (a restart) would find the lock still held.
    std::lock_guard<std::mutex> lock(write_.mu);
    if (!read_only_ && !write_.broken()) {
      SaveReportFilter();
      (void)write_.Exec(std::string("SELECT pg_advisory_unlock(") + kWriterLock + ")",
                        "releasing the ledger");
    }
  }

  Status Open(const std::string& url, bool read_only, int busy_timeout_ms,
              std::shared_ptr<WriterLock> writer_lock) {
    url_ = RedactUrl(url);
    read_only_ = read_only;
    auto setup = [&](Conn& c) {
      c.conninfo = url;
      c.shown = url_;
      c.lock_timeout_ms = busy_timeout_ms;
    };
    setup(write_);
    for (Conn& c : reads_) setup(c);
    if (!read_only) {
      write_.on_connect = [](Conn& c, void* self) {
        return static_cast<PgBackend*>(self)->TakeWriterLock(c);
      };
      write_.on_connect_arg = this;
    }
    std::lock_guard<std::mutex> lock(write_.mu);
    if (writer_lock && !read_only) {
      // The lock is held already, by this connection: the writer's now.
      auto* held = static_cast<PgWriterLock*>(writer_lock.get());
      std::lock_guard<std::mutex> held_lock(held->c.mu);
      write_.Adopt(held->c);
      if (!write_.broken()) {
        (void)write_.Exec("SET lock_timeout = " + std::to_string(busy_timeout_ms),
                          "setting the lock timeout");
      }
    }
    Status s = write_.Ensure();
    // A writer that just died (SIGKILL) holds the lock until PostgreSQL has
    // ended its session, a moment after its socket closed: a restart waits
    // up to two seconds for that before it says the ledger is in use.
    for (int waited_ms = 0; !read_only && IsLedgerInUse(s) && waited_ms < 2000; waited_ms += 100) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      s = write_.Ensure();
    }
    if (!s.ok()) return s;
    if (read_only) {
      Result r;
      s = write_.Exec("SELECT MAX(seq) FROM events; SELECT MAX(tree_size) FROM checkpoints",
                      "reading the ledger", &r);
      if (!s.ok()) {
        return Status::DataLoss("not a carewatch ledger (" + url_ + "): " + s.message());
      }
      write_.Close();  // reads use the pool
      return Status::Ok();
    }
    s = Migrate();
    if (!s.ok()) return s;
    Result n;
    s = write_.Exec("SELECT COALESCE(MAX(seq), 0) FROM events", "reading the log's size", &n);
    if (!s.ok()) return s;
    written_ = static_cast<uint64_t>(n.Int(0, 0));
    size_known_ = true;
    StartReportFilter(url);
    return Status::Ok();
  }

  // The filter of indexed report ids (report_filter.h), as on SQLite: only
  // the holder of the writer lock indexes reports (queueing replicas queue
  // them for it), so while it holds the lock its filter sees every id. The
  // writer adds every row it indexes from now on; a thread adds the rows
  // already there, in key order, kScanChunk rows a statement, on a
  // connection of its own; lookups read the index until it is done. A
  // writer that loses the lock and takes it again (PostgreSQL restarted)
  // stops trusting the filter: another writer may have indexed reports
  // meanwhile. Its lookups read the index until it restarts.
  void StartReportFilter(const std::string& url) {
    if (RestoreReportFilter()) return;
    filter_ = std::make_unique<ReportFilter>();
    filter_scan_ = std::thread([this, url] {
      NameThisThread("cw-filter-scan");
      Conn c;
      c.conninfo = url;
      c.shown = url_;
      std::lock_guard<std::mutex> lock(c.mu);
      std::string service, report;
      bool done = false;
      while (!stop_scan_.load(std::memory_order_relaxed)) {
        Result r;
        Status s = c.Run(
            "SELECT service_id, report_id FROM report_index WHERE (service_id, report_id) > ($1, "
            "$2) ORDER BY service_id, report_id LIMIT $3",
            {T(service), T(report), L(kScanChunk)}, &r, "reading the report index");
        if (!s.ok()) break;  // lookups go on reading the index
        for (int i = 0; i < r.rows(); ++i) {
          service = r.Text(i, 0);
          report = r.Text(i, 1);
          filter_->Add(service, report);
        }
        if (static_cast<size_t>(r.rows()) < kScanChunk) {
          done = true;
          break;
        }
      }
      if (done) filter_->MarkComplete();
    });
  }

  // As on SQLite, a writer that stops cleanly (still holding the writer
  // lock, its filter trusted) leaves its filter for the next writer, here
  // in `meta` (key report_filter), with a stamp of the ledger then: every
  // report indexed moves the log's size or counters.reports in the
  // transaction that indexes it, and the last checkpoint's root tells one
  // log from another of the same size. The next writer removes it before it uses
  // it, so it is only there between a clean stop and the next writer's
  // start: after a crash there is none, and a stale or damaged one is not
  // used (the start scans). Not saved past kMaxSavedIds ids.
  static constexpr uint64_t kMaxSavedIds = 5000000;
  // Below this many ids a scan at start (about 0.4 us an id) costs less than
  // writing and reading the 8 MiB filter: not saved.
  static constexpr uint64_t kMinSavedIds = 65536;
  // REQUIRES: write_.mu held.
  std::string FilterStamp() {
    Result r;
    Status s = write_.Run(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events)::text || ':' || (SELECT "
        "COALESCE(MAX(value), 0) FROM counters WHERE name = 'reports')::text || ':' || "
        "COALESCE((SELECT encode(root_hash, 'hex') FROM checkpoints ORDER BY tree_size DESC "
        "LIMIT 1), '')",
        {}, &r, "reading the ledger's size");
    return s.ok() && r.rows() == 1 ? "cwledger " + r.Text(0, 0) : std::string();
  }
  // REQUIRES: write_.mu held.
  void SaveReportFilter() {
    if (!filter_ || !filter_->complete() || filter_lost_.load(std::memory_order_acquire) ||
        filter_->added() > kMaxSavedIds || filter_->added() < kMinSavedIds)
      return;
    const std::string stamp = FilterStamp();
    if (stamp.empty()) return;
    (void)write_.Run(
        "INSERT INTO meta (key, value) VALUES ('report_filter', $1) ON CONFLICT (key) DO UPDATE "
        "SET value = excluded.value",
        {B(filter_->SaveStamped(stamp))}, nullptr, "saving the report filter");
  }
  // REQUIRES: write_.mu held.
  bool RestoreReportFilter() {
    Result r;
    if (!write_
             .Run("DELETE FROM meta WHERE key = 'report_filter' RETURNING value", {}, &r,
                  "reading the saved report filter")
             .ok() ||
        r.rows() != 1)
      return false;
    const std::string blob = r.Bytes(0, 0);
    r = Result();
    filter_ = ReportFilter::RestoreStamped(blob, FilterStamp());
    filter_restored_ = filter_ != nullptr;
    return filter_restored_;
  }

  LookupStats lookup_stats() const override {
    LookupStats s;
    s.filter_ready = FilterAnswers();
    s.filter_restored = filter_restored_;
    s.filtered = lookups_filtered_.load(std::memory_order_relaxed);
    s.read = lookups_read_.load(std::memory_order_relaxed);
    return s;
  }

  bool FilterAnswers() const {
    return filter_ && filter_->complete() && !filter_lost_.load(std::memory_order_acquire);
  }

  // REQUIRES: c.mu held (called from Ensure).
  Status TakeWriterLock(Conn& c) {
    Result r;
    // Run would call Ensure again: plain Exec on the new connection.
    Status s = c.Exec(std::string("SELECT pg_try_advisory_lock(") + kWriterLock + ")",
                      "locking the ledger", &r);
    if (!s.ok()) return s;
    if (r.rows() != 1 || r.Text(0, 0) != "t") {
      Result who;
      std::string holder;
      if (c.Exec("SELECT a.pid, COALESCE(a.client_addr::text, 'local'), a.application_name FROM "
                 "pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = "
                 "'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = 1667330661 "
                 "AND l.objid::bigint = (hashtext(current_schema())::bigint & 4294967295) AND "
                 "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                 "finding the writer", &who)
              .ok() &&
          who.rows() > 0) {
        holder = " (PostgreSQL backend pid " + who.Text(0, 0) + " from " + who.Text(0, 1) + ")";
      }
      return Status::FailedPrecondition(
          "ledger " + url_ + " is in use by another carewatchd" + holder +
          ", which holds its writer lock: one writer per ledger database");
    }
    if (size_known_) {
      // Another writer may have indexed reports while this one did not
      // hold the lock (report_filter.h): lookups read the index from now.
      filter_lost_.store(true, std::memory_order_release);
      // The lock was lost with the connection (the server restarted) and
      // taken again: nobody may have written meanwhile, or this writer's
      // view of the log is stale and it must stop.
      Result n;
      s = c.Exec("SELECT COALESCE(MAX(seq), 0) FROM events", "reading the log's size", &n);
      if (!s.ok()) return s;
      const uint64_t now = static_cast<uint64_t>(n.Int(0, 0));
      if (now != written_ && !(uncertain_ && now == uncertain_last_)) {
        return Status::FailedPrecondition("ledger " + url_ +
                                          " was written by another carewatchd while this one was "
                                          "disconnected (it holds " +
                                          std::to_string(now) + " events, this one wrote " +
                                          std::to_string(written_) +
                                          "): this carewatchd stops writing; restart it");
      }
    }
    return Status::Ok();
  }

  Status Migrate() {
    Status s = write_.Exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        "creating schema_migrations");
    if (!s.ok()) return s;
    s = write_.Exec("BEGIN", "migrating");
    if (!s.ok()) return s;
    s = [&]() -> Status {
      Result r;
      Status m = write_.Exec(std::string("SELECT pg_advisory_xact_lock(") + kMigrationLock + ")",
                             "migrating");
      if (!m.ok()) return m;
      m = write_.Exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", "migrating", &r);
      if (!m.ok()) return m;
      const int64_t have = r.Int(0, 0);
      const int64_t newest = kMigrations[std::size(kMigrations) - 1].version;
      if (have > newest) {
        return Status::FailedPrecondition("ledger " + url_ + " has schema migration " +
                                          std::to_string(have) +
                                          ", newer than this carewatch knows (" +
                                          std::to_string(newest) + "): run the newer carewatch");
      }
      for (const Migration& mig : kMigrations) {
        if (mig.version <= have) continue;
        m = write_.Exec(mig.sql, "schema migration " + std::to_string(mig.version));
        if (!m.ok()) return m;
        m = write_.Run("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                       {I(mig.version), T(mig.description)}, nullptr, "recording a migration");
        if (!m.ok()) return m;
      }
      // The derived tables: derived again from the log when their version
      // changes (as with SQLite).
      m = write_.Run("SELECT value FROM meta WHERE key = 'schema_version'", {}, &r, "reading meta");
      if (!m.ok()) return m;
      std::string version = r.rows() ? r.Bytes(0, 0) : "";
      if (version == kSchemaVersion) {
        // A restart counted every decided obligation within retention into
        // its window's hours; the counts are now stored (window_hours),
        // written with the decisions. A ledger written before the table
        // (created empty by the schema), or in which a carewatch from
        // before it went on deciding, holds fewer decisions there than its
        // counters: its hours are counted again from its decided
        // obligations, in this transaction (as they are when the table
        // was only now created).
        m = write_.Run("SELECT to_regclass('window_hours') IS NULL", {}, &r, "reading the schema");
        if (!m.ok()) return m;
        const bool created = r.rows() == 1 && r.Text(0, 0) == "t";
        m = write_.Exec(kDerivedSchema, "creating tables");
        if (!m.ok()) return m;
        m = write_.Run(LedgerBackend::WindowHoursCountersSql(), {}, &r, "reading the counters");
        if (!m.ok()) return m;
        if (!created && r.rows() == 1 && r.Int(0, 0) == r.Int(0, 1)) return Status::Ok();
        return write_.Exec(LedgerBackend::CountWindowHoursSql(),
                           "counting the systemic windows' hours again");
      }
      return Rederive();
    }();
    if (s.ok()) s = write_.Exec("COMMIT", "migrating");
    if (!s.ok()) {
      (void)write_.Exec("ROLLBACK", "migrating");
      return Status::DataLoss("cannot carry " + url_ + " forward to ledger schema " +
                              kSchemaVersion + ": " + s.message());
    }
    return s;
  }

  // REQUIRES: write_.mu held and a transaction open.
  Status Rederive() {
    for (const char* t : kDerivedTables) {
      Status s = write_.Exec("DROP TABLE IF EXISTS " + std::string(t), "migrating");
      if (!s.ok()) return s;
    }
    Status s = write_.Exec(kDerivedSchema, "creating tables");
    if (!s.ok()) return s;
    const FindingReader read = [this](const std::string& id, v1::Finding* f, bool* found) {
      return FindingFrom(write_, id, f, found);
    };
    for (uint64_t from = 1;;) {
      Result r;
      s = write_.Run("SELECT seq, payload FROM events WHERE seq >= $1 ORDER BY seq LIMIT 10000",
                     {U(from)}, &r, "reading events");
      if (!s.ok()) return s;
      if (r.rows() == 0) break;
      std::vector<v1::LedgerEvent> page(static_cast<size_t>(r.rows()));
      std::vector<const v1::LedgerEvent*> parsed;
      for (int i = 0; i < r.rows(); ++i) {
        if (!page[i].ParseFromString(r.Bytes(i, 1)) ||
            page[i].seq() != static_cast<uint64_t>(r.Int(i, 0)))
          return Status::DataLoss("event " + r.Text(i, 0) + " does not parse");
        parsed.push_back(&page[i]);
      }
      DerivedBatch d;
      s = Derive(parsed, read, &d);
      d.rolled_up.clear();
      if (s.ok()) s = WriteDerived(d);
      if (!s.ok()) return s;
      from = page.back().seq() + 1;
    }
    s = write_.Exec(
        "INSERT INTO counters (name, value) SELECT 'reports', COALESCE(SUM(reports), 0) FROM "
        "stats ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        "counting reports");
    if (!s.ok()) return s;
    return write_.Run(
        "INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE "
        "SET value = excluded.value",
        {B(kSchemaVersion)}, nullptr, "writing meta");
  }

  std::string url() const override { return url_; }

  Status GetMeta(const std::string& key, std::string* value, bool* found) override {
    Read r(this);
    Status s = r.Run("SELECT value FROM meta WHERE key = $1", {T(key)}, "reading meta");
    if (!s.ok()) return s;
    *found = r.res.rows() > 0;
    if (*found) *value = r.res.Bytes(0, 0);
    return Status::Ok();
  }

  Status PutMeta(const std::string& key, const std::string& value) override {
    std::lock_guard<std::mutex> lock(write_.mu);
    return write_.Run(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
        "excluded.value",
        {T(key), B(value)}, nullptr, "writing meta");
  }

  // Unavailable when the failure may clear by itself (the server is down or
  // restarting, a lost connection, a full disk): nothing of the batch was
  // committed, or all of it was and the retry finds it. DataLoss otherwise.
  Status WriteBatch(const WriteSet& w) override {
    std::lock_guard<std::mutex> lock(write_.mu);
    if (uncertain_) {
      // The last attempt lost its connection during COMMIT: it may have
      // been committed. Its first event (or checkpoint) says.
      bool done = false;
      Status s = AlreadyWritten(w, &done);
      if (!s.ok()) return s;
      uncertain_ = false;
      if (done) {
        if (!w.events.empty()) written_ = w.events.back().seq;
        return Status::Ok();
      }
    }
    // Every statement of the batch in one pipelined transaction.
    write_.StartQueue();
    Status s = WriteRows(w);
    if (s.ok()) {
      s = write_.SendQueued("writing a batch");
      if (!s.ok() && write_.broken()) {
        uncertain_ = true;
        uncertain_last_ = w.events.empty() ? written_ : w.events.back().seq;
      }
    } else {
      write_.DropQueue();
    }
    if (s.ok()) {
      if (!w.events.empty()) written_ = w.events.back().seq;
      return s;
    }
    const bool transient = write_.last_transient();
    if (write_.in_transaction()) (void)write_.Exec("ROLLBACK", "rolling back");
    return transient ? s : Status::DataLoss(s.message());
  }

  Status WriteNodes(const std::vector<TreeNode>& nodes) override {
    std::lock_guard<std::mutex> lock(write_.mu);
    Status s = write_.Exec("BEGIN", "storing the tree");
    if (s.ok()) s = InsertNodes(nodes);
    if (s.ok()) s = write_.Exec("COMMIT", "storing the tree");
    if (!s.ok() && write_.in_transaction()) (void)write_.Exec("ROLLBACK", "rolling back");
    return s;
  }

  Status ReadTreeSize(uint64_t* size) override {
    Read r(this);
    Status s = r.Run("SELECT COALESCE(MAX(seq), 0) FROM events", {}, "reading the log's size");
    if (s.ok()) *size = static_cast<uint64_t>(r.res.Int(0, 0));
    return s;
  }

  Status ReadNode(int level, uint64_t index, Hash* out) override {
    Read r(this);
    Status s = level == 0 ? r.Run("SELECT leaf_hash FROM events WHERE seq = $1", {U(index + 1)},
                                  "reading the tree")
                          : r.Run("SELECT hash FROM tree_nodes WHERE level = $1 AND idx = $2",
                                  {I(level), U(index)}, "reading the tree");
    if (!s.ok()) return s;
    if (r.res.rows() == 0)
      return Status::NotFound("no stored subtree at level " + std::to_string(level) + " index " +
                              std::to_string(index));
    *out = r.res.Bytes(0, 0);
    if (out->size() != 32) {
      return Status::DataLoss("the stored subtree at level " + std::to_string(level) + " index " +
                              std::to_string(index) + " is malformed");
    }
    return Status::Ok();
  }

  Status ReadLeafHashes(std::vector<Hash>* out) override {
    uint64_t expect = 1;
    for (;;) {
      Read r(this);
      Status s = r.Run("SELECT seq, leaf_hash FROM events WHERE seq >= $1 ORDER BY seq LIMIT 65536",
                       {U(expect)}, "reading leaf hashes");
      if (!s.ok()) return s;
      if (r.res.rows() == 0) return Status::Ok();
      for (int i = 0; i < r.res.rows(); ++i) {
        if (static_cast<uint64_t>(r.res.Int(i, 0)) != expect) {
          return Status::DataLoss("ledger is missing event " + std::to_string(expect) +
                                  "; run `carewatch verify` on it");
        }
        std::string h = r.res.Bytes(i, 1);
        if (h.size() != 32) {
          return Status::DataLoss("event " + std::to_string(expect) + " has a malformed leaf hash");
        }
        out->push_back(std::move(h));
        ++expect;
      }
    }
  }

  Status ReadEvents(uint64_t from_seq, size_t limit, std::vector<StoredEvent>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT seq, type, time, payload, leaf_hash FROM events WHERE seq >= $1 ORDER BY seq "
        "LIMIT $2",
        {U(from_seq), L(limit)}, "reading events");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) {
      StoredEvent e;
      e.seq = static_cast<uint64_t>(r.res.Int(i, 0));
      e.type = static_cast<int>(r.res.Int(i, 1));
      e.time = r.res.Int(i, 2);
      e.payload = r.res.Bytes(i, 3);
      e.leaf_hash = r.res.Bytes(i, 4);
      out->push_back(std::move(e));
    }
    return Status::Ok();
  }

  static v1::Checkpoint CheckpointFrom(const Result& r, int i) {
    v1::Checkpoint c;
    c.set_tree_size(static_cast<uint64_t>(r.Int(i, 0)));
    c.set_root_hash(r.Bytes(i, 1));
    c.mutable_time()->set_seconds(r.Int(i, 2));
    c.set_signature(r.Bytes(i, 3));
    if (!r.Null(i, 4)) c.set_note(r.Bytes(i, 4));
    return c;
  }

  Status ReadCheckpoints(std::vector<v1::Checkpoint>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT tree_size, root_hash, time, signature, note FROM checkpoints ORDER BY tree_size",
        {}, "reading checkpoints");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) out->push_back(CheckpointFrom(r.res, i));
    return Status::Ok();
  }

  Status ReadCheckpoint(uint64_t tree_size, v1::Checkpoint* out, bool* found) override {
    Read r(this);
    Status s = tree_size ? r.Run(
                               "SELECT tree_size, root_hash, time, signature, note FROM "
                               "checkpoints WHERE tree_size = $1",
                               {U(tree_size)}, "reading a checkpoint")
                         : r.Run(
                               "SELECT tree_size, root_hash, time, signature, note FROM "
                               "checkpoints ORDER BY tree_size DESC LIMIT 1",
                               {}, "reading a checkpoint");
    if (!s.ok()) return s;
    *found = r.res.rows() > 0;
    if (*found) *out = CheckpointFrom(r.res, 0);
    return Status::Ok();
  }

  Status ReadCounters(std::map<std::string, int64_t>* counters, int64_t* clock) override {
    Read r(this);
    Status s = r.Run("SELECT name, value FROM counters", {}, "reading counters");
    if (!s.ok()) return s;
    *clock = INT64_MIN;
    for (int i = 0; i < r.res.rows(); ++i) {
      if (r.res.Text(i, 0) == "clock") {
        *clock = r.res.Int(i, 1);
      } else {
        (*counters)[r.res.Text(i, 0)] = r.res.Int(i, 1);
      }
    }
    return Status::Ok();
  }

  static constexpr const char* kObligationColumns =
      "obligation_id, service_id, report_id, duty_id, rule_id, deadline, received_at, "
      "record_grace, sweep_at, opened_seq, decided_seq, status, breach_at, breach_kind, "
      "finding_id, body";

  static ObligationRow ObligationFrom(const Result& r, int i) {
    ObligationRow o;
    o.obligation_id = r.Text(i, 0);
    o.service_id = r.Text(i, 1);
    o.report_id = r.Text(i, 2);
    o.duty_id = r.Text(i, 3);
    o.rule_id = r.Text(i, 4);
    o.deadline = r.Int(i, 5);
    o.received_at = r.Int(i, 6);
    o.record_grace = r.Int(i, 7);
    o.sweep_at = r.Int(i, 8);
    o.opened_seq = static_cast<uint64_t>(r.Int(i, 9));
    o.decided_seq = static_cast<uint64_t>(r.Int(i, 10));
    o.status = static_cast<int>(r.Int(i, 11));
    o.breach_at = r.Int(i, 12);
    o.breach_kind = r.Text(i, 13);
    o.finding_id = r.Text(i, 14);
    o.body = r.Bytes(i, 15);
    return o;
  }

  Status BeginSnapshot() override {
    if (!read_only_) return Status::Ok();
    if (snapshot_depth_++ > 0) return Status::Ok();  // within the open one
    // On the connection every read in the snapshot uses (Read), whichever
    // the round robin would give next.
    Read r(this, &reads_[0]);
    Status s = r.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    // The snapshot is taken at the transaction's first query: now.
    if (s.ok()) s = r.Run("SELECT 1", {}, "opening a read snapshot");
    if (!s.ok()) {
      (void)r.Exec("ROLLBACK");
      snapshot_depth_ = 0;
      return s;
    }
    snapshot_ = true;
    return Status::Ok();
  }

  void EndSnapshot() override {
    if (!snapshot_ || --snapshot_depth_ > 0) return;
    Read r(this);
    (void)r.Exec("COMMIT");
    snapshot_ = false;
  }

  Status EachOpenObligation(
      const std::function<Status(ObligationRow& row)>& row,
      const std::function<void(std::string_view, ObligationActionRow&&)>& action) override {
    Read r(this);
    // One snapshot, so the actions agree with the obligations (the open
    // snapshot's, if there is one).
    const bool own = !snapshot_;
    Status s = own ? r.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") : Status::Ok();
    if (!s.ok()) return s;
    s = [&]() -> Status {
      Status q = r.Each(std::string("SELECT ") + kObligationColumns +
                            " FROM obligations WHERE decided_seq = 0 ORDER BY sweep_at",
                        {}, "reading open obligations", [&](const Result& res, int i) {
                          ObligationRow o = ObligationFrom(res, i);
                          return row(o);
                        });
      if (!q.ok()) return q;
      return r.Each(
          "SELECT a.obligation_id, a.action, a.taken_at FROM obligations o JOIN "
          "obligation_actions a ON a.obligation_id = o.obligation_id WHERE o.decided_seq = 0 "
          "ORDER BY a.id",
          {}, "reading actions", [&](const Result& res, int i) {
            action(res.View(i, 0), {res.Text(i, 1), res.Int(i, 2)});
            return Status::Ok();
          });
    }();
    if (own) (void)r.Exec(s.ok() ? "COMMIT" : "ROLLBACK");
    return s;
  }

  Status ReadDecidedObligations(int64_t deadline_after, std::vector<ObligationRow>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT obligation_id, service_id, report_id, duty_id, rule_id, deadline, received_at, "
        "record_grace, sweep_at, opened_seq, decided_seq, status, breach_at, breach_kind, "
        "finding_id, ''::bytea FROM obligations WHERE decided_seq > 0 AND deadline > $1 ORDER BY "
        "deadline",
        {I(deadline_after)}, "reading decided obligations");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) out->push_back(ObligationFrom(r.res, i));
    return Status::Ok();
  }

  Status EachWindowRow(int64_t deadline_after, int64_t held_from,
                       const std::function<void(const WindowRow&)>& each) override {
    Read r(this);
    const bool own = !snapshot_;
    Status s = own ? r.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") : Status::Ok();
    if (!s.ok()) return s;
    WindowRow row;
    auto one = [&](const Result& res, int i) {
      row.service_id = res.View(i, 0);
      row.duty_id = res.View(i, 1);
      row.deadline = res.Int(i, 2);
      row.breached = res.Int(i, 3) == v1::OBLIGATION_STATUS_BREACHED;
      row.obligation_id = row.breached ? res.View(i, 4) : std::string_view();
      row.breach_kind = row.breached ? res.View(i, 5) : std::string_view();
      row.breach_at = row.breached ? res.Int(i, 6) : 0;
      row.finding_id = row.breached ? res.View(i, 7) : std::string_view();
      each(row);
      return Status::Ok();
    };
    // Breaches due before `held_from` (their partial index), then every
    // decided obligation due from `held_from` on; one snapshot for both.
    s = r.Each(
        "SELECT service_id, duty_id, deadline, status, obligation_id, breach_kind, breach_at, "
        "finding_id FROM obligations WHERE status = 4 AND decided_seq > 0 AND deadline > $1 AND "
        "deadline < $2 ORDER BY deadline",
        {I(deadline_after), I(held_from)}, "reading decided obligations", one);
    if (s.ok() && deadline_after < INT64_MAX) {
      s = r.Each(
          "SELECT service_id, duty_id, deadline, status, obligation_id, breach_kind, breach_at, "
          "finding_id FROM obligations WHERE decided_seq > 0 AND deadline >= $1 ORDER BY deadline",
          {I(HeldFrom(deadline_after, held_from))}, "reading decided obligations", one);
    }
    if (own) (void)r.Exec(s.ok() ? "COMMIT" : "ROLLBACK");
    return s;
  }

  Status EachWindowHour(int64_t from_hour,
                        const std::function<void(const WindowHourRow&)>& each) override {
    Read r(this);
    const bool own = !snapshot_;
    Status s = own ? r.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") : Status::Ok();
    if (!s.ok()) return s;
    // A read-only look at a ledger no writer has carried forward yet has no
    // window_hours: its counts are those a carry-forward would write.
    bool stored = true;
    if (s.ok() && read_only_) {
      s = r.Run("SELECT to_regclass('window_hours') IS NOT NULL", {}, "reading the schema");
      stored = s.ok() && r.res.rows() && r.res.Text(0, 0) == "t";
    }
    const std::string sql =
        stored ? "SELECT service_id, duty_id, hour, decided FROM window_hours WHERE hour >= $1 "
                 "ORDER BY hour"
               : std::string("SELECT service_id, duty_id, hour, count(*) FROM (SELECT ") +
                     LedgerBackend::kWindowHourSql +
                     " AS hour, service_id, duty_id FROM obligations WHERE decided_seq > 0) h "
                     "WHERE hour >= $1 GROUP BY hour, service_id, duty_id ORDER BY hour";
    WindowHourRow row;
    if (s.ok())
      s = r.Each(sql, {I(from_hour)}, "reading the windows' hours", [&](const Result& res, int i) {
        row.service_id = res.View(i, 0);
        row.duty_id = res.View(i, 1);
        row.hour = res.Int(i, 2);
        row.decided = res.Int(i, 3);
        each(row);
        return Status::Ok();
      });
    if (own) (void)r.Exec(s.ok() ? "COMMIT" : "ROLLBACK");
    return s;
  }

  Status ReadWindowDeadlines(const std::string& service_id, const std::string& duty_id,
                             int64_t from, int64_t to,
                             std::vector<std::pair<int64_t, std::string>>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT deadline, obligation_id FROM obligations WHERE service_id = $1 AND duty_id = $2 "
        "AND deadline >= $3 AND deadline < $4 AND decided_seq > 0",
        {T(service_id), T(duty_id), I(from), I(to)}, "reading decided obligations");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) out->emplace_back(r.res.Int(i, 0), r.res.Text(i, 1));
    return Status::Ok();
  }

  Status ReadObligation(const std::string& id, ObligationRow* out, bool* found) override {
    Read r(this);
    Status s = r.Run(
        std::string("SELECT ") + kObligationColumns + " FROM obligations WHERE obligation_id = $1",
        {T(id)}, "reading an obligation");
    if (!s.ok()) return s;
    *found = r.res.rows() > 0;
    if (!*found) return Status::Ok();
    *out = ObligationFrom(r.res, 0);
    s = r.Run(
        "SELECT action, taken_at FROM obligation_actions WHERE obligation_id = $1 ORDER BY id",
        {T(id)}, "reading actions");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i)
      out->actions.push_back({r.res.Text(i, 0), r.res.Int(i, 1)});
    return Status::Ok();
  }

  Status ReadFinding(const std::string& id, v1::Finding* out, bool* found) override {
    Read r(this);
    return FindingFrom(*r.conn, id, out, found);
  }

  Status LookupReport(const std::string& service_id, const std::string& report_id,
                      ReportIndexRow* out, bool* found) override {
    if (FilterAnswers() && !filter_->MayContain(service_id, report_id)) {
      lookups_filtered_.fetch_add(1, std::memory_order_relaxed);
      *found = false;
      return Status::Ok();
    }
    lookups_read_.fetch_add(1, std::memory_order_relaxed);
    Read r(this);
    Status s = r.Run(
        "SELECT digest, seq, recorded_at, ruleset_version FROM report_index WHERE service_id = $1 "
        "AND report_id = $2",
        {T(service_id), T(report_id)}, "looking up a report");
    if (!s.ok()) return s;
    *found = r.res.rows() > 0;
    if (*found) {
      out->service_id = service_id;
      out->report_id = report_id;
      out->digest = r.res.Text(0, 0);
      out->seq = static_cast<uint64_t>(r.res.Int(0, 1));
      out->recorded_at = r.res.Int(0, 2);
      out->ruleset_version = r.res.Text(0, 3);
    }
    return Status::Ok();
  }

  Status QueryBreaches(const BreachQuery& q,
                       std::vector<std::pair<uint64_t, v1::Breach>>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT seq, body FROM breaches WHERE seq > $1 AND ($2 = '' OR service_id = $2) AND "
        "($3 = '' OR duty_id = $3) AND ($4 = '' OR rule_id = $4) AND at >= $5 AND at <= $6 "
        "ORDER BY seq LIMIT $7",
        {U(q.after_seq), T(q.service_id), T(q.duty_id), T(q.rule_id), I(q.from), I(q.to),
         L(q.limit)},
        "querying breaches");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) {
      v1::Breach b;
      if (!b.ParseFromString(r.res.Bytes(i, 1)))
        return Status::DataLoss("breach row does not parse");
      out->emplace_back(static_cast<uint64_t>(r.res.Int(i, 0)), std::move(b));
    }
    return Status::Ok();
  }

  Status QueryFindings(const FindingQuery& q, std::vector<v1::Finding>* out) override {
    Read r(this);
    // With `overlap`, closed_at (in the body only) is checked here, so the
    // page ends when `limit` rows passed, not at the SQL LIMIT.
    Status s = r.Run(
        "SELECT body FROM findings WHERE finding_id > $1 AND ($2 = '' OR service_id = $2) AND "
        "($3 = '' OR duty_id = $3) AND ($4 = '' OR status = $4) AND ($8::int = 1 OR opened_at >= "
        "$5) AND opened_at <= $6 AND ($7 = '' OR finding_id = $7) ORDER BY finding_id LIMIT $9",
        {T(q.after_id), T(q.service_id), T(q.duty_id), T(q.status), I(q.from), I(q.to),
         T(q.finding_id), I(q.overlap ? 1 : 0), L(q.overlap ? SIZE_MAX : q.limit)},
        "querying findings");
    if (!s.ok()) return s;
    size_t first = out->size();
    for (int i = 0; i < r.res.rows() && out->size() - first < q.limit; ++i) {
      v1::Finding f;
      if (!f.ParseFromString(r.res.Bytes(i, 0)))
        return Status::DataLoss("finding row does not parse");
      if (q.overlap && f.status() != "open" && f.closed_at().seconds() < q.from) continue;
      out->push_back(std::move(f));
    }
    if (!q.with_obligation_ids) return Status::Ok();
    for (size_t k = first; k < out->size(); ++k) {
      v1::Finding& f = (*out)[k];
      s = r.Run(
          "SELECT obligation_id, name, role FROM finding_obligations WHERE finding_id = $1 ORDER "
          "BY id",
          {T(f.finding_id())}, "querying findings");
      if (!s.ok()) return s;
      for (int i = 0; i < r.res.rows(); ++i) {
        std::string name = r.res.Text(i, 1), role = r.res.Text(i, 2);
        if (name.empty() && role.empty()) {
          f.add_obligation_ids(r.res.Text(i, 0));
          continue;
        }
        for (auto& person : *f.mutable_accountable()) {
          if (person.name() == name && person.role() == role)
            person.add_obligation_ids(r.res.Text(i, 0));
        }
      }
    }
    return Status::Ok();
  }

  Status QueryStats(const std::string& service_id, const std::string& from_day,
                    const std::string& to_day, std::vector<StatsRow>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT service_id, day, surface, reason, reports, flagged FROM stats WHERE ($1 = '' OR "
        "service_id = $1) AND day >= $2 AND day <= $3 ORDER BY day",
        {T(service_id), T(from_day), T(to_day)}, "querying stats");
    if (!s.ok()) return s;
    StatsRows(r.res, out);
    return Status::Ok();
  }

  Status QueryObligationDays(const std::string& service_id, int64_t from, int64_t to,
                             std::vector<std::pair<std::string, int64_t>>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT to_char(to_timestamp(received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, "
        "COUNT(*) FROM obligations WHERE received_at >= $2 AND received_at <= $3 AND ($1 = '' OR "
        "service_id = $1) GROUP BY day ORDER BY day",
        {T(service_id), I(from), I(to)}, "counting obligations");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) out->emplace_back(r.res.Text(i, 0), r.res.Int(i, 1));
    return Status::Ok();
  }

  Status ReadStatsPending(std::vector<StatsRow>* out) override {
    Read r(this);
    Status s = r.Run("SELECT service_id, day, surface, reason, reports, flagged FROM stats_pending",
                     {}, "reading pending counts");
    if (s.ok()) StatsRows(r.res, out);
    return s;
  }

  Status EventsForObligation(const std::string& obligation_id,
                             std::vector<uint64_t>* seqs) override {
    return Seqs("SELECT seq FROM obligation_events WHERE obligation_id = $1 ORDER BY seq",
                {T(obligation_id)}, seqs);
  }

  Status FindingEvents(const std::string& finding_id, std::vector<uint64_t>* seqs) override {
    return Seqs("SELECT seq FROM finding_events WHERE finding_id = $1 ORDER BY seq",
                {T(finding_id)}, seqs);
  }

  Status DenominatorEvents(const std::string& service_id, const std::string& duty_id, int64_t start,
                           int64_t end, uint64_t before_seq, std::vector<uint64_t>* seqs) override {
    Read r(this);
    Status s = r.Run(
        "SELECT opened_seq, decided_seq FROM obligations WHERE service_id = $1 AND duty_id = $2 "
        "AND deadline > $3 AND deadline <= $4 AND decided_seq > 0 AND decided_seq < $5",
        {T(service_id), T(duty_id), I(start), I(end), U(before_seq)}, "querying obligations");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) {
      seqs->push_back(static_cast<uint64_t>(r.res.Int(i, 0)));
      seqs->push_back(static_cast<uint64_t>(r.res.Int(i, 1)));
    }
    return Status::Ok();
  }

  Status EventsOfType(int type, uint64_t before_seq, std::vector<uint64_t>* seqs) override {
    return Seqs("SELECT seq FROM key_events WHERE type = $1 AND seq < $2 ORDER BY seq",
                {I(type), U(before_seq)}, seqs);
  }

  Status LookupSignals(const std::string& kind, const std::string& token, int64_t since,
                       std::vector<SignalRow>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT service_id, report_id, category, recorded_at FROM signal_tokens WHERE kind = $1 "
        "AND token = $2 AND recorded_at >= $3",
        {T(kind), B(token), I(since)}, "reading signals");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) {
      out->push_back(
          {kind, token, r.res.Text(i, 0), r.res.Text(i, 1), r.res.Text(i, 2), r.res.Int(i, 3)});
    }
    return Status::Ok();
  }

  Status SignalsOfReport(const std::string& service_id, const std::string& report_id,
                         std::vector<SignalRow>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT kind, token, category, recorded_at FROM signal_tokens WHERE service_id = $1 AND "
        "report_id = $2",
        {T(service_id), T(report_id)}, "reading signals");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) {
      out->push_back({r.res.Text(i, 0), r.res.Bytes(i, 1), service_id, report_id, r.res.Text(i, 2),
                      r.res.Int(i, 3)});
    }
    return Status::Ok();
  }

  Status AlertsOfToken(const std::string& kind, const std::string& token,
                       std::vector<AlertTokenRow>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT alert_id, service_id, recorded_at FROM signal_alert_tokens WHERE kind = $1 AND "
        "token = $2",
        {T(kind), B(token)}, "reading alert tokens");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i)
      out->push_back({r.res.Text(i, 0), r.res.Text(i, 1), kind, token, r.res.Int(i, 2)});
    return Status::Ok();
  }

  Status QueryAlerts(const AlertQuery& q, std::vector<AlertRecord>* out) override {
    Read r(this);
    Status s = r.Run(
        "SELECT body, seq, status, feedback, delivered_at, reviewed_at, breached FROM "
        "signal_alerts WHERE seq > $1 AND delivered_at >= $2 AND delivered_at <= $3 AND ($4 = '' "
        "OR service_id = $4) AND ($5 = '' OR alert_id = $5) AND ($6 = '' OR status = $6) ORDER "
        "BY seq LIMIT $7",
        {U(q.after_seq), I(q.delivered_from), I(q.delivered_to), T(q.service_id), T(q.alert_id),
         T(q.status), L(q.limit)},
        "reading alerts");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) {
      AlertRecord a;
      if (!a.alert.ParseFromString(r.res.Bytes(i, 0)))
        return Status::DataLoss("an alert row does not parse");
      a.alert.set_cursor(static_cast<uint64_t>(r.res.Int(i, 1)));
      a.alert.set_status(r.res.Text(i, 2));
      a.alert.set_feedback(r.res.Text(i, 3));
      a.delivered_at = r.res.Int(i, 4);
      a.reviewed_at = r.res.Int(i, 5);
      a.breached = r.res.Int(i, 6) != 0;
      out->push_back(std::move(a));
    }
    return Status::Ok();
  }

  Status ReadSignalQuota(const std::string& service_id, const std::string& day,
                         int64_t* used) override {
    Read r(this);
    Status s = r.Run("SELECT elements FROM signal_quota WHERE service_id = $1 AND day = $2",
                     {T(service_id), T(day)}, "reading quota");
    if (!s.ok()) return s;
    *used = r.res.rows() ? r.res.Int(0, 0) : 0;
    return Status::Ok();
  }

  Status ReadCarried(CarriedRows* out) override {
    Read r(this);
    const bool own = !snapshot_;
    Status s = own ? r.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") : Status::Ok();
    if (!s.ok()) return s;
    s = [&]() -> Status {
      Status q =
          r.Run("SELECT key, value FROM meta WHERE key != 'schema_version'", {}, "reading meta");
      if (!q.ok()) return q;
      for (int i = 0; i < r.res.rows(); ++i)
        out->meta.emplace_back(r.res.Text(i, 0), r.res.Bytes(i, 1));
      q = r.Run(
          "SELECT service_id, report_id, digest, seq, recorded_at, ruleset_version FROM "
          "report_index WHERE seq = 0",
          {}, "reading the report index");
      if (!q.ok()) return q;
      for (int i = 0; i < r.res.rows(); ++i) {
        out->unflagged.push_back({r.res.Text(i, 0), r.res.Text(i, 1), r.res.Text(i, 2),
                                  static_cast<uint64_t>(r.res.Int(i, 3)), r.res.Int(i, 4),
                                  r.res.Text(i, 5)});
      }
      for (auto [table, rows] :
           {std::pair{"stats", &out->stats}, std::pair{"stats_pending", &out->stats_pending}}) {
        q = r.Run(
            std::string("SELECT service_id, day, surface, reason, reports, flagged FROM ") + table,
            {}, "reading statistics");
        if (!q.ok()) return q;
        StatsRows(r.res, rows);
      }
      q = r.Run(
          "SELECT kind, token, service_id, report_id, category, recorded_at FROM signal_tokens", {},
          "reading signals");
      if (!q.ok()) return q;
      for (int i = 0; i < r.res.rows(); ++i) {
        out->signals.push_back({r.res.Text(i, 0), r.res.Bytes(i, 1), r.res.Text(i, 2),
                                r.res.Text(i, 3), r.res.Text(i, 4), r.res.Int(i, 5)});
      }
      q = r.Run("SELECT alert_id, service_id, kind, token, recorded_at FROM signal_alert_tokens",
                {}, "reading alert tokens");
      if (!q.ok()) return q;
      for (int i = 0; i < r.res.rows(); ++i) {
        out->alert_tokens.push_back({r.res.Text(i, 0), r.res.Text(i, 1), r.res.Text(i, 2),
                                     r.res.Bytes(i, 3), r.res.Int(i, 4)});
      }
      return Status::Ok();
    }();
    if (own) (void)r.Exec(s.ok() ? "COMMIT" : "ROLLBACK");
    return s;
  }

  Status WriteCopy(const CopyChunk& chunk) override {
    std::lock_guard<std::mutex> lock(write_.mu);
    Status s = write_.Exec("BEGIN", "copying");
    if (s.ok()) s = CopyRows(chunk);
    if (s.ok()) s = write_.Exec("COMMIT", "copying");
    if (!s.ok() && write_.in_transaction()) (void)write_.Exec("ROLLBACK", "rolling back");
    if (s.ok() && !chunk.events.empty()) written_ = chunk.events.back().seq;
    return s;
  }

 private:
  // REQUIRES: write_.mu held, a transaction open.
  Status CopyRows(const CopyChunk& chunk) {
    Status s;
    for (const StoredEvent& e : chunk.events) {
      s = W("INSERT INTO events (seq, type, time, payload, leaf_hash) VALUES ($1, $2, $3, $4, $5)",
            {U(e.seq), I(e.type), I(e.time), B(e.payload), B(e.leaf_hash)},
            "copying event " + std::to_string(e.seq));
      if (!s.ok()) return s;
    }
    s = InsertNodes(chunk.nodes);
    if (!s.ok()) return s;
    for (const v1::Checkpoint& c : chunk.checkpoints) {
      s =
          W("INSERT INTO checkpoints (tree_size, root_hash, time, signature, note) VALUES ($1, $2, "
            "$3, $4, $5)",
            {U(c.tree_size()), B(c.root_hash()), I(c.time().seconds()), B(c.signature()),
             B(c.note())},
            "copying a checkpoint");
      if (!s.ok()) return s;
    }
    if (!chunk.carried) return Status::Ok();
    const CarriedRows& c = *chunk.carried;
    for (const auto& [key, value] : c.meta) {
      s =
          W("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
            "excluded.value",
            {T(key), B(value)}, "copying meta");
      if (!s.ok()) return s;
    }
    // Without a schema version the next open derives the engine's state
    // from the copied log.
    s = W("DELETE FROM meta WHERE key = 'schema_version'", {}, "copying meta");
    if (!s.ok()) return s;
    for (const ReportIndexRow& r : c.unflagged) {
      s = IndexReport(r.service_id, r.report_id, r.digest, r.seq, r.recorded_at, r.ruleset_version);
      if (!s.ok()) return s;
    }
    for (auto [table, rows] :
         {std::pair{"stats", &c.stats}, std::pair{"stats_pending", &c.stats_pending}}) {
      for (const StatsRow& r : *rows) {
        s = W(std::string("INSERT INTO ") + table +
                  " (service_id, day, surface, reason, reports, flagged) VALUES ($1, $2, $3, $4, "
                  "$5, $6)",
              {T(r.service_id), T(r.day), T(r.surface), T(r.reason), I(r.reports), I(r.flagged)},
              "copying statistics");
        if (!s.ok()) return s;
      }
    }
    for (const SignalRow& r : c.signals) {
      s = W(
          "INSERT INTO signal_tokens (kind, token, service_id, report_id, category, "
          "recorded_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
          {T(r.kind), B(r.token), T(r.service_id), T(r.report_id), T(r.category), I(r.recorded_at)},
          "copying signals");
      if (!s.ok()) return s;
    }
    for (const AlertTokenRow& r : c.alert_tokens) {
      s =
          W("INSERT INTO signal_alert_tokens (alert_id, service_id, kind, token, recorded_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            {T(r.alert_id), T(r.service_id), T(r.kind), B(r.token), I(r.recorded_at)},
            "copying alert tokens");
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  // A read on one connection of the pool, held for the object's life.
  // With a snapshot open, every read is on its connection, the first.
  struct Read {
    explicit Read(PgBackend* b)
        : in_snapshot(b->snapshot_),
          conn(in_snapshot
                   ? &b->reads_[0]
                   : &b->reads_[b->next_read_.fetch_add(1, std::memory_order_relaxed) % kReads]),
          lock(conn->mu) {}
    Read(PgBackend* b, Conn* c) : in_snapshot(b->snapshot_), conn(c), lock(conn->mu) {}
    Status Run(const std::string& sql, const std::vector<Param>& params, const std::string& what) {
      Status s = conn->Run(sql, params, &res, what);
      // A session the database ended (it restarted) is found out by the
      // first statement sent on it, which closes it: a read is sent once
      // more, on a new session. Not in a snapshot, whose transaction ended
      // with the old one.
      if (!s.ok() && !conn->raw() && !in_snapshot) s = conn->Run(sql, params, &res, what);
      return s;
    }
    // Streams the rows of `sql` through a cursor, a chunk at a time, so
    // that a result as long as the ledger's history (every decided
    // obligation within retention) is never held whole in memory.
    // REQUIRES: inside a transaction; `row` must not use this Read.
    Status Each(const std::string& sql, const std::vector<Param>& params, const std::string& what,
                const std::function<Status(const Result&, int)>& row) {
      Status s = conn->Run("DECLARE cw_each NO SCROLL CURSOR FOR " + sql, params, nullptr, what);
      if (!s.ok()) return s;
      const int chunk = g_read_chunk.load(std::memory_order_relaxed);
      const std::string fetch = "FETCH " + std::to_string(chunk) + " FROM cw_each";
      s = [&]() -> Status {
        for (;;) {
          Status f = conn->Run(fetch, {}, &res, what);
          if (!f.ok()) return f;
          for (int i = 0; i < res.rows(); ++i) {
            f = row(res, i);
            if (!f.ok()) return f;
          }
          if (res.rows() < chunk) return Status::Ok();
        }
      }();
      res = Result();
      // Closed on every path: a snapshot's transaction outlives this read.
      Status closed = conn->Run("CLOSE cw_each", {}, nullptr, what);
      return s.ok() ? closed : s;
    }
    const bool in_snapshot;
    Status Exec(const std::string& sql) { return conn->Exec(sql, "reading"); }
    Conn* conn;
    std::lock_guard<std::mutex> lock;
    Result res;
  };

  static void StatsRows(const Result& r, std::vector<StatsRow>* out) {
    for (int i = 0; i < r.rows(); ++i) {
      out->push_back(
          {r.Text(i, 0), r.Text(i, 1), r.Text(i, 2), r.Text(i, 3), r.Int(i, 4), r.Int(i, 5)});
    }
  }

  Status Seqs(const std::string& sql, const std::vector<Param>& params,
              std::vector<uint64_t>* seqs) {
    Read r(this);
    Status s = r.Run(sql, params, "querying");
    if (!s.ok()) return s;
    for (int i = 0; i < r.res.rows(); ++i) seqs->push_back(static_cast<uint64_t>(r.res.Int(i, 0)));
    return Status::Ok();
  }

  static Status FindingFrom(Conn& c, const std::string& id, v1::Finding* out, bool* found) {
    Result r;
    Status s =
        c.Run("SELECT body FROM findings WHERE finding_id = $1", {T(id)}, &r, "reading a finding");
    if (!s.ok()) return s;
    *found = r.rows() > 0;
    if (*found && !out->ParseFromString(r.Bytes(0, 0)))
      return Status::DataLoss("finding row " + id + " does not parse");
    return Status::Ok();
  }

  // Whether `w` was committed by an attempt whose answer was lost.
  // REQUIRES: write_.mu held.
  Status AlreadyWritten(const WriteSet& w, bool* done) {
    Result r;
    Status s;
    if (!w.events.empty()) {
      s = write_.Run("SELECT leaf_hash FROM events WHERE seq = $1", {U(w.events.front().seq)}, &r,
                     "checking the last write");
      if (!s.ok()) return s;
      *done = r.rows() > 0;
      if (*done && r.Bytes(0, 0) != w.events.front().leaf_hash) {
        return Status::DataLoss("event " + std::to_string(w.events.front().seq) +
                                " in the ledger is not the one this carewatchd wrote: another "
                                "writer used the ledger");
      }
      return Status::Ok();
    }
    if (w.checkpoint) {
      s = write_.Run("SELECT 1 FROM checkpoints WHERE tree_size = $1",
                     {U(w.checkpoint->tree_size())}, &r, "checking the last write");
      if (!s.ok()) return s;
      *done = r.rows() > 0;
      return Status::Ok();
    }
    // Extras alone (statistics, the index of unflagged reports, signals):
    // written again; their statements are idempotent except the counts,
    // which a lost answer may at worst count twice in stats_pending.
    *done = false;
    return Status::Ok();
  }

  Status W(const std::string& sql, const std::vector<Param>& params, const std::string& what,
           Result* out = nullptr) {
    return write_.Run(sql, params, out, what);
  }

  Status InsertNodes(const std::vector<TreeNode>& nodes) {
    for (const TreeNode& n : nodes) {
      Status s = W(
          "INSERT INTO tree_nodes (level, idx, hash) VALUES ($1, $2, $3) ON CONFLICT (level, idx) "
          "DO UPDATE SET hash = excluded.hash",
          {I(n.level), U(n.index), B(n.hash)}, "storing the tree");
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  Status IndexReport(const std::string& service_id, const std::string& report_id,
                     const std::string& digest, uint64_t seq, int64_t recorded_at,
                     const std::string& ruleset_version) {
    // Before the row is committed, so before any lookup could need it.
    if (filter_) filter_->Add(service_id, report_id);
    return W(
        "INSERT INTO report_index (service_id, report_id, digest, seq, recorded_at, "
        "ruleset_version) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        {T(service_id), T(report_id), T(digest), U(seq), I(recorded_at), T(ruleset_version)},
        "indexing a report");
  }

  // Stores what Derive computed. REQUIRES: write_.mu held, a transaction open.
  Status WriteDerived(const DerivedBatch& d) {
    Status s;
    for (const ObligationRow& o : d.opened) {
      s =
          W("INSERT INTO obligations (obligation_id, service_id, report_id, duty_id, rule_id, "
            "deadline, received_at, record_grace, sweep_at, opened_seq, decided_seq, status, "
            "breach_at, breach_kind, finding_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
            "$9, $10, 0, 1, 0, '', '', $11) ON CONFLICT DO NOTHING",
            {T(o.obligation_id), T(o.service_id), T(o.report_id), T(o.duty_id), T(o.rule_id),
             I(o.deadline), I(o.received_at), I(o.record_grace), I(o.sweep_at), U(o.opened_seq),
             B(o.body)},
            "storing an obligation");
      if (!s.ok()) return s;
    }
    for (const DerivedBatch::Action& a : d.actions) {
      s = W("INSERT INTO obligation_actions (obligation_id, action, taken_at) VALUES ($1, $2, $3)",
            {T(a.obligation_id), T(a.action.action), I(a.action.taken_at)}, "storing an action");
      if (!s.ok()) return s;
    }
    for (const DerivedBatch::Decision& x : d.decided) {
      // Counted in its window's hour first, while it still reads undecided
      // (a second decision of it changes neither).
      static const std::string count_hour =
          std::string("INSERT INTO window_hours (hour, service_id, duty_id, decided) SELECT ") +
          LedgerBackend::kWindowHourSql +
          ", service_id, duty_id, 1 FROM obligations WHERE obligation_id = $1 AND decided_seq = 0 "
          "ON CONFLICT (hour, service_id, duty_id) DO UPDATE SET decided = window_hours.decided + "
          "1";
      s = W(count_hour, {T(x.obligation_id)}, "counting a decision in its hour");
      if (!s.ok()) return s;
      s =
          W("UPDATE obligations SET decided_seq = $1, status = $2, breach_at = $3, breach_kind = "
            "$4 WHERE obligation_id = $5 AND decided_seq = 0",
            {U(x.seq), I(x.status), I(x.breach_at), T(x.breach_kind), T(x.obligation_id)},
            "deciding an obligation");
      if (!s.ok()) return s;
    }
    for (const auto& [ob, finding] : d.in_finding) {
      s = W("UPDATE obligations SET finding_id = $1 WHERE obligation_id = $2", {T(finding), T(ob)},
            "linking a finding");
      if (!s.ok()) return s;
    }
    for (const auto& [seq, b] : d.breaches) {
      s =
          W("INSERT INTO breaches (seq, obligation_id, report_id, service_id, duty_id, rule_id, "
            "deadline, at, kind, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            {U(seq), T(b.obligation_id()), T(b.report_id()), T(b.service_id()), T(b.duty_id()),
             T(b.rule_id()), I(b.deadline().seconds()), I(b.at().seconds()), T(b.kind()),
             B(b.SerializeAsString())},
            "storing a breach");
      if (!s.ok()) return s;
    }
    for (const DerivedBatch::FindingRow& r : d.findings) {
      const v1::Finding& f = r.finding;
      s =
          W("INSERT INTO findings (finding_id, service_id, duty_id, status, opened_at, last_seq, "
            "body) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (finding_id) DO UPDATE SET "
            "service_id = excluded.service_id, duty_id = excluded.duty_id, status = "
            "excluded.status, opened_at = excluded.opened_at, last_seq = excluded.last_seq, body "
            "= excluded.body",
            {T(f.finding_id()), T(f.service_id()), T(f.duty_id()), T(f.status()),
             I(f.opened_at().seconds()), U(r.seq), B(f.SerializeAsString())},
            "storing a finding");
      if (!s.ok()) return s;
    }
    for (const DerivedBatch::FindingMember& m : d.finding_members) {
      s =
          W("INSERT INTO finding_obligations (finding_id, obligation_id, name, role) VALUES ($1, "
            "$2, $3, $4)",
            {T(m.finding_id), T(m.obligation_id), T(m.name), T(m.role)},
            "storing a finding's obligations");
      if (!s.ok()) return s;
    }
    for (const auto& [id, seq] : d.obligation_events) {
      s =
          W("INSERT INTO obligation_events (obligation_id, seq) VALUES ($1, $2) ON CONFLICT DO "
            "NOTHING",
            {T(id), U(seq)}, "indexing an obligation's events");
      if (!s.ok()) return s;
    }
    for (const auto& [id, seq] : d.finding_events) {
      s = W("INSERT INTO finding_events (finding_id, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            {T(id), U(seq)}, "indexing a finding's events");
      if (!s.ok()) return s;
    }
    for (const auto& [type, seq] : d.key_events) {
      s = W("INSERT INTO key_events (type, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            {I(type), U(seq)}, "indexing an event");
      if (!s.ok()) return s;
    }
    for (const DerivedBatch::Flagged& f : d.flagged) {
      s = IndexReport(f.service_id, f.report_id, f.digest, f.seq, f.recorded_at, f.ruleset_version);
      if (!s.ok()) return s;
    }
    for (const auto& [service, day, surface, reason, reports, flagged] : d.rolled_up) {
      // What a rollup put into the log is no longer pending.
      s = W(
          "UPDATE stats_pending SET reports = reports - $1, flagged = flagged - $2 WHERE "
          "service_id = $3 AND day = $4 AND surface = $5 AND reason = $6",
          {I(reports), I(flagged), T(service), T(day), T(surface), T(reason)}, "rolling up counts");
      if (!s.ok()) return s;
    }
    if (!d.rolled_up.empty()) {
      s = W("DELETE FROM stats_pending WHERE reports = 0 AND flagged = 0", {}, "rolling up counts");
      if (!s.ok()) return s;
    }
    for (const DerivedBatch::AlertChange& c : d.alert_changes) {
      if (c.delivered) {
        s =
            W("INSERT INTO signal_alerts (alert_id, service_id, seq, status, feedback, "
              "delivered_at, reviewed_at, breached, body) VALUES ($1, $2, $3, $4, '', $5, 0, 0, "
              "$6) ON CONFLICT (alert_id) DO UPDATE SET seq = excluded.seq, status = "
              "excluded.status, body = excluded.body",
              {T(c.alert_id), T(c.alert.service_id()), U(c.seq), T(c.alert.status()),
               I(c.delivered_at), B(c.alert.SerializeAsString())},
              "storing an alert");
      } else {
        s =
            W("UPDATE signal_alerts SET seq = CASE WHEN $1::bigint > 0 THEN $1::bigint ELSE seq "
              "END, status = CASE WHEN $2::text != '' THEN $2::text ELSE status END, feedback = "
              "CASE WHEN $3::text != '' THEN $3::text ELSE feedback END, reviewed_at = CASE WHEN "
              "$4::bigint > 0 AND (reviewed_at = 0 OR $4::bigint < reviewed_at) THEN $4::bigint "
              "ELSE reviewed_at END, breached = GREATEST(breached, $5::int) WHERE alert_id = $6",
              {U(c.seq), T(c.status), T(c.feedback), I(c.reviewed_at), I(c.breached ? 1 : 0),
               T(c.alert_id)},
              "updating an alert");
      }
      if (!s.ok()) return s;
    }
    for (const auto& [service, day, n] : d.signal_quota) {
      s =
          W("INSERT INTO signal_quota (service_id, day, elements) VALUES ($1, $2, $3) ON CONFLICT "
            "(service_id, day) DO UPDATE SET elements = signal_quota.elements + excluded.elements",
            {T(service), T(day), I(n)}, "counting signal evaluations");
      if (!s.ok()) return s;
    }
    for (const auto& [name, delta] : d.counter_deltas) {
      if (delta == 0) continue;
      s =
          W("INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET "
            "value = counters.value + excluded.value",
            {T(name), I(delta)}, "counting");
      if (!s.ok()) return s;
    }
    if (d.clock != INT64_MIN) {
      s =
          W("INSERT INTO counters (name, value) VALUES ('clock', $1) ON CONFLICT (name) DO UPDATE "
            "SET value = GREATEST(counters.value, excluded.value)",
            {I(d.clock)}, "recording the clock");
      if (!s.ok()) return s;
    }
    return Status::Ok();
  }

  // REQUIRES: write_.mu held, a transaction open.
  Status WriteRows(const WriteSet& w) {
    Status s;
    for (const StoredEvent& e : w.events) {
      s = W("INSERT INTO events (seq, type, time, payload, leaf_hash) VALUES ($1, $2, $3, $4, $5)",
            {U(e.seq), I(e.type), I(e.time), B(e.payload), B(e.leaf_hash)},
            "appending event " + std::to_string(e.seq));
      if (!s.ok()) return s;
    }
    s = InsertNodes(w.nodes);
    if (s.ok()) s = WriteDerived(w.derived);
    if (!s.ok()) return s;
    if (w.checkpoint) {
      const v1::Checkpoint& c = *w.checkpoint;
      s =
          W("INSERT INTO checkpoints (tree_size, root_hash, time, signature, note) VALUES ($1, $2, "
            "$3, $4, $5)",
            {U(c.tree_size()), B(c.root_hash()), I(c.time().seconds()), B(c.signature()),
             B(c.note())},
            "writing checkpoint");
      if (!s.ok()) return s;
    }
    for (const ReportIndexRow& r : w.extras.reports) {
      s = IndexReport(r.service_id, r.report_id, r.digest, r.seq, r.recorded_at, r.ruleset_version);
      if (!s.ok()) return s;
    }
    for (const char* table : {"stats", "stats_pending"}) {
      for (const StatsRow& r : w.extras.stats) {
        s = W(
            std::string("INSERT INTO ") + table +
                " (service_id, day, surface, reason, reports, flagged) VALUES ($1, $2, $3, $4, "
                "$5, $6) ON CONFLICT (service_id, day, surface, reason) DO UPDATE SET reports = " +
                table + ".reports + excluded.reports, flagged = " + table +
                ".flagged + excluded.flagged",
            {T(r.service_id), T(r.day), T(r.surface), T(r.reason), I(r.reports), I(r.flagged)},
            "writing stats");
        if (!s.ok()) return s;
      }
    }
    for (const SignalRow& r : w.extras.signals) {
      s = W(
          "INSERT INTO signal_tokens (kind, token, service_id, report_id, category, "
          "recorded_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
          {T(r.kind), B(r.token), T(r.service_id), T(r.report_id), T(r.category), I(r.recorded_at)},
          "storing signals");
      if (!s.ok()) return s;
    }
    for (const AlertTokenRow& r : w.extras.alert_tokens) {
      s =
          W("INSERT INTO signal_alert_tokens (alert_id, service_id, kind, token, recorded_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            {T(r.alert_id), T(r.service_id), T(r.kind), B(r.token), I(r.recorded_at)},
            "storing alert tokens");
      if (!s.ok()) return s;
    }
    for (const auto& [key, value] : w.extras.meta) {
      s =
          W("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
            "excluded.value",
            {T(key), B(value)}, "writing meta");
      if (!s.ok()) return s;
    }
    for (const auto& [service, report] : w.extras.withdraw_signals) {
      s = W("DELETE FROM signal_tokens WHERE service_id = $1 AND report_id = $2",
            {T(service), T(report)}, "withdrawing signals");
      if (!s.ok()) return s;
    }
    if (w.extras.prune_signals_before) {
      for (const char* sql : {"DELETE FROM signal_tokens WHERE recorded_at < $1",
                              "DELETE FROM signal_alert_tokens WHERE recorded_at < $1"}) {
        s = W(sql, {I(w.extras.prune_signals_before)}, "pruning signals");
        if (!s.ok()) return s;
      }
    }
    for (int64_t id : w.extras.dequeue) {
      s = W("DELETE FROM unsequenced WHERE id = $1", {I(id)}, "sequencing queued commands");
      if (!s.ok()) return s;
    }
    if (w.extras.prune_unflagged_before) {
      size_t* pruned = w.pruned;
      write_.Queue(
          "DELETE FROM report_index WHERE (service_id, report_id) IN (SELECT service_id, "
          "report_id FROM report_index WHERE seq = 0 AND recorded_at < $1 LIMIT $2)",
          {I(w.extras.prune_unflagged_before), L(w.extras.prune_limit)}, "pruning the report index",
          [pruned](const Result& r) {
            if (pruned) *pruned = static_cast<size_t>(r.Changed());
          });
    }
    return Status::Ok();
  }

  std::string url_;
  bool read_only_ = false;
  // A read snapshot is open on reads_[0] (read-only backends only).
  std::atomic<bool> snapshot_{false};
  int snapshot_depth_ = 0;  // BeginSnapshot calls not yet ended (one thread)
  // The writer's view of the log (write_.mu): the last seq it committed, and
  // whether the last COMMIT's answer was lost (and that batch's last seq).
  bool size_known_ = false;
  uint64_t written_ = 0;
  bool uncertain_ = false;
  uint64_t uncertain_last_ = 0;
  Conn write_;  // the writer thread's; holds the writer lock
  // The filter of indexed report ids (writable backends only).
  static constexpr size_t kScanChunk = 10000;
  std::unique_ptr<ReportFilter> filter_;
  std::thread filter_scan_;
  std::atomic<bool> stop_scan_{false};
  std::atomic<bool> filter_lost_{false};  // the writer lock was lost and taken again
  bool filter_restored_ = false;          // left by the last writer's clean stop
  std::atomic<uint64_t> lookups_filtered_{0}, lookups_read_{0};
  static constexpr size_t kReads = 4;
  std::array<Conn, kReads> reads_;
  std::atomic<size_t> next_read_{0};
};

}  // namespace

bool IsPostgresUrl(const std::string& url) {
  return url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
}

std::string RedactUrl(const std::string& url) {
  // scheme://user:password@host... -> scheme://user:****@host...
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  size_t start = scheme + 3;
  size_t at = url.find('@', start);
  size_t slash = url.find('/', start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) {
    // A password given as a query parameter.
    size_t p = url.find("password=");
    if (p == std::string::npos) return url;
    size_t end = url.find('&', p);
    return url.substr(0, p) + "password=****" + (end == std::string::npos ? "" : url.substr(end));
  }
  size_t colon = url.find(':', start);
  std::string out = url;
  if (colon != std::string::npos && colon < at)
    out = url.substr(0, colon + 1) + "****" + url.substr(at);
  size_t p = out.find("password=");
  if (p != std::string::npos) {
    size_t end = out.find('&', p);
    out = out.substr(0, p) + "password=****" + (end == std::string::npos ? "" : out.substr(end));
  }
  return out;
}

namespace {

class PgCommandQueue : public CommandQueue {
 public:
  Status Open(const std::string& url, int busy_timeout_ms) {
    shown_ = RedactUrl(url);
    for (auto& c : conns_) {
      c = std::make_unique<Conn>();
      c->conninfo = url;
      c->shown = shown_;
      c->lock_timeout_ms = busy_timeout_ms;
    }
    for (Listener& l : listeners_) {
      l.conn.conninfo = url;
      l.conn.shown = shown_;
      // The wait lock is held against it only by transactions of the
      // queue (short) or by a waiter of a process that is going away (a
      // writer whose session has not ended yet): past a second the waiter
      // polls instead (SetWaiting fails) and tries again later.
      l.conn.lock_timeout_ms = 1000;
    }
    std::lock_guard<std::mutex> lock(conns_[0]->mu);
    Result r;
    Status s = conns_[0]->Exec("SELECT 1 FROM schema_migrations WHERE version = 2",
                               "opening the queue", &r);
    if (!s.ok()) {
      if (s.code() == Status::Code::kUnavailable) return s;
      return Status::FailedPrecondition("ledger " + shown_ + " has no queue: " + s.message());
    }
    if (r.rows() != 1) {
      return Status::FailedPrecondition(
          "ledger " + shown_ +
          " has no queue of replicas' commands yet: its writer runs an older carewatchd");
    }
    return Status::Ok();
  }

  // Group commit: commands pushed while a transaction is being committed
  // go together in the next one (one round trip and one WAL flush for all),
  // committed by the first of their callers.
  Status Push(const std::string& service_id, const std::string& report_id,
              const std::string& digest, const std::string& body, int64_t accepted_at, int64_t* id,
              std::string* queued_digest) override {
    auto p = NewPush(service_id, report_id, digest, body, accepted_at);
    std::unique_lock<std::mutex> lock(batch_mu_);
    batch_.push_back(p);
    while (!p->done) {
      if (flushing_) {
        batch_cv_.wait(lock, [&] { return p->done || !flushing_; });
        continue;
      }
      FlushBatch(lock);
    }
    if (!p->status.ok()) return p->status;
    *id = p->id;
    if (queued_digest) *queued_digest = p->queued_digest;
    return Status::Ok();
  }

  // An asynchronous push joins the next batch like any other; the queue's
  // pusher thread commits a batch that holds one when no Push caller does.
  void PushAsync(const std::string& service_id, const std::string& report_id,
                 const std::string& digest, const std::string& body, int64_t accepted_at,
                 PushDone done) override {
    auto p = NewPush(service_id, report_id, digest, body, accepted_at);
    p->callback = std::move(done);
    std::unique_lock<std::mutex> lock(batch_mu_);
    if (stop_pusher_) {
      lock.unlock();
      p->callback(Status::Unavailable("the queue of " + shown_ + " is closing"), 0, "");
      return;
    }
    if (!pusher_.joinable()) {
      pusher_ = std::thread([this] {
        NameThisThread("cw-queue-push");
        std::unique_lock<std::mutex> l(batch_mu_);
        while (true) {
          batch_cv_.wait(l, [&] { return stop_pusher_ || (async_queued_ > 0 && !flushing_); });
          if (async_queued_ == 0) break;  // stopping, and nothing left to push
          FlushBatch(l);
        }
      });
    }
    batch_.push_back(p);
    ++async_queued_;
    batch_cv_.notify_all();
  }

  void StopPushes() override {
    {
      std::lock_guard<std::mutex> lock(batch_mu_);
      stop_pusher_ = true;
    }
    batch_cv_.notify_all();
    if (pusher_.joinable()) pusher_.join();
  }

  ~PgCommandQueue() override { StopPushes(); }

  Status Answers(const std::vector<int64_t>& ids, std::vector<QueueAnswer>* out) override {
    if (ids.empty()) return Status::Ok();
    return WithConn([&](Conn& c) -> Status {
      Result r;
      Status s = c.Run("SELECT id, body FROM sequenced WHERE id = ANY($1::bigint[])",
                       {T(IdArray(ids))}, &r, "reading answers");
      if (!s.ok()) return s;
      for (int i = 0; i < r.rows(); ++i) out->push_back({r.Int(i, 0), r.Bytes(i, 1)});
      return Status::Ok();
    });
  }

  Status Queued(const std::vector<int64_t>& ids, std::vector<int64_t>* out) override {
    if (ids.empty()) return Status::Ok();
    return WithConn([&](Conn& c) -> Status {
      Result r;
      Status s = c.Run("SELECT id FROM unsequenced WHERE id = ANY($1::bigint[])", {T(IdArray(ids))},
                       &r, "reading the queue");
      if (!s.ok()) return s;
      for (int i = 0; i < r.rows(); ++i) out->push_back(r.Int(i, 0));
      return Status::Ok();
    });
  }

  Status Pull(size_t limit, std::vector<QueuedRow>* out) override {
    return WithConn([&](Conn& c) -> Status {
      Result r;
      Status s = c.Run("SELECT id, body FROM unsequenced ORDER BY id LIMIT $1", {L(limit)}, &r,
                       "reading the queue");
      if (!s.ok()) return s;
      for (int i = 0; i < r.rows(); ++i) out->push_back({r.Int(i, 0), r.Bytes(i, 1)});
      return Status::Ok();
    });
  }

  Status Answer(const std::vector<QueueAnswer>& answers, int64_t now,
                int64_t prune_before) override {
    return WithConn([&](Conn& c) -> Status {
      c.StartQueue();
      for (const QueueAnswer& a : answers) {
        c.Queue(
            "INSERT INTO sequenced (id, body, answered_at) VALUES ($1, $2, $3) ON CONFLICT (id) "
            "DO NOTHING",
            {I(a.id), B(a.body), I(now)}, "answering a command", nullptr);
        c.Queue("DELETE FROM unsequenced WHERE id = $1", {I(a.id)}, "answering a command", nullptr);
      }
      if (prune_before > 0) {
        c.Queue("DELETE FROM sequenced WHERE answered_at < $1", {I(prune_before)},
                "pruning answers", nullptr);
      }
      // Wakes the queueing replicas' pollers that wait (SetWaiting).
      c.Queue(kAnnounceAnswered, {}, "announcing answers", nullptr);
      Status s = c.SendQueued("answering commands");
      if (!s.ok() && c.broken()) c.Close();  // answers are idempotent: sent again
      return s;
    });
  }

  Status Depth(int64_t* n) override {
    return WithConn([&](Conn& c) -> Status {
      Result r;
      Status s = c.Run("SELECT COUNT(*) FROM unsequenced", {}, &r, "reading the queue");
      if (s.ok()) *n = r.Int(0, 0);
      return s;
    });
  }

  Status SetWaiting(Event event, bool waiting) override {
    Listener& l = listeners_[event == Event::kQueued ? 0 : 1];
    std::lock_guard<std::mutex> lock(l.conn.mu);
    if (waiting == l.waiting && (!waiting || l.conn.raw())) return Status::Ok();
    if (!waiting) {
      l.waiting = false;
      if (!l.conn.raw()) return Status::Ok();  // the lock went with the session
      Status s = l.conn.Exec(
          std::string("SELECT ") +
              (event == Event::kQueued ? "pg_advisory_unlock(" : "pg_advisory_unlock_shared(") +
              kWaitLock[event == Event::kQueued ? 0 : 1] + ")",
          "leaving the queue's waiters");
      if (!s.ok()) l.conn.Close();  // the lock goes with the session
      return s;
    }
    // Listen first (LISTEN takes effect when its transaction commits, so in
    // a statement of its own), then take the lock, which waits for the
    // transactions that did not announce (they hold the other side of it)
    // to end; every one that cannot take it from then on announces to a
    // session already listening. A new session loses both: listen again.
    if (!l.conn.raw() || PQstatus(l.conn.raw()) != CONNECTION_OK) l.conn.Close();
    Status s = l.conn.Exec(
        std::string("LISTEN ") + (event == Event::kQueued ? kQueuedChannel : kAnsweredChannel),
        "listening for the queue");
    if (s.ok()) {
      s = l.conn.Exec(
          std::string("SELECT ") +
              (event == Event::kQueued ? "pg_advisory_lock(" : "pg_advisory_lock_shared(") +
              kWaitLock[event == Event::kQueued ? 0 : 1] + ")",
          "joining the queue's waiters");
    }
    if (!s.ok()) {
      l.conn.Close();
      return s;
    }
    l.waiting = true;
    return Status::Ok();
  }

  Status WaitFor(Event event, int timeout_ms, int wake_fd, bool* happened) override {
    Listener& l = listeners_[event == Event::kQueued ? 0 : 1];
    std::lock_guard<std::mutex> lock(l.conn.mu);
    *happened = false;
    if (!l.conn.raw()) {
      l.waiting = false;
      return Status::Unavailable("not listening for the queue of " + shown_);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      PGconn* c = l.conn.raw();
      if (!c || PQconsumeInput(c) != 1) break;
      // Every notification that came is taken: one wake-up answers them all.
      while (PGnotify* n = PQnotifies(c)) {
        PQfreemem(n);
        *happened = true;
      }
      if (*happened) return Status::Ok();
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return Status::Ok();
      pollfd fds[2] = {{PQsocket(c), POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (fds[0].fd < 0) break;
      const int r = ::poll(fds, wake_fd < 0 ? 1 : 2, static_cast<int>(left));
      if (r < 0 && errno != EINTR) break;
      if (r > 0 && (fds[1].revents & POLLIN)) return Status::Ok();  // the caller's wake-up
    }
    const std::string m = l.conn.raw() ? PQerrorMessage(l.conn.raw()) : "no connection";
    l.conn.Close();
    l.waiting = false;
    return Status::Unavailable("listening for the queue of " + shown_ + ": " + m);
  }

 private:
  struct PendingPush {
    std::string service_id, report_id, digest, body;
    int64_t accepted_at = 0;
    int64_t id = 0;
    std::string queued_digest;
    Status status;
    bool done = false;
    PushDone callback;  // PushAsync's
  };
  static std::shared_ptr<PendingPush> NewPush(const std::string& service_id,
                                              const std::string& report_id,
                                              const std::string& digest, const std::string& body,
                                              int64_t accepted_at) {
    auto p = std::make_shared<PendingPush>();
    p->service_id = service_id;
    p->report_id = report_id;
    p->digest = digest;
    p->body = body;
    p->accepted_at = accepted_at;
    return p;
  }
  // Commits every push waiting (with `lock` held on entry and on return,
  // released meanwhile) and calls the asynchronous ones' callbacks.
  void FlushBatch(std::unique_lock<std::mutex>& lock) {
    flushing_ = true;
    std::vector<std::shared_ptr<PendingPush>> mine;
    mine.swap(batch_);
    async_queued_ = 0;
    lock.unlock();
    PushBatch(mine);
    lock.lock();
    for (auto& q : mine) q->done = true;
    flushing_ = false;
    batch_cv_.notify_all();
    lock.unlock();
    for (auto& q : mine) {
      if (q->callback) q->callback(q->status, q->id, q->queued_digest);
    }
    lock.lock();
  }
  // The channels Push and Answer announce on (PostgreSQL's NOTIFY: sent
  // when the transaction commits, to every session LISTENing, once per
  // transaction however many times it is sent).
  static constexpr const char* kQueuedChannel = "carewatch_queued";
  static constexpr const char* kAnsweredChannel = "carewatch_answered";
  // Who is told (pg_notify, sent when the transaction commits): only a
  // waiter that waits. A waiter holds its wait lock (kWaitLock) for as long
  // as it waits: the sequencer exclusively, queueing replicas shared. A
  // push (an answer) that can take the other side of that lock for its
  // transaction is not announced, and a waiter that starts waiting takes
  // the lock only once that transaction has ended, then reads the table:
  // every command (answer) is announced or read. Under load no waiter
  // waits, and the transactions send no NOTIFY (PostgreSQL serialises the
  // commits of transactions that notify, WAL flush included).
  static constexpr const char* kAnnounceQueued =
      "SELECT pg_notify('carewatch_queued', '') WHERE NOT "
      "pg_try_advisory_xact_lock_shared(1667330662, hashtext(current_schema()))";
  static constexpr const char* kAnnounceAnswered =
      "SELECT pg_notify('carewatch_answered', '') WHERE NOT "
      "pg_try_advisory_xact_lock(1667330663, hashtext(current_schema()))";
  static constexpr const char* kWaitLock[2] = {"1667330662, hashtext(current_schema())",
                                               "1667330663, hashtext(current_schema())"};
  // A waiter's own session: its LISTEN and its wait lock go with it.
  struct Listener {
    Conn conn;
    bool waiting = false;
  };
  static constexpr const char* kInsert =
      "INSERT INTO unsequenced (service_id, report_key, digest, body, accepted_at) VALUES ($1, "
      "NULLIF($2, ''), $3, $4, $5) ON CONFLICT (service_id, report_key) DO NOTHING RETURNING id";

  // Inserts `batch` in one transaction; a report queued already gets the
  // queued command's id and digest.
  void PushBatch(const std::vector<std::shared_ptr<PendingPush>>& batch) {
    Status s = WithConn([&](Conn& c) -> Status {
      c.StartQueue();
      for (const auto& p : batch) {
        p->id = 0;
        PendingPush* raw = p.get();
        c.Queue(kInsert,
                {T(p->service_id), T(p->report_id), T(p->digest), B(p->body), I(p->accepted_at)},
                "queueing a command", [raw](const Result& r) {
                  if (r.rows() == 1) raw->id = r.Int(0, 0);
                });
      }
      // Wakes the writer's sequencer if it waits (CommandQueue::SetWaiting).
      c.Queue(kAnnounceQueued, {}, "announcing queued commands", nullptr);
      Status st = c.SendQueued("queueing commands");
      if (!st.ok() && c.broken()) c.Close();
      if (!st.ok()) return st;
      for (const auto& p : batch) {
        if (p->id) {
          p->queued_digest = p->digest;
        } else {
          p->status = PushOne(c, *p);  // a conflict: the report is queued already
        }
      }
      return Status::Ok();
    });
    if (!s.ok()) {
      for (const auto& p : batch) p->status = s;
    }
  }

  // One command, outside a batch, for a report found queued already.
  Status PushOne(Conn& c, PendingPush& p) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      Result r;
      Status s =
          c.Run("SELECT id, digest FROM unsequenced WHERE service_id = $1 AND report_key = $2",
                {T(p.service_id), T(p.report_id)}, &r, "reading the queue");
      if (!s.ok()) return s;
      if (r.rows() == 1) {
        p.id = r.Int(0, 0);
        p.queued_digest = r.Text(0, 1);
        return Status::Ok();
      }
      // Sequenced in between: queue it again (the writer answers a retry).
      s = c.Run(kInsert,
                {T(p.service_id), T(p.report_id), T(p.digest), B(p.body), I(p.accepted_at)}, &r,
                "queueing a command");
      if (!s.ok()) return s;
      if (r.rows() == 1) {
        p.id = r.Int(0, 0);
        p.queued_digest = p.digest;
        return Status::Ok();
      }
    }
    return Status::Unavailable("report " + p.report_id + " keeps changing in the queue");
  }

  static std::string IdArray(const std::vector<int64_t>& ids) {
    std::string a = "{";
    for (size_t i = 0; i < ids.size(); ++i) a += (i ? "," : "") + std::to_string(ids[i]);
    return a + "}";
  }
  // Runs `fn` on a free connection of the pool (or waits for one).
  template <typename Fn>
  Status WithConn(Fn&& fn) {
    size_t start = next_.fetch_add(1) % conns_.size();
    for (size_t k = 0; k < conns_.size(); ++k) {
      Conn& c = *conns_[(start + k) % conns_.size()];
      std::unique_lock<std::mutex> lock(c.mu, std::try_to_lock);
      if (lock.owns_lock()) return fn(c);
    }
    Conn& c = *conns_[start];
    std::lock_guard<std::mutex> lock(c.mu);
    return fn(c);
  }
  std::string shown_;
  std::array<Listener, 2> listeners_;  // kQueued, kAnswered
  std::array<std::unique_ptr<Conn>, 8> conns_;
  std::atomic<size_t> next_{0};
  std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  std::vector<std::shared_ptr<PendingPush>> batch_;  // waiting for the next transaction
  bool flushing_ = false;                            // a caller is committing a batch
  int async_queued_ = 0;                             // PushAsync's in batch_
  bool stop_pusher_ = false;
  std::thread pusher_;  // commits batches holding PushAsync's (started by the first)
};

}  // namespace

Status TryWriterLock(const std::string& url, std::unique_ptr<WriterLock>* out) {
  auto l = std::make_unique<PgWriterLock>();
  l->c.conninfo = url;
  l->c.shown = RedactUrl(url);
  std::lock_guard<std::mutex> lock(l->c.mu);
  Status s = l->c.Ensure();
  if (!s.ok()) return s;
  Result r;
  s = l->c.Exec(std::string("SELECT pg_try_advisory_lock(") + kWriterLock + ")",
                "locking the ledger", &r);
  if (!s.ok()) return s;
  if (r.rows() != 1 || r.Text(0, 0) != "t") {
    return Status::FailedPrecondition(
        "ledger " + l->c.shown + " is in use by another carewatchd, which holds its writer lock");
  }
  *out = std::move(l);
  return Status::Ok();
}

Status OpenCommandQueue(const std::string& url, int busy_timeout_ms,
                        std::unique_ptr<CommandQueue>* out) {
  auto q = std::make_unique<PgCommandQueue>();
  Status s = q->Open(url, busy_timeout_ms);
  if (!s.ok()) return s;
  *out = std::move(q);
  return Status::Ok();
}

void SetPostgresReadChunk(int rows) { g_read_chunk.store(std::max(rows, 1)); }

Status OpenPostgresBackend(const std::string& url, bool read_only, int busy_timeout_ms,
                           std::unique_ptr<LedgerBackend>* out,
                           std::shared_ptr<WriterLock> writer_lock) {
  auto backend = std::make_unique<PgBackend>();
  Status s = backend->Open(url, read_only, busy_timeout_ms, std::move(writer_lock));
  if (!s.ok()) return s;
  *out = std::move(backend);
  return Status::Ok();
}

}  // namespace carewatch::ledger
