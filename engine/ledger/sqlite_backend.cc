// The embedded ledger backend (sqlite_backend.h).
#include "engine/ledger/sqlite_backend.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "engine/common/files.h"
#include "engine/common/thread_name.h"
#include "engine/ledger/derive.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/report_filter.h"
#include "engine/ledger/sqlite_vfs.h"

namespace carewatch::ledger {

namespace {

namespace fs = std::filesystem;

// Tables a migration never rebuilds: the log, its tree and checkpoints, and
// what events alone cannot give (counts and ids of reports that matched
// nothing).
const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, type INTEGER NOT NULL, time INTEGER NOT NULL,
  payload BLOB NOT NULL, leaf_hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_nodes (pos INTEGER NOT NULL, level INTEGER NOT NULL,
  hash BLOB NOT NULL, PRIMARY KEY (pos, level)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
  tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL, time INTEGER NOT NULL,
  signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS report_index (
  service_id TEXT NOT NULL, report_id TEXT NOT NULL, digest TEXT NOT NULL, seq INTEGER NOT NULL,
  recorded_at INTEGER NOT NULL, ruleset_version TEXT NOT NULL,
  PRIMARY KEY (service_id, report_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_index_expiry (
  n INTEGER PRIMARY KEY, recorded_at INTEGER NOT NULL, service_id TEXT NOT NULL,
  report_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stats_pending (
  service_id TEXT NOT NULL, day TEXT NOT NULL, surface TEXT NOT NULL, reason TEXT NOT NULL,
  reports INTEGER NOT NULL, flagged INTEGER NOT NULL,
  PRIMARY KEY (service_id, day, surface, reason));
CREATE TABLE IF NOT EXISTS stats (
  service_id TEXT NOT NULL, day TEXT NOT NULL, surface TEXT NOT NULL, reason TEXT NOT NULL,
  reports INTEGER NOT NULL, flagged INTEGER NOT NULL,
  PRIMARY KEY (service_id, day, surface, reason));
CREATE TABLE IF NOT EXISTS signal_tokens (
  kind TEXT NOT NULL, token BLOB NOT NULL, service_id TEXT NOT NULL, report_id TEXT NOT NULL,
  category TEXT NOT NULL, recorded_at INTEGER NOT NULL,
  PRIMARY KEY (kind, token, service_id, report_id, category)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS signal_tokens_report ON signal_tokens (service_id, report_id);
CREATE INDEX IF NOT EXISTS signal_tokens_time ON signal_tokens (recorded_at);
CREATE TABLE IF NOT EXISTS signal_alert_tokens (
  alert_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, kind TEXT NOT NULL, token BLOB NOT NULL,
  recorded_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS signal_alert_tokens_token ON signal_alert_tokens (kind, token);
CREATE INDEX IF NOT EXISTS signal_alert_tokens_time ON signal_alert_tokens (recorded_at);
)sql";

// Tables derived from the events alone (DerivedBatch): a migration drops and
// derives them again.
const char* kDerivedTables[] = {"breaches",           "findings",          "finding_obligations",
                                "finding_events",     "obligation_events", "obligations",
                                "obligation_actions", "key_events",        "counters",
                                "signal_alerts",      "signal_quota",      "window_hours"};
const char* kDerivedSchema = R"sql(
CREATE TABLE IF NOT EXISTS breaches (
  seq INTEGER PRIMARY KEY, obligation_id TEXT NOT NULL, report_id TEXT NOT NULL,
  service_id TEXT NOT NULL, duty_id TEXT NOT NULL, rule_id TEXT NOT NULL,
  deadline INTEGER NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS breaches_service ON breaches (service_id, at);
CREATE INDEX IF NOT EXISTS breaches_duty ON breaches (duty_id, at);
CREATE INDEX IF NOT EXISTS breaches_rule ON breaches (rule_id, at);
CREATE TABLE IF NOT EXISTS findings (
  finding_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, duty_id TEXT NOT NULL,
  status TEXT NOT NULL, opened_at INTEGER NOT NULL, last_seq INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS findings_service ON findings (service_id, duty_id, opened_at);
CREATE INDEX IF NOT EXISTS findings_open ON findings (status) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS finding_obligations (finding_id TEXT NOT NULL, obligation_id TEXT NOT NULL,
  name TEXT NOT NULL, role TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS finding_obligations_id ON finding_obligations (finding_id);
CREATE TABLE IF NOT EXISTS finding_events (finding_id TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (finding_id, seq));
CREATE TABLE IF NOT EXISTS obligation_events (obligation_id TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (obligation_id, seq));
CREATE TABLE IF NOT EXISTS obligations (
  obligation_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, report_id TEXT NOT NULL,
  duty_id TEXT NOT NULL, rule_id TEXT NOT NULL, deadline INTEGER NOT NULL,
  received_at INTEGER NOT NULL, record_grace INTEGER NOT NULL, sweep_at INTEGER NOT NULL,
  opened_seq INTEGER NOT NULL, decided_seq INTEGER NOT NULL, status INTEGER NOT NULL,
  breach_at INTEGER NOT NULL, breach_kind TEXT NOT NULL, finding_id TEXT NOT NULL,
  body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS obligations_window ON obligations (service_id, duty_id, deadline);
CREATE INDEX IF NOT EXISTS obligations_open ON obligations (sweep_at) WHERE decided_seq = 0;
CREATE INDEX IF NOT EXISTS obligations_decided_window ON obligations (deadline, service_id, duty_id,
  status) WHERE decided_seq > 0;
CREATE INDEX IF NOT EXISTS obligations_received ON obligations (received_at, service_id);
CREATE INDEX IF NOT EXISTS obligations_breached ON obligations (deadline) WHERE status = 4 AND
  decided_seq > 0;
CREATE TABLE IF NOT EXISTS window_hours (
  hour INTEGER NOT NULL, service_id TEXT NOT NULL, duty_id TEXT NOT NULL, decided INTEGER NOT NULL,
  PRIMARY KEY (hour, service_id, duty_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS obligation_actions (obligation_id TEXT NOT NULL, action TEXT NOT NULL,
  taken_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS obligation_actions_id ON obligation_actions (obligation_id);
CREATE TABLE IF NOT EXISTS key_events (type INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (type, seq));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS signal_alerts (
  alert_id TEXT PRIMARY KEY, service_id TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
  feedback TEXT NOT NULL, delivered_at INTEGER NOT NULL, reviewed_at INTEGER NOT NULL,
  breached INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS signal_alerts_service ON signal_alerts (service_id, seq);
CREATE INDEX IF NOT EXISTS signal_alerts_seq ON signal_alerts (seq);
CREATE INDEX IF NOT EXISTS signal_alerts_delivered ON signal_alerts (delivered_at);
CREATE TABLE IF NOT EXISTS signal_quota (
  service_id TEXT NOT NULL, day TEXT NOT NULL, elements INTEGER NOT NULL,
  PRIMARY KEY (service_id, day)) WITHOUT ROWID;
)sql";

// The partial index obligations_breached and its queries name the status.
static_assert(v1::OBLIGATION_STATUS_BREACHED == 4);

// 4: cross-platform signal alerts and quotas; 3: the engine's state
// (obligations with actions, counters) and stored subtrees; 2: evidence
// indexes.
constexpr const char* kSchemaVersion = "4";

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // Strings are bound without a copy (SQLITE_STATIC): the caller's string
  // must live, unchanged, until the statement is reset, which every use
  // does after its last step (Reset also clears the bindings, so a cached
  // statement never keeps a pointer past it). A temporary would not live
  // that long, so binding one does not compile; the Copy variants take a
  // copy, for temporaries and for strings changed while the statement steps.
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& Bind(int i, std::string&& v) = delete;
  Stmt& BindBlob(int i, std::string&& v) = delete;
  Stmt& BindCopy(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlobCopy(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  int Step() { return sqlite3_step(stmt_); }
  // A statement that did not prepare (a damaged or foreign schema: a ledger
  // file is input) has nothing to reset, and sqlite3_clear_bindings does
  // not accept a null statement as the other calls do.
  void Reset() {
    if (!stmt_) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Blob(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }
  // Valid until the statement steps, resets or ends.
  std::string_view View(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    if (!p) return {};
    return std::string_view(reinterpret_cast<const char*>(p),
                            static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteBackend : public LedgerBackend {
 public:
  ~SqliteBackend() override {
    stop_scan_.store(true, std::memory_order_relaxed);
    if (filter_scan_.joinable()) filter_scan_.join();
    SaveReportFilter();
    if (checkpointer_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(checkpoint_mu_);
        stop_checkpoints_ = true;
      }
      checkpoint_cv_.notify_all();
      checkpointer_.join();
    }
    // The read-only connections go first, so the writer, closing last, can
    // fold the whole WAL into the database file: a closed ledger is one file.
    for (Lookup& l : lookups_) {
      l.stmt.reset();
      if (l.db) sqlite3_close(l.db);
    }
    node_stmt_.reset();
    leaf_stmt_.reset();
    read_cache_.clear();
    if (read_db_) sqlite3_close(read_db_);
    if (checkpoint_db_) sqlite3_close(checkpoint_db_);
    write_statements_.reset();
    write_cache_.clear();
    if (write_db_) {
      sqlite3_wal_checkpoint_v2(write_db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
      sqlite3_close(write_db_);
    }
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the ledger for the next process
  }

  // One writer process per ledger file: an exclusive flock on PATH.lock,
  // held for the life of the backend (the kernel drops it when the process
  // dies). The holder's pid is written in the file for the message.
  Status LockLedger(const std::string& path) {
    std::string lock_path = path + ".lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) {
      return Status::Unavailable("cannot open " + lock_path + ": " + std::strerror(errno));
    }
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {0};
      ssize_t n = ::pread(lock_fd_, buf, sizeof buf - 1, 0);
      std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(lock_fd_);
      lock_fd_ = -1;
      return Status::FailedPrecondition("ledger " + path + " is in use by another process" +
                                        (holder.empty() ? std::string() : " (pid " + holder + ")") +
                                        ", which holds " + lock_path +
                                        ": one carewatchd (or replay) per ledger file");
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd_, 0) != 0 ||
        ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      // The lock holds even if the pid could not be written.
    }
    return Status::Ok();
  }

  Status Open(const std::string& url, const std::string& path, bool read_only,
              int busy_timeout_ms) {
    url_ = url;
    path_ = path;
    read_only_ = read_only;
    busy_timeout_ms_ = busy_timeout_ms;
    if (!read_only) {
      std::error_code ec;
      fs::path p(path);
      if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
    } else if (!fs::exists(path)) {
      return Status::NotFound("no ledger at " + path);
    }
    if (!read_only) {
      Status s = LockLedger(path);
      if (!s.ok()) return s;
      // A new ledger is created readable by its owner only; SQLite gives its
      // -wal and -shm files the same permissions.
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) ::close(fd);
    }
    int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    // A writable connection is used by one thread at a time: the one that
    // opens the ledger, then the Ledger's writer thread alone (WriteBatch,
    // Maintain; every read of other threads goes through read_db_ or the
    // lookup pool). Without SQLite's own mutex, which it took on every
    // bind, step and reset: the writer about 10% faster with 64 callers
    // (docs/performance.md).
    flags |= read_only ? SQLITE_OPEN_FULLMUTEX : SQLITE_OPEN_NOMUTEX;
    ConfigureSqlite();
    // The writer's commits reach the WAL in one write each (sqlite_vfs.h).
    const char* vfs = read_only ? nullptr : GatheringVfs();
    if (sqlite3_open_v2(path.c_str(), &write_db_, flags, vfs) != SQLITE_OK) {
      return Error(write_db_, "cannot open ledger " + path);
    }
    sqlite3_busy_timeout(write_db_, busy_timeout_ms);
    if (!read_only && sqlite3_db_readonly(write_db_, "main") == 1) {
      // SQLite opens a write-protected file read-only without a word; the
      // first write would fail long after /readyz said ready.
      return Status::FailedPrecondition(
          "ledger " + path + " is read-only (file permissions): carewatch must write it");
    }
    if (!read_only) {
      // Commits fsync the WAL (synchronous=FULL). Copying the WAL back into
      // the database is done by a background checkpointer, not inside a
      // commit, so no acknowledged append waits for it. The writer keeps up
      // to 16 MiB of pages cached: the index pages a batch touches are read
      // from memory, not from the file.
      Status s =
          Exec(write_db_,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0; "
               "PRAGMA cache_size=-16384; PRAGMA journal_size_limit=67108864;");
      if (!s.ok()) return s;
      sqlite3_wal_hook(
          write_db_,
          [](void* self, sqlite3*, const char*, int frames) {
            static_cast<SqliteBackend*>(self)->wal_frames_ = frames;
            return SQLITE_OK;
          },
          this);
      s = Exec(write_db_, kSchema);
      if (!s.ok()) return s;
      s = Migrate();
      if (!s.ok()) return s;
      if (sqlite3_open_v2(path.c_str(), &checkpoint_db_,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
        return Error(checkpoint_db_, "cannot open ledger for checkpoints " + path);
      }
      sqlite3_busy_timeout(checkpoint_db_, 1000);
      checkpointer_ = std::thread([this] {
        NameThisThread("cw-wal-ckpt");
        std::unique_lock<std::mutex> lock(checkpoint_mu_);
        while (!stop_checkpoints_) {
          checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(500));
          if (stop_checkpoints_) break;
          lock.unlock();
          sqlite3_wal_checkpoint_v2(checkpoint_db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                    nullptr);
          lock.lock();
        }
      });
    }
    // Check it is a carewatch ledger at all (a corrupt or foreign file), in
    // O(1): a count would read the whole log.
    Status s =
        Exec(write_db_, "SELECT MAX(seq) FROM events; SELECT MAX(tree_size) FROM checkpoints;");
    if (!s.ok()) return Status::DataLoss("not a carewatch ledger (" + path + "): " + s.message());
    {
      // A ledger opened read-only may predate checkpoint notes.
      Stmt st(write_db_, "SELECT name FROM pragma_table_info('checkpoints')");
      while (st.ok() && st.Step() == SQLITE_ROW) has_note_ = has_note_ || st.Text(0) == "note";
    }
    // ...or tree nodes keyed by where they end.
    nodes_by_pos_ = NodesByPosition(write_db_);
    if (sqlite3_open_v2(path.c_str(), &read_db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK) {
      return Error(read_db_, "cannot open ledger for reading " + path);
    }
    sqlite3_busy_timeout(read_db_, 10000);
    for (Lookup& l : lookups_) {
      if (sqlite3_open_v2(path.c_str(), &l.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                          nullptr) != SQLITE_OK) {
        return Error(l.db, "cannot open ledger for lookups " + path);
      }
      sqlite3_busy_timeout(l.db, 10000);
    }
    if (!read_only) StartReportFilter();
    return Status::Ok();
  }

  // The filter of indexed report ids (report_filter.h): the writer adds
  // every row it indexes from now on, and a thread adds the rows already
  // there, reading them with a connection of its own; start-up does not
  // wait for it, and lookups read the index until it is done.
  void StartReportFilter() {
    if (RestoreReportFilter()) return;
    filter_ = std::make_unique<ReportFilter>();
    filter_scan_ = std::thread([this] {
      NameThisThread("cw-filter-scan");
      sqlite3* db = nullptr;
      bool done = false;
      if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                          nullptr) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        // In key order, kScanChunk rows per statement: each chunk is a read
        // transaction of its own, so the scan never holds up the writer's
        // WAL restart (Maintain) for longer than one chunk. A row indexed
        // meanwhile is added by the writer; one there all along is in the
        // chunk that covers its key.
        Stmt st(db,
                "SELECT service_id, report_id FROM report_index WHERE (service_id, report_id) > "
                "(?1, ?2) ORDER BY service_id, report_id LIMIT ?3");
        std::string service, report;
        int rc = SQLITE_ERROR;
        for (bool more = st.ok(); more && !stop_scan_.load(std::memory_order_relaxed);) {
          // Copies: the loop below overwrites both while the statement steps.
          st.BindCopy(1, service).BindCopy(2, report).Bind(3, kScanChunk);
          int64_t rows = 0;
          while ((rc = st.Step()) == SQLITE_ROW) {
            // With their lengths: an id may hold any byte, NUL included.
            auto text = [&](int col) {
              const char* p = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), col));
              return std::string(p ? p : "",
                                 static_cast<size_t>(sqlite3_column_bytes(st.get(), col)));
            };
            service = text(0);
            report = text(1);
            filter_->Add(service, report);
            ++rows;
          }
          st.Reset();
          more = rc == SQLITE_DONE && rows == kScanChunk;
        }
        done = rc == SQLITE_DONE && !stop_scan_.load(std::memory_order_relaxed);
      }
      // Not done (stopped, or the index could not be read): lookups keep
      // reading the index, as they would without a filter.
      if (done) filter_->MarkComplete();
      sqlite3_close(db);
    });
  }

  // A writer that stops cleanly leaves its filter beside the ledger
  // (PATH.filter, 0600), with what the ledger was then (FilterStamp), for
  // the next start instead of the scan. The next writable open takes the
  // file away at once, whatever it finds, so it is only ever there between
  // a clean stop and the next open: a writer that crashed, or a carewatch
  // that does not know it, leaves none, or one whose stamp no longer
  // matches. Ids deleted by retention stay in a saved filter; past
  // kMaxSavedIds ids (where about 1% of new ids pass it) it is not saved,
  // and the next start scans the index again.
  static constexpr uint64_t kMaxSavedIds = 5000000;
  // Below this many ids a scan at start (about 0.4 us an id) costs less than
  // writing and reading the 8 MiB filter: not saved.
  static constexpr uint64_t kMinSavedIds = 65536;
  std::string FilterPath() const { return path_ + ".filter"; }
  // Every report indexed moves the log's size (a flagged report) or the
  // unflagged ids' expiry list and counters.reports (one that matched
  // nothing), in the transaction that indexes it; the last checkpoint's
  // root tells one log from another of the same size.
  std::string FilterStamp() {
    Stmt st(write_db_,
            "SELECT (SELECT ifnull(max(seq), 0) FROM events) || ':' || (SELECT ifnull(max(n), 0) "
            "FROM report_index_expiry) || ':' || (SELECT ifnull(max(value), 0) FROM counters "
            "WHERE name = 'reports') || ':' || ifnull((SELECT hex(root_hash) FROM checkpoints "
            "ORDER BY tree_size DESC LIMIT 1), '')");
    return st.ok() && st.Step() == SQLITE_ROW ? "cwledger " + st.Text(0) : std::string();
  }
  void SaveReportFilter() {
    if (read_only_ || !write_db_ || !filter_ || !filter_->complete() ||
        filter_->added() > kMaxSavedIds || filter_->added() < kMinSavedIds)
      return;
    const std::string stamp = FilterStamp();
    if (stamp.empty()) return;
    // Not saved (a full disk): the next start scans, as after a crash.
    (void)WriteFileDurably(FilterPath(), filter_->SaveStamped(stamp), 0600);
  }
  bool RestoreReportFilter() {
    const std::string path = FilterPath();
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    std::string blob;
    struct stat st {};
    // Only a regular file of this process's user that no one else may
    // write, as SaveReportFilter leaves it, and of a saved filter's size.
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
        (st.st_mode & 077) == 0 && st.st_size > 0 &&
        static_cast<uint64_t>(st.st_size) <= ReportFilter::kBytes + 4096) {
      blob.resize(static_cast<size_t>(st.st_size));
      size_t got = 0;
      while (got < blob.size()) {
        const ssize_t n = ::read(fd, blob.data() + got, blob.size() - got);
        if (n <= 0) break;
        got += static_cast<size_t>(n);
      }
      blob.resize(got);
    }
    ::close(fd);
    // Taken away before it is used: never read twice.
    if (::unlink(path.c_str()) != 0) return false;
    filter_ = ReportFilter::RestoreStamped(blob, FilterStamp());
    filter_restored_ = filter_ != nullptr;
    return filter_restored_;
  }

  LookupStats lookup_stats() const override {
    LookupStats s;
    s.filter_ready = filter_ && filter_->complete();
    s.filter_restored = filter_restored_;
    s.filtered = lookups_filtered_.load(std::memory_order_relaxed);
    s.read = lookups_read_.load(std::memory_order_relaxed);
    return s;
  }

  Status BeginSnapshot() override {
    if (!read_only_) return Status::Ok();
    std::lock_guard<std::mutex> lock(read_mu_);
    if (snapshot_depth_++ > 0) return Status::Ok();  // within the open one
    Status s = Exec(read_db_, "BEGIN");
    if (!s.ok()) return s;
    // A deferred transaction takes its snapshot at its first read: now.
    Stmt st(read_db_, "SELECT count(*) FROM sqlite_schema");
    if (!st.ok() || st.Step() != SQLITE_ROW) {
      s = Error(read_db_, "opening a read snapshot");
      st.Reset();
      (void)Exec(read_db_, "ROLLBACK");
      snapshot_depth_ = 0;
      return s;
    }
    snapshot_ = true;
    return Status::Ok();
  }

  void EndSnapshot() override {
    std::lock_guard<std::mutex> lock(read_mu_);
    if (!snapshot_ || --snapshot_depth_ > 0) return;
    // Statements still holding rows would keep the transaction open.
    read_cache_.clear();
    node_stmt_.reset();
    leaf_stmt_.reset();
    snapshot_stmt_.reset();
    (void)Exec(read_db_, "COMMIT");
    snapshot_ = false;
  }

  uint64_t wal_restarts_deferred() const override {
    return wal_restarts_deferred_.load(std::memory_order_relaxed);
  }

  std::string url() const override { return url_; }

  // Whether tree_nodes is keyed by (pos, level), pos = (idx + 1) << level:
  // the number of leaves up to the subtree's end.
  static bool NodesByPosition(sqlite3* db) {
    Stmt st(db, "SELECT name FROM pragma_table_info('tree_nodes')");
    bool by_pos = false;
    while (st.ok() && st.Step() == SQLITE_ROW) by_pos = by_pos || st.Text(0) == "pos";
    return by_pos;
  }

  // Whether the ledger's schema holds the table or index `name`.
  Status HasSchemaObject(const std::string& type, const std::string& name, bool* has) {
    Stmt st(write_db_, "SELECT 1 FROM sqlite_schema WHERE type = ? AND name = ?");
    if (!st.ok()) return Error(write_db_, "reading the schema");
    st.Bind(1, type).Bind(2, name);
    *has = st.Step() == SQLITE_ROW;
    return Status::Ok();
  }

  // Runs `sql` in one write transaction (CarryForward) when the ledger's
  // schema still holds the index `old_index`, which `sql` replaces.
  Status CarryForwardIndex(const std::string& old_index, const char* what, const std::string& sql) {
    bool has = false;
    Status s = HasSchemaObject("index", old_index, &has);
    if (!s.ok() || !has) return s;
    return CarryForward(what, sql);
  }

  // Runs `sql` in one write transaction: all of it or, on failure, none
  // (DataLoss naming `what`).
  Status CarryForward(const char* what, const std::string& sql) {
    Status s = Exec(write_db_, ("BEGIN IMMEDIATE; " + sql + " COMMIT;").c_str());
    if (s.ok()) return s;
    if (!sqlite3_get_autocommit(write_db_)) (void)Exec(write_db_, "ROLLBACK");
    return Status::DataLoss("cannot carry " + path_ + " forward (" + what + "): " + s.message());
  }

  // Columns added since the first schema, for ledgers written before them.
  Status Migrate() {
    bool has_note = false;
    {
      Stmt st(write_db_, "SELECT name FROM pragma_table_info('checkpoints')");
      if (!st.ok()) return Error(write_db_, "reading the schema");
      while (st.Step() == SQLITE_ROW) has_note = has_note || st.Text(0) == "note";
    }
    if (!has_note) {
      Status s = Exec(write_db_, "ALTER TABLE checkpoints ADD COLUMN note BLOB");
      if (!s.ok()) return s;
    }
    if (!NodesByPosition(write_db_)) {
      // Subtrees were keyed by (level, idx): each level's new nodes went to
      // a page of their own, a dozen or more pages written by every commit.
      // Keyed by where they end, one batch's nodes are neighbours.
      Status s = CarryForward("tree nodes",
                              "CREATE TABLE tree_nodes_by_pos (pos INTEGER NOT NULL, level "
                              "INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (pos, level)) "
                              "WITHOUT ROWID; "
                              "INSERT INTO tree_nodes_by_pos (pos, level, hash) "
                              "SELECT (idx + 1) << level, level, hash FROM tree_nodes "
                              "ORDER BY 1, 2; "
                              "DROP TABLE tree_nodes; "
                              "ALTER TABLE tree_nodes_by_pos RENAME TO tree_nodes;");
      if (!s.ok()) return s;
    }
    // Reports that matched nothing were found for retention through a
    // partial index on report_index (recorded_at): ordered by time, then by
    // id, so each commit's few rows went to as many pages of it. They are
    // now listed in the order they were indexed (report_index_expiry,
    // appended to at its end).
    Status carried = CarryForwardIndex(
        "report_index_unflagged", "report index",
        "DELETE FROM report_index_expiry; "
        "INSERT INTO report_index_expiry (recorded_at, service_id, report_id) "
        "SELECT recorded_at, service_id, report_id FROM report_index WHERE seq = 0 "
        "ORDER BY recorded_at; "
        "DROP INDEX report_index_unflagged;");
    if (!carried.ok()) return carried;
    // A restart reads every decided obligation within retention for the
    // systemic windows: its service, duty, deadline and status. Indexed by
    // deadline alone, each such row was a seek into the table; the index
    // now holds them, and only a breached row's other columns are read from
    // the table (SQLite defers the seek until they are).
    carried = CarryForwardIndex("obligations_decided", "decided obligations' index",
                                "CREATE INDEX IF NOT EXISTS obligations_decided_window ON "
                                "obligations (deadline, service_id, duty_id, status) WHERE "
                                "decided_seq > 0; DROP INDEX obligations_decided;");
    if (!carried.ok()) return carried;
    // Tables derived from events are derived again, by the shared code,
    // whenever the schema version changes (schema 3 added the engine's
    // state): one pass over the log, once.
    std::string version;
    {
      Stmt st(write_db_, "SELECT value FROM meta WHERE key = 'schema_version'");
      if (st.ok() && st.Step() == SQLITE_ROW) version = st.Blob(0);
    }
    if (version == kSchemaVersion) {
      bool had_hours = false;
      Status s = HasSchemaObject("table", "window_hours", &had_hours);
      if (s.ok()) s = Exec(write_db_, kDerivedSchema);
      return s.ok() ? CountWindowHoursIfShort(!had_hours) : s;
    }
    Status s = Exec(write_db_, "BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    s = Rederive(version);
    if (s.ok()) return Exec(write_db_, "COMMIT");
    (void)Exec(write_db_, "ROLLBACK");
    return Status::DataLoss("cannot carry " + path_ + " forward to ledger schema " +
                            kSchemaVersion + ": " + s.message() + "; run `carewatch verify` on it");
  }

  // A restart counted every decided obligation within retention into its
  // window's hours; the counts are now stored (window_hours), written with
  // the decisions. A ledger written before the table (created empty by the
  // schema), or in which a carewatch from before it went on deciding, holds
  // fewer decisions there than its counters: its hours are counted again
  // from its decided obligations, in one transaction; as they are when
  // the table was only now `created`.
  Status CountWindowHoursIfShort(bool created) {
    int64_t decided = 0, counted = 0;
    {
      Stmt st(write_db_, LedgerBackend::WindowHoursCountersSql().c_str());
      if (!st.ok() || st.Step() != SQLITE_ROW) return Error(write_db_, "reading the counters");
      decided = st.Int(0);
      counted = st.Int(1);
    }
    if (decided == counted && !created) return Status::Ok();
    return CarryForward("systemic windows' hours", LedgerBackend::CountWindowHoursSql());
  }

  // REQUIRES: a write transaction is open.
  Status Rederive(const std::string& from_version) {
    for (const char* t : kDerivedTables) {
      Status s = Exec(write_db_, ("DROP TABLE IF EXISTS " + std::string(t)).c_str());
      if (!s.ok()) return s;
    }
    Status s = Exec(write_db_, kDerivedSchema);
    if (!s.ok()) return s;
    if (from_version.empty() || from_version == "1") {
      // Counts from before rollups go into the first one.
      s = Exec(write_db_, "INSERT OR IGNORE INTO stats_pending SELECT * FROM stats");
      if (!s.ok()) return s;
    }
    WriteSet w;
    const FindingReader read = [this](const std::string& id, v1::Finding* f, bool* found) {
      return ReadFindingFrom(write_db_, id, f, found);
    };
    Stmt all(write_db_, "SELECT seq, payload FROM events ORDER BY seq");
    if (!all.ok()) return Error(write_db_, "reading events");
    int rc;
    std::vector<v1::LedgerEvent> page;
    auto flush = [&]() -> Status {
      std::vector<const v1::LedgerEvent*> parsed;
      for (const v1::LedgerEvent& e : page) parsed.push_back(&e);
      w.derived = DerivedBatch();
      Status d = Derive(parsed, read, &w.derived);
      // The log's rollups were subtracted from the pending counts already.
      w.derived.rolled_up.clear();
      if (d.ok()) d = WriteDerived(w.derived);
      page.clear();
      return d;
    };
    while ((rc = all.Step()) == SQLITE_ROW) {
      v1::LedgerEvent e;
      if (!e.ParseFromString(all.Blob(1)) || e.seq() != static_cast<uint64_t>(all.Int(0)))
        return Status::DataLoss("event " + std::to_string(all.Int(0)) + " does not parse");
      page.push_back(std::move(e));
      if (page.size() == 10000) {
        s = flush();
        if (!s.ok()) return s;
      }
    }
    if (rc != SQLITE_DONE) return Error(write_db_, "reading events");
    s = flush();
    if (!s.ok()) return s;
    // Reports that matched nothing exist only as counts.
    s = Exec(write_db_,
             "INSERT OR REPLACE INTO counters (name, value) SELECT 'reports', "
             "COALESCE(SUM(reports), 0) FROM stats");
    if (!s.ok()) return s;
    Stmt put(write_db_, "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)");
    put.BindBlobCopy(1, kSchemaVersion);
    return put.Step() == SQLITE_DONE ? Status::Ok() : Error(write_db_, "writing meta");
  }

  Status ReadLeafHashes(std::vector<Hash>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_, "SELECT seq, leaf_hash FROM events ORDER BY seq");
    if (!st.ok()) return Error(read_db_, "reading leaf hashes");
    uint64_t expect = 1;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      if (static_cast<uint64_t>(st.Int(0)) != expect) {
        return Status::DataLoss("ledger is missing event " + std::to_string(expect) +
                                "; run `carewatch verify` on it");
      }
      std::string h = st.Blob(1);
      if (h.size() != 32) {
        return Status::DataLoss("event " + std::to_string(expect) + " has a malformed leaf hash");
      }
      out->push_back(std::move(h));
      ++expect;
    }
    if (rc != SQLITE_DONE) return Error(read_db_, "reading leaf hashes");
    return Status::Ok();
  }

  Status GetMeta(const std::string& key, std::string* value, bool* found) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_, "SELECT value FROM meta WHERE key = ?");
    if (!st.ok()) return Error(read_db_, "reading meta");
    st.Bind(1, key);
    int rc = st.Step();
    *found = rc == SQLITE_ROW;
    if (*found) *value = st.Blob(0);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading meta");
  }

  Status PutMeta(const std::string& key, const std::string& value) override {
    Stmt st(write_db_, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
    st.Bind(1, key).BindBlob(2, value);
    return st.Step() == SQLITE_DONE ? Status::Ok() : Error(write_db_, "writing meta");
  }

  // Unavailable when the failure is one that may clear by itself (another
  // process holds the lock past the busy timeout, the disk is full, an I/O
  // error): nothing of the batch was committed and the same batch may be
  // written again. DataLoss otherwise (a constraint, a corrupt file).
  Status WriteBatch(const WriteSet& w) override {
    if (!w.extras.dequeue.empty())
      return Status::FailedPrecondition("an SQLite ledger has no queue of replicas' commands");
    Status s = Step(Writer("BEGIN IMMEDIATE"));
    if (s.ok()) s = WriteRows(w);
    if (s.ok()) s = Step(Writer("COMMIT"));
    if (s.ok()) return s;
    const int code = sqlite3_extended_errcode(write_db_) & 0xff;
    if (!sqlite3_get_autocommit(write_db_)) {
      // The transaction is still open: undo it whole. Its error is the one
      // reported; a failed rollback leaves nothing more to say.
      (void)Exec(write_db_, "ROLLBACK");
    }
    const bool transient = code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_FULL ||
                           code == SQLITE_IOERR || code == SQLITE_CANTOPEN;
    return transient ? s : Status::DataLoss(s.message());
  }

  // Passive checkpoints (the background thread) never let the WAL start
  // again while a reader is in it, and report lookups nearly always are: the
  // WAL, and the search of its index on every read, would grow with the
  // ledger. Past kRestartFrames the writer, between batches, runs a RESTART
  // checkpoint: it waits for readers to move on, so the next commit writes
  // from the start of the file (trimmed to journal_size_limit).
  //
  // The wait is short (kRestartWaitMs). carewatch's own readers hold a
  // snapshot for one page or chunk; a reader of another process may hold
  // one for minutes (`sqlite3 .backup`, a long query, `ledger backup`), and
  // waiting the busy timeout for it before every batch held every write
  // behind it. A restart that could not happen is tried again once the WAL
  // has grown by kRestartFrames more or a second has passed: meanwhile the
  // WAL grows (SQLite cannot start it again under a reader's snapshot) and
  // writes go on.
  void Maintain() override {
    if (wal_frames_ <= kRestartFrames) return;
    const auto now = std::chrono::steady_clock::now();
    if (wal_frames_ <= restart_at_frames_ && now < restart_retry_at_) return;
    int log_frames = 0, done_frames = 0;
    sqlite3_busy_timeout(write_db_, kRestartWaitMs);
    const int rc = sqlite3_wal_checkpoint_v2(write_db_, nullptr, SQLITE_CHECKPOINT_RESTART,
                                             &log_frames, &done_frames);
    sqlite3_busy_timeout(write_db_, busy_timeout_ms_);
    if (rc == SQLITE_OK) {
      wal_frames_ = 0;
      restart_at_frames_ = kRestartFrames;
    } else {
      restart_at_frames_ = wal_frames_ + kRestartFrames;
      restart_retry_at_ = now + std::chrono::seconds(1);
      wal_restarts_deferred_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  Status WriteNodes(const std::vector<TreeNode>& nodes) override {
    Status s = Exec(write_db_, "BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    s = InsertNodes(nodes);
    if (s.ok()) s = Exec(write_db_, "COMMIT");
    if (!s.ok() && !sqlite3_get_autocommit(write_db_)) (void)Exec(write_db_, "ROLLBACK");
    return s;
  }

  Status ReadTreeSize(uint64_t* size) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_, "SELECT COALESCE(MAX(seq), 0) FROM events");
    if (!st.ok() || st.Step() != SQLITE_ROW) return Error(read_db_, "reading the log's size");
    *size = static_cast<uint64_t>(st.Int(0));
    return Status::Ok();
  }

  Status ReadNode(int level, uint64_t index, Hash* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    if (!node_stmt_)
      node_stmt_ = std::make_unique<Stmt>(
          read_db_, nodes_by_pos_ ? "SELECT hash FROM tree_nodes WHERE pos = ? AND level = ?"
                                  : "SELECT hash FROM tree_nodes WHERE idx = ? AND level = ?");
    if (!leaf_stmt_)
      leaf_stmt_ = std::make_unique<Stmt>(read_db_, "SELECT leaf_hash FROM events WHERE seq = ?");
    Stmt& st = level == 0 ? *leaf_stmt_ : *node_stmt_;
    if (!st.ok()) return Error(read_db_, "reading the tree");
    if (level == 0) {
      st.Bind(1, static_cast<int64_t>(index + 1));
    } else {
      uint64_t key = nodes_by_pos_ ? (index + 1) << level : index;
      st.Bind(1, static_cast<int64_t>(key)).Bind(2, static_cast<int64_t>(level));
    }
    int rc = st.Step();
    if (rc == SQLITE_ROW) *out = st.Blob(0);
    st.Reset();
    if (rc == SQLITE_DONE)
      return Status::NotFound("no stored subtree at level " + std::to_string(level) + " index " +
                              std::to_string(index));
    if (rc != SQLITE_ROW) return Error(read_db_, "reading the tree");
    if (out->size() != 32) {
      return Status::DataLoss("the stored subtree at level " + std::to_string(level) + " index " +
                              std::to_string(index) + " is malformed");
    }
    return Status::Ok();
  }

  Status ReadCounters(std::map<std::string, int64_t>* counters, int64_t* clock) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_, "SELECT name, value FROM counters");
    if (!st.ok()) return Error(read_db_, "reading counters");
    *clock = INT64_MIN;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      if (st.Text(0) == "clock") {
        *clock = st.Int(1);
      } else {
        (*counters)[st.Text(0)] = st.Int(1);
      }
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading counters");
  }

  static constexpr const char* kObligationColumns =
      "obligation_id, service_id, report_id, duty_id, rule_id, deadline, received_at, "
      "record_grace, sweep_at, opened_seq, decided_seq, status, breach_at, breach_kind, "
      "finding_id, body";

  static ObligationRow ObligationFrom(Stmt& st) {
    ObligationRow r;
    r.obligation_id = st.Text(0);
    r.service_id = st.Text(1);
    r.report_id = st.Text(2);
    r.duty_id = st.Text(3);
    r.rule_id = st.Text(4);
    r.deadline = st.Int(5);
    r.received_at = st.Int(6);
    r.record_grace = st.Int(7);
    r.sweep_at = st.Int(8);
    r.opened_seq = static_cast<uint64_t>(st.Int(9));
    r.decided_seq = static_cast<uint64_t>(st.Int(10));
    r.status = static_cast<int>(st.Int(11));
    r.breach_at = st.Int(12);
    r.breach_kind = st.Text(13);
    r.finding_id = st.Text(14);
    r.body = st.Blob(15);
    return r;
  }

  Status EachOpenObligation(
      const std::function<Status(ObligationRow& row)>& row,
      const std::function<void(std::string_view, ObligationActionRow&&)>& action) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    // One read transaction, so the actions agree with the obligations (the
    // snapshot's, when one is open).
    Status s = snapshot_ ? Status::Ok() : Exec(read_db_, "BEGIN");
    if (!s.ok()) return s;
    s = [&]() -> Status {
      Stmt st(read_db_, (std::string("SELECT ") + kObligationColumns +
                         " FROM obligations WHERE decided_seq = 0 ORDER BY sweep_at")
                            .c_str());
      if (!st.ok()) return Error(read_db_, "reading open obligations");
      int rc;
      while ((rc = st.Step()) == SQLITE_ROW) {
        ObligationRow r = ObligationFrom(st);
        Status each = row(r);
        if (!each.ok()) return each;
      }
      if (rc != SQLITE_DONE) return Error(read_db_, "reading open obligations");
      Stmt acts(read_db_,
                // CROSS JOIN keeps the open obligations (a partial index) as
                // the outer loop: O(open), not a scan of every action.
                "SELECT a.obligation_id, a.action, a.taken_at FROM obligations o CROSS JOIN "
                "obligation_actions a ON a.obligation_id = o.obligation_id WHERE "
                "o.decided_seq = 0 ORDER BY a.rowid");
      if (!acts.ok()) return Error(read_db_, "reading actions");
      while ((rc = acts.Step()) == SQLITE_ROW) action(acts.View(0), {acts.Text(1), acts.Int(2)});
      return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading actions");
    }();
    if (!snapshot_) (void)Exec(read_db_, "COMMIT");
    return s;
  }

  Status ReadDecidedObligations(int64_t deadline_after, std::vector<ObligationRow>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT obligation_id, service_id, report_id, duty_id, rule_id, deadline, "
            "received_at, record_grace, sweep_at, opened_seq, decided_seq, status, breach_at, "
            "breach_kind, finding_id, x'' FROM obligations WHERE decided_seq > 0 AND deadline > ? "
            "ORDER BY deadline");
    if (!st.ok()) return Error(read_db_, "reading decided obligations");
    st.Bind(1, deadline_after);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out->push_back(ObligationFrom(st));
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading decided obligations");
  }

  Status EachWindowRow(int64_t deadline_after, int64_t held_from,
                       const std::function<void(const WindowRow&)>& each) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    // Breaches due before `held_from`, from their partial index; then every
    // decided obligation due from `held_from` on. For those, the columns
    // only a breached row needs are asked for under CASE, so that the rest
    // are read from obligations_decided_window alone, without a seek into
    // the table (a row's columns are computed when it is stepped to).
    static const std::string breached =
        "CASE WHEN status = " + std::to_string(v1::OBLIGATION_STATUS_BREACHED) + " THEN ";
    static const std::string before =
        "SELECT service_id, duty_id, deadline, status, obligation_id, breach_kind, breach_at, "
        "finding_id FROM obligations WHERE status = 4 AND decided_seq > 0 AND deadline > ? AND "
        "deadline < ? ORDER BY deadline";
    static const std::string from =
        "SELECT service_id, duty_id, deadline, status, " + breached + "obligation_id END, " +
        breached + "breach_kind END, " + breached + "breach_at END, " + breached +
        "finding_id END FROM obligations WHERE decided_seq > 0 AND deadline >= ? ORDER BY deadline";
    WindowRow row;
    for (const std::string* sql : {&before, &from}) {
      if (sql == &from && deadline_after == INT64_MAX) break;
      Stmt st(read_db_, sql->c_str());
      if (!st.ok()) return Error(read_db_, "reading decided obligations");
      if (sql == &before)
        st.Bind(1, deadline_after).Bind(2, held_from);
      else
        st.Bind(1, HeldFrom(deadline_after, held_from));
      int rc;
      while ((rc = st.Step()) == SQLITE_ROW) {
        row.service_id = st.View(0);
        row.duty_id = st.View(1);
        row.deadline = st.Int(2);
        row.breached = st.Int(3) == v1::OBLIGATION_STATUS_BREACHED;
        // Columns a row does not need are never read from it.
        row.obligation_id = row.breached ? st.View(4) : std::string_view();
        row.breach_kind = row.breached ? st.View(5) : std::string_view();
        row.breach_at = row.breached ? st.Int(6) : 0;
        row.finding_id = row.breached ? st.View(7) : std::string_view();
        each(row);
      }
      if (rc != SQLITE_DONE) return Error(read_db_, "reading decided obligations");
    }
    return Status::Ok();
  }

  Status EachWindowHour(int64_t from_hour,
                        const std::function<void(const WindowHourRow&)>& each) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    // A read-only look at a ledger no writer has carried forward yet has no
    // window_hours: its counts are those a carry-forward would write.
    static const std::string derived =
        std::string("SELECT service_id, duty_id, hour, count(*) FROM (SELECT ") +
        LedgerBackend::kWindowHourSql +
        " AS hour, service_id, duty_id FROM obligations WHERE decided_seq > 0) WHERE hour >= ? "
        "GROUP BY hour, service_id, duty_id ORDER BY hour";
    bool stored = true;
    if (read_only_) {
      Stmt has(read_db_,
               "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'window_hours'");
      if (!has.ok()) return Error(read_db_, "reading the schema");
      stored = has.Step() == SQLITE_ROW;
    }
    Stmt st(read_db_, stored ? "SELECT service_id, duty_id, hour, decided FROM window_hours WHERE "
                               "hour >= ? ORDER BY hour"
                             : derived.c_str());
    if (!st.ok()) return Error(read_db_, "reading the windows' hours");
    st.Bind(1, from_hour);
    int rc;
    WindowHourRow row;
    while ((rc = st.Step()) == SQLITE_ROW) {
      row.service_id = st.View(0);
      row.duty_id = st.View(1);
      row.hour = st.Int(2);
      row.decided = st.Int(3);
      each(row);
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading the windows' hours");
  }

  Status ReadWindowDeadlines(const std::string& service_id, const std::string& duty_id,
                             int64_t from, int64_t to,
                             std::vector<std::pair<int64_t, std::string>>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT deadline, obligation_id FROM obligations WHERE service_id = ? AND duty_id = ? "
            "AND deadline >= ? AND deadline < ? AND decided_seq > 0");
    if (!st.ok()) return Error(read_db_, "reading decided obligations");
    st.Bind(1, service_id).Bind(2, duty_id).Bind(3, from).Bind(4, to);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out->emplace_back(st.Int(0), st.Text(1));
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading decided obligations");
  }

  Status ReadObligation(const std::string& id, ObligationRow* out, bool* found) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    auto held = Cached(std::string("SELECT ") + kObligationColumns +
                       " FROM obligations WHERE obligation_id = ?");
    Stmt& st = *held;
    if (!st.ok()) return Error(read_db_, "reading an obligation");
    st.Bind(1, id);
    int rc = st.Step();
    *found = rc == SQLITE_ROW;
    if (*found) *out = ObligationFrom(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error(read_db_, "reading an obligation");
    if (!*found) return Status::Ok();
    auto held_acts = Cached(
        "SELECT action, taken_at FROM obligation_actions WHERE obligation_id = ? ORDER BY rowid");
    Stmt& acts = *held_acts;
    if (!acts.ok()) return Error(read_db_, "reading actions");
    acts.Bind(1, id);
    while ((rc = acts.Step()) == SQLITE_ROW) out->actions.push_back({acts.Text(0), acts.Int(1)});
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading actions");
  }

  Status ReadFinding(const std::string& id, v1::Finding* out, bool* found) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    return ReadFindingFrom(read_db_, id, out, found);
  }

  // On the request path of every report: a small pool of connections with a
  // statement prepared once each, so lookups run side by side, parse no SQL
  // and never wait for audit queries.
  Status LookupReport(const std::string& service_id, const std::string& report_id,
                      ReportIndexRow* out, bool* found) override {
    if (filter_ && filter_->complete() && !filter_->MayContain(service_id, report_id)) {
      lookups_filtered_.fetch_add(1, std::memory_order_relaxed);
      *found = false;
      return Status::Ok();
    }
    lookups_read_.fetch_add(1, std::memory_order_relaxed);
    if (snapshot_) {
      // In the snapshot's transaction, not on a connection of the pool.
      std::lock_guard<std::mutex> lock(read_mu_);
      if (!snapshot_stmt_)
        snapshot_stmt_ = std::make_unique<Stmt>(
            read_db_,
            "SELECT digest, seq, recorded_at, ruleset_version FROM report_index WHERE "
            "service_id = ? AND report_id = ?");
      if (!snapshot_stmt_->ok()) {
        snapshot_stmt_.reset();
        return Error(read_db_, "looking up a report");
      }
      return LookupWith(*snapshot_stmt_, read_db_, service_id, report_id, out, found);
    }
    Lookup& l = lookups_[next_lookup_.fetch_add(1, std::memory_order_relaxed) % kLookups];
    std::lock_guard<std::mutex> lock(l.mu);
    if (!l.stmt) {
      l.stmt = std::make_unique<Stmt>(
          l.db,
          "SELECT digest, seq, recorded_at, ruleset_version FROM report_index WHERE "
          "service_id = ? AND report_id = ?");
      if (!l.stmt->ok()) {
        l.stmt.reset();
        return Error(l.db, "looking up a report");
      }
    }
    return LookupWith(*l.stmt, l.db, service_id, report_id, out, found);
  }

  Status LookupWith(Stmt& st, sqlite3* db, const std::string& service_id,
                    const std::string& report_id, ReportIndexRow* out, bool* found) {
    st.Bind(1, service_id).Bind(2, report_id);
    int rc = st.Step();
    *found = rc == SQLITE_ROW;
    if (*found) {
      out->service_id = service_id;
      out->report_id = report_id;
      out->digest = st.Text(0);
      out->seq = static_cast<uint64_t>(st.Int(1));
      out->recorded_at = st.Int(2);
      out->ruleset_version = st.Text(3);
    }
    st.Reset();
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::Ok() : Error(db, "looking up a report");
  }

  Status ReadEvents(uint64_t from_seq, size_t limit, std::vector<StoredEvent>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    auto held = Cached(
        "SELECT seq, type, time, payload, leaf_hash FROM events WHERE seq >= ? ORDER BY seq "
        "LIMIT ?");
    Stmt& st = *held;
    if (!st.ok()) return Error(read_db_, "reading events");
    st.Bind(1, static_cast<int64_t>(from_seq)).Bind(2, static_cast<int64_t>(limit));
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      StoredEvent e;
      e.seq = st.Int(0);
      e.type = static_cast<int>(st.Int(1));
      e.time = st.Int(2);
      e.payload = st.Blob(3);
      e.leaf_hash = st.Blob(4);
      out->push_back(std::move(e));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading events");
  }

  Status ReadCheckpoints(std::vector<v1::Checkpoint>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            has_note_ ? "SELECT tree_size, root_hash, time, signature, note FROM checkpoints ORDER "
                        "BY tree_size"
                      : "SELECT tree_size, root_hash, time, signature, NULL FROM checkpoints "
                        "ORDER BY tree_size");
    if (!st.ok()) return Error(read_db_, "reading checkpoints");
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      v1::Checkpoint c;
      c.set_tree_size(st.Int(0));
      c.set_root_hash(st.Blob(1));
      c.mutable_time()->set_seconds(st.Int(2));
      c.set_signature(st.Blob(3));
      c.set_note(st.Blob(4));
      out->push_back(std::move(c));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading checkpoints");
  }

  Status ReadCheckpoint(uint64_t tree_size, v1::Checkpoint* out, bool* found) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    std::string columns = has_note_ ? "tree_size, root_hash, time, signature, note"
                                    : "tree_size, root_hash, time, signature, NULL";
    Stmt st(read_db_, ("SELECT " + columns + " FROM checkpoints " +
                       (tree_size ? "WHERE tree_size = ?" : "ORDER BY tree_size DESC LIMIT 1"))
                          .c_str());
    if (!st.ok()) return Error(read_db_, "reading a checkpoint");
    if (tree_size) st.Bind(1, static_cast<int64_t>(tree_size));
    int rc = st.Step();
    *found = rc == SQLITE_ROW;
    if (*found) {
      out->set_tree_size(st.Int(0));
      out->set_root_hash(st.Blob(1));
      out->mutable_time()->set_seconds(st.Int(2));
      out->set_signature(st.Blob(3));
      out->set_note(st.Blob(4));
    }
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::Ok()
                                                 : Error(read_db_, "reading a checkpoint");
  }

  Status QueryBreaches(const BreachQuery& q,
                       std::vector<std::pair<uint64_t, v1::Breach>>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT seq, body FROM breaches WHERE seq > ?1 AND (?2 = '' OR service_id = ?2) AND "
            "(?3 = '' OR duty_id = ?3) AND (?4 = '' OR rule_id = ?4) AND at >= ?5 AND at <= ?6 "
            "ORDER BY seq LIMIT ?7");
    if (!st.ok()) return Error(read_db_, "querying breaches");
    st.Bind(1, static_cast<int64_t>(q.after_seq)).Bind(2, q.service_id).Bind(3, q.duty_id);
    st.Bind(4, q.rule_id).Bind(5, q.from).Bind(6, q.to).Bind(7, static_cast<int64_t>(q.limit));
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      v1::Breach b;
      if (!b.ParseFromString(st.Blob(1))) return Status::DataLoss("breach row does not parse");
      out->emplace_back(st.Int(0), std::move(b));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "querying breaches");
  }

  Status QueryFindings(const FindingQuery& q, std::vector<v1::Finding>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(
        read_db_,
        "SELECT body FROM findings WHERE finding_id > ?1 AND (?2 = '' OR service_id = ?2) AND "
        "(?3 = '' OR duty_id = ?3) AND (?4 = '' OR status = ?4) AND (?9 = 1 OR opened_at >= ?5) "
        "AND opened_at <= ?6 AND (?8 = '' OR finding_id = ?8) ORDER BY finding_id LIMIT ?7");
    if (!st.ok()) return Error(read_db_, "querying findings");
    st.Bind(1, q.after_id).Bind(2, q.service_id).Bind(3, q.duty_id).Bind(4, q.status);
    // With `overlap`, closed_at (in the body only) is checked here, so the
    // page ends when `limit` rows passed, not at the SQL LIMIT.
    st.Bind(5, q.from).Bind(6, q.to).Bind(8, q.finding_id).Bind(9, int64_t{q.overlap ? 1 : 0});
    st.Bind(7, q.overlap ? int64_t{-1} : static_cast<int64_t>(q.limit));
    size_t first = out->size();
    int rc;
    while (out->size() - first < q.limit && (rc = st.Step()) == SQLITE_ROW) {
      v1::Finding f;
      if (!f.ParseFromString(st.Blob(0))) return Status::DataLoss("finding row does not parse");
      if (q.overlap && f.status() != "open" && f.closed_at().seconds() < q.from) continue;
      out->push_back(std::move(f));
    }
    if (out->size() - first == q.limit) rc = SQLITE_DONE;
    if (rc != SQLITE_DONE) return Error(read_db_, "querying findings");
    if (!q.with_obligation_ids) return Status::Ok();
    // Reassemble the obligation id lists.
    Stmt ids(read_db_,
             "SELECT obligation_id, name, role FROM finding_obligations WHERE finding_id = ? ORDER "
             "BY rowid");
    if (!ids.ok()) return Error(read_db_, "querying findings");
    for (v1::Finding& f : *out) {
      ids.Bind(1, f.finding_id());
      while ((rc = ids.Step()) == SQLITE_ROW) {
        std::string name = ids.Text(1), role = ids.Text(2);
        if (name.empty() && role.empty()) {
          f.add_obligation_ids(ids.Text(0));
          continue;
        }
        for (auto& person : *f.mutable_accountable()) {
          if (person.name() == name && person.role() == role)
            person.add_obligation_ids(ids.Text(0));
        }
      }
      ids.Reset();
      if (rc != SQLITE_DONE) return Error(read_db_, "querying findings");
    }
    return Status::Ok();
  }

  Status QueryStats(const std::string& service_id, const std::string& from_day,
                    const std::string& to_day, std::vector<StatsRow>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT service_id, day, surface, reason, reports, flagged FROM stats WHERE "
            "(?1 = '' OR service_id = ?1) AND day >= ?2 AND day <= ?3 ORDER BY day");
    if (!st.ok()) return Error(read_db_, "querying stats");
    st.Bind(1, service_id).Bind(2, from_day).Bind(3, to_day);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      out->push_back({st.Text(0), st.Text(1), st.Text(2), st.Text(3), st.Int(4), st.Int(5)});
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "querying stats");
  }

  Status QueryObligationDays(const std::string& service_id, int64_t from, int64_t to,
                             std::vector<std::pair<std::string, int64_t>>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT strftime('%Y-%m-%d', received_at, 'unixepoch') AS day, COUNT(*) FROM "
            "obligations WHERE received_at >= ?2 AND received_at <= ?3 AND (?1 = '' OR "
            "service_id = ?1) GROUP BY day ORDER BY day");
    if (!st.ok()) return Error(read_db_, "counting obligations");
    st.Bind(1, service_id).Bind(2, from).Bind(3, to);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out->emplace_back(st.Text(0), st.Int(1));
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "counting obligations");
  }

  Status EventsForObligation(const std::string& obligation_id,
                             std::vector<uint64_t>* seqs) override {
    return Seqs("SELECT seq FROM obligation_events WHERE obligation_id = ? ORDER BY seq",
                obligation_id, seqs);
  }

  Status FindingEvents(const std::string& finding_id, std::vector<uint64_t>* seqs) override {
    return Seqs("SELECT seq FROM finding_events WHERE finding_id = ? ORDER BY seq", finding_id,
                seqs);
  }

  Status DenominatorEvents(const std::string& service_id, const std::string& duty_id, int64_t start,
                           int64_t end, uint64_t before_seq, std::vector<uint64_t>* seqs) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT opened_seq, decided_seq FROM obligations WHERE service_id = ? AND duty_id = ? "
            "AND deadline > ? AND deadline <= ? AND decided_seq > 0 AND decided_seq < ?");
    if (!st.ok()) return Error(read_db_, "querying obligations");
    st.Bind(1, service_id).Bind(2, duty_id).Bind(3, start).Bind(4, end);
    st.Bind(5, static_cast<int64_t>(before_seq));
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      seqs->push_back(st.Int(0));
      seqs->push_back(st.Int(1));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "querying obligations");
  }

  Status LookupSignals(const std::string& kind, const std::string& token, int64_t since,
                       std::vector<SignalRow>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Scoped st = Cached(
        "SELECT service_id, report_id, category, recorded_at FROM signal_tokens WHERE kind = ? "
        "AND token = ? AND recorded_at >= ?");
    (*st).Bind(1, kind).BindBlob(2, token).Bind(3, since);
    int rc;
    while ((rc = (*st).Step()) == SQLITE_ROW) {
      out->push_back({kind, token, (*st).Text(0), (*st).Text(1), (*st).Text(2), (*st).Int(3)});
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading signals");
  }

  Status SignalsOfReport(const std::string& service_id, const std::string& report_id,
                         std::vector<SignalRow>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Scoped st = Cached(
        "SELECT kind, token, category, recorded_at FROM signal_tokens WHERE service_id = ? AND "
        "report_id = ?");
    (*st).Bind(1, service_id).Bind(2, report_id);
    int rc;
    while ((rc = (*st).Step()) == SQLITE_ROW) {
      out->push_back(
          {(*st).Text(0), (*st).Blob(1), service_id, report_id, (*st).Text(2), (*st).Int(3)});
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading signals");
  }

  Status AlertsOfToken(const std::string& kind, const std::string& token,
                       std::vector<AlertTokenRow>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Scoped st = Cached(
        "SELECT alert_id, service_id, recorded_at FROM signal_alert_tokens WHERE kind = ? AND "
        "token = ?");
    (*st).Bind(1, kind).BindBlob(2, token);
    int rc;
    while ((rc = (*st).Step()) == SQLITE_ROW)
      out->push_back({(*st).Text(0), (*st).Text(1), kind, token, (*st).Int(2)});
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading alert tokens");
  }

  Status QueryAlerts(const AlertQuery& q, std::vector<AlertRecord>* out) override {
    std::string sql =
        "SELECT body, seq, status, feedback, delivered_at, reviewed_at, breached FROM "
        "signal_alerts WHERE seq > ? AND delivered_at >= ? AND delivered_at <= ?";
    if (!q.service_id.empty()) sql += " AND service_id = ?4";
    if (!q.alert_id.empty()) sql += " AND alert_id = ?5";
    if (!q.status.empty()) sql += " AND status = ?6";
    sql += " ORDER BY seq LIMIT ?7";
    std::lock_guard<std::mutex> lock(read_mu_);
    Scoped st = Cached(sql);
    (*st).Bind(1, static_cast<int64_t>(q.after_seq)).Bind(2, q.delivered_from);
    (*st).Bind(3, q.delivered_to);
    if (!q.service_id.empty()) (*st).Bind(4, q.service_id);
    if (!q.alert_id.empty()) (*st).Bind(5, q.alert_id);
    if (!q.status.empty()) (*st).Bind(6, q.status);
    (*st).Bind(7, static_cast<int64_t>(q.limit));
    int rc;
    while ((rc = (*st).Step()) == SQLITE_ROW) {
      AlertRecord r;
      if (!r.alert.ParseFromString((*st).Blob(0)))
        return Status::DataLoss("an alert row does not parse");
      r.alert.set_cursor(static_cast<uint64_t>((*st).Int(1)));
      r.alert.set_status((*st).Text(2));
      r.alert.set_feedback((*st).Text(3));
      r.delivered_at = (*st).Int(4);
      r.reviewed_at = (*st).Int(5);
      r.breached = (*st).Int(6) != 0;
      out->push_back(std::move(r));
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading alerts");
  }

  Status ReadSignalQuota(const std::string& service_id, const std::string& day,
                         int64_t* used) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Scoped st = Cached("SELECT elements FROM signal_quota WHERE service_id = ? AND day = ?");
    (*st).Bind(1, service_id).Bind(2, day);
    int rc = (*st).Step();
    *used = rc == SQLITE_ROW ? (*st).Int(0) : 0;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading quota");
  }

  Status ReadStatsPending(std::vector<StatsRow>* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_,
            "SELECT service_id, day, surface, reason, reports, flagged FROM stats_pending");
    if (!st.ok()) return Error(read_db_, "reading pending counts");
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      out->push_back({st.Text(0), st.Text(1), st.Text(2), st.Text(3), st.Int(4), st.Int(5)});
    }
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "reading pending counts");
  }

  Status EventsOfType(int type, uint64_t before_seq, std::vector<uint64_t>* seqs) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_, "SELECT seq FROM key_events WHERE type = ? AND seq < ? ORDER BY seq");
    if (!st.ok()) return Error(read_db_, "querying events");
    st.Bind(1, static_cast<int64_t>(type)).Bind(2, static_cast<int64_t>(before_seq));
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) seqs->push_back(st.Int(0));
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "querying events");
  }

  Status ReadCarried(CarriedRows* out) override {
    std::lock_guard<std::mutex> lock(read_mu_);
    // One read transaction: the rows agree with each other.
    Status s = snapshot_ ? Status::Ok() : Exec(read_db_, "BEGIN");
    if (!s.ok()) return s;
    s = [&]() -> Status {
      int rc;
      {
        Stmt st(read_db_, "SELECT key, value FROM meta WHERE key != 'schema_version'");
        while ((rc = st.Step()) == SQLITE_ROW) out->meta.emplace_back(st.Text(0), st.Blob(1));
        if (rc != SQLITE_DONE) return Error(read_db_, "reading meta");
      }
      {
        Stmt st(read_db_,
                "SELECT service_id, report_id, digest, seq, recorded_at, ruleset_version FROM "
                "report_index WHERE seq = 0");
        while ((rc = st.Step()) == SQLITE_ROW) {
          out->unflagged.push_back({st.Text(0), st.Text(1), st.Text(2),
                                    static_cast<uint64_t>(st.Int(3)), st.Int(4), st.Text(5)});
        }
        if (rc != SQLITE_DONE) return Error(read_db_, "reading the report index");
      }
      for (auto [table, rows] :
           {std::pair{"stats", &out->stats}, std::pair{"stats_pending", &out->stats_pending}}) {
        Stmt st(read_db_, (std::string("SELECT service_id, day, surface, reason, reports, "
                                       "flagged FROM ") +
                           table)
                              .c_str());
        while ((rc = st.Step()) == SQLITE_ROW) {
          rows->push_back({st.Text(0), st.Text(1), st.Text(2), st.Text(3), st.Int(4), st.Int(5)});
        }
        if (rc != SQLITE_DONE) return Error(read_db_, "reading statistics");
      }
      // A ledger of an earlier carewatch, opened read-only, may predate
      // signals: it has none to carry.
      bool has_signals = false;
      {
        Stmt st(read_db_,
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'signal_tokens'");
        has_signals = st.ok() && st.Step() == SQLITE_ROW;
      }
      if (!has_signals) return Status::Ok();
      {
        Stmt st(read_db_,
                "SELECT kind, token, service_id, report_id, category, recorded_at FROM "
                "signal_tokens");
        while ((rc = st.Step()) == SQLITE_ROW) {
          out->signals.push_back(
              {st.Text(0), st.Blob(1), st.Text(2), st.Text(3), st.Text(4), st.Int(5)});
        }
        if (rc != SQLITE_DONE) return Error(read_db_, "reading signals");
      }
      {
        Stmt st(read_db_,
                "SELECT alert_id, service_id, kind, token, recorded_at FROM signal_alert_tokens");
        while ((rc = st.Step()) == SQLITE_ROW) {
          out->alert_tokens.push_back({st.Text(0), st.Text(1), st.Text(2), st.Blob(3), st.Int(4)});
        }
        if (rc != SQLITE_DONE) return Error(read_db_, "reading alert tokens");
      }
      return Status::Ok();
    }();
    if (!snapshot_) (void)Exec(read_db_, "COMMIT");
    return s;
  }

 private:
  static Status Error(sqlite3* db, const std::string& what) {
    return Status::Unavailable(what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
  }

  static Status Exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string message = err ? err : sqlite3_errmsg(db);
      sqlite3_free(err);
      return Status::Unavailable(message);
    }
    return Status::Ok();
  }

  Status Seqs(const char* sql, const std::string& key, std::vector<uint64_t>* seqs) {
    std::lock_guard<std::mutex> lock(read_mu_);
    Stmt st(read_db_, sql);
    if (!st.ok()) return Error(read_db_, "querying");
    st.Bind(1, key);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) seqs->push_back(st.Int(0));
    return rc == SQLITE_DONE ? Status::Ok() : Error(read_db_, "querying");
  }

  // A read statement prepared once (read_db_, under read_mu_) and reset when
  // the scope ends, so no read transaction outlives its call.
  class Scoped {
   public:
    explicit Scoped(Stmt* st) : st_(st) {}
    ~Scoped() { st_->Reset(); }
    Scoped(const Scoped&) = delete;
    Scoped& operator=(const Scoped&) = delete;
    Stmt& operator*() { return *st_; }

   private:
    Stmt* st_;
  };
  Scoped Cached(const std::string& sql) {
    std::unique_ptr<Stmt>& slot = read_cache_[sql];
    if (!slot || !slot->ok()) slot = std::make_unique<Stmt>(read_db_, sql.c_str());
    return Scoped(slot.get());
  }

  static Status ReadFindingFrom(sqlite3* db, const std::string& id, v1::Finding* out, bool* found) {
    Stmt get(db, "SELECT body FROM findings WHERE finding_id = ?");
    if (!get.ok()) return Error(db, "reading a finding");
    get.Bind(1, id);
    int rc = get.Step();
    *found = rc == SQLITE_ROW;
    if (*found && !out->ParseFromString(get.Blob(0)))
      return Status::DataLoss("finding row " + id + " does not parse");
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::Ok() : Error(db, "reading a finding");
  }

  // Statements of the writer, prepared once.
  struct WriteStatements {
    explicit WriteStatements(sqlite3* db)
        : ins(db,
              "INSERT INTO events (seq, type, time, payload, leaf_hash) VALUES (?, ?, ?, ?, ?)"),
          node(db, "INSERT OR REPLACE INTO tree_nodes (pos, level, hash) VALUES (?, ?, ?)"),
          breach(
              db,
              "INSERT INTO breaches (seq, obligation_id, report_id, service_id, duty_id, rule_id, "
              "deadline, at, kind, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
          finding(db,
                  "INSERT OR REPLACE INTO findings (finding_id, service_id, duty_id, status, "
                  "opened_at, last_seq, body) VALUES (?, ?, ?, ?, ?, ?, ?)"),
          member(db,
                 "INSERT INTO finding_obligations (finding_id, obligation_id, name, role) VALUES "
                 "(?, ?, ?, ?)"),
          finding_ev(db, "INSERT OR IGNORE INTO finding_events (finding_id, seq) VALUES (?, ?)"),
          ob_ev(db, "INSERT OR IGNORE INTO obligation_events (obligation_id, seq) VALUES (?, ?)"),
          report(db,
                 "INSERT INTO report_index (service_id, report_id, digest, seq, recorded_at, "
                 "ruleset_version) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
          expiry(db,
                 "INSERT INTO report_index_expiry (recorded_at, service_id, report_id) VALUES "
                 "(?, ?, ?)"),
          ob_open(db,
                  "INSERT OR IGNORE INTO obligations (obligation_id, service_id, report_id, "
                  "duty_id, rule_id, deadline, received_at, record_grace, sweep_at, opened_seq, "
                  "decided_seq, status, breach_at, breach_kind, finding_id, body) VALUES (?, ?, "
                  "?, ?, ?, ?, ?, ?, ?, ?, 0, 1, 0, '', '', ?)"),
          ob_action(db,
                    "INSERT INTO obligation_actions (obligation_id, action, taken_at) VALUES (?, "
                    "?, ?)"),
          ob_hour(db, (std::string("INSERT INTO window_hours (hour, service_id, duty_id, decided) "
                                   "SELECT ") +
                       LedgerBackend::kWindowHourSql +
                       ", service_id, duty_id, 1 FROM obligations WHERE obligation_id = ? AND "
                       "decided_seq = 0 ON CONFLICT (hour, service_id, duty_id) DO UPDATE SET "
                       "decided = decided + 1")
                          .c_str()),
          ob_decide(db,
                    "UPDATE obligations SET decided_seq = ?, status = ?, breach_at = ?, "
                    "breach_kind = ? WHERE obligation_id = ? AND decided_seq = 0"),
          ob_finding(db, "UPDATE obligations SET finding_id = ? WHERE obligation_id = ?"),
          key_event(db, "INSERT OR IGNORE INTO key_events (type, seq) VALUES (?, ?)"),
          counter(db,
                  "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                  "SET value = value + excluded.value"),
          clock(db,
                "INSERT INTO counters (name, value) VALUES ('clock', ?) ON CONFLICT (name) DO "
                "UPDATE SET value = max(value, excluded.value)") {}
    std::vector<Stmt*> all() {
      return {&ins,       &node,       &breach,    &finding, &member,    &finding_ev,
              &ob_ev,     &report,     &expiry,    &ob_open, &ob_action, &ob_hour,
              &ob_decide, &ob_finding, &key_event, &counter, &clock};
    }
    bool ok() {
      for (Stmt* st : all())
        if (!st->ok()) return false;
      return true;
    }
    Stmt ins, node, breach, finding, member, finding_ev, ob_ev, report, expiry, ob_open, ob_action,
        ob_hour, ob_decide, ob_finding, key_event, counter, clock;
  };

  Status PrepareWrites() {
    if (!write_statements_) write_statements_ = std::make_unique<WriteStatements>(write_db_);
    if (!write_statements_->ok()) {
      write_statements_.reset();
      return Error(write_db_, "preparing ledger writes");
    }
    // Any statement left mid-way by a failed batch starts clean.
    for (Stmt* st : write_statements_->all()) st->Reset();
    for (auto& [sql, st] : write_cache_) st->Reset();
    return Status::Ok();
  }

  // Any other statement of the writer (write_db_, writer thread only),
  // prepared on first use and kept: parsing it again for every commit cost
  // about a sixth of the writer's time under load.
  Stmt& Writer(const std::string& sql) {
    std::unique_ptr<Stmt>& slot = write_cache_[sql];
    if (!slot || !slot->ok()) slot = std::make_unique<Stmt>(write_db_, sql.c_str());
    return *slot;
  }
  // Runs a statement without results (BEGIN, COMMIT) and resets it.
  Status Step(Stmt& st) {
    if (!st.ok()) return Error(write_db_, "preparing a ledger write");
    const int rc = st.Step();
    if (rc == SQLITE_DONE) {
      st.Reset();
      return Status::Ok();
    }
    Status s = Error(write_db_, "writing the ledger");
    st.Reset();
    return s;
  }

  static bool Done(Stmt& st) {
    int rc = st.Step();
    st.Reset();
    return rc == SQLITE_DONE;
  }

  Status InsertNodes(const std::vector<TreeNode>& nodes) {
    Status s = PrepareWrites();
    if (!s.ok()) return s;
    Stmt& st = write_statements_->node;
    for (const TreeNode& n : nodes) {
      st.Bind(1, static_cast<int64_t>((n.index + 1) << n.level))
          .Bind(2, static_cast<int64_t>(n.level));
      st.BindBlob(3, n.hash);
      if (!Done(st)) return Error(write_db_, "storing the tree");
    }
    return Status::Ok();
  }

  bool IndexReport(const std::string& service_id, const std::string& report_id,
                   const std::string& digest, uint64_t seq, int64_t recorded_at,
                   const std::string& ruleset_version) {
    // Before the row is committed, so before any lookup could need it.
    if (filter_) filter_->Add(service_id, report_id);
    Stmt& st = write_statements_->report;
    st.Bind(1, service_id).Bind(2, report_id).Bind(3, digest);
    st.Bind(4, static_cast<int64_t>(seq)).Bind(5, recorded_at).Bind(6, ruleset_version);
    if (!Done(st)) return false;
    if (seq != 0 || sqlite3_changes(write_db_) != 1) return true;
    // A report that matched nothing, kept for retention: listed in the
    // order indexed, so that one commit's rows share a page.
    Stmt& expiry = write_statements_->expiry;
    expiry.Bind(1, recorded_at).Bind(2, service_id).Bind(3, report_id);
    return Done(expiry);
  }

  // Stores what Derive computed. REQUIRES: a write transaction is open.
  Status WriteDerived(const DerivedBatch& d) {
    Status s = PrepareWrites();
    if (!s.ok()) return s;
    WriteStatements& w = *write_statements_;
    auto fail = [&](const char* what) { return Error(write_db_, what); };
    for (const ObligationRow& o : d.opened) {
      w.ob_open.Bind(1, o.obligation_id).Bind(2, o.service_id).Bind(3, o.report_id);
      w.ob_open.Bind(4, o.duty_id).Bind(5, o.rule_id).Bind(6, o.deadline).Bind(7, o.received_at);
      w.ob_open.Bind(8, o.record_grace)
          .Bind(9, o.sweep_at)
          .Bind(10, static_cast<int64_t>(o.opened_seq));
      w.ob_open.BindBlob(11, o.body);
      if (!Done(w.ob_open)) return fail("storing an obligation");
    }
    for (const DerivedBatch::Action& a : d.actions) {
      w.ob_action.Bind(1, a.obligation_id).Bind(2, a.action.action).Bind(3, a.action.taken_at);
      if (!Done(w.ob_action)) return fail("storing an action");
    }
    for (const DerivedBatch::Decision& x : d.decided) {
      // Counted in its window's hour first, while it still reads undecided
      // (a second decision of it changes neither).
      w.ob_hour.Bind(1, x.obligation_id);
      if (!Done(w.ob_hour)) return fail("counting a decision in its hour");
      w.ob_decide.Bind(1, static_cast<int64_t>(x.seq)).Bind(2, static_cast<int64_t>(x.status));
      w.ob_decide.Bind(3, x.breach_at).Bind(4, x.breach_kind).Bind(5, x.obligation_id);
      if (!Done(w.ob_decide)) return fail("deciding an obligation");
    }
    for (const auto& [ob, finding] : d.in_finding) {
      w.ob_finding.Bind(1, finding).Bind(2, ob);
      if (!Done(w.ob_finding)) return fail("linking a finding");
    }
    for (const auto& [seq, b] : d.breaches) {
      w.breach.Bind(1, static_cast<int64_t>(seq)).Bind(2, b.obligation_id()).Bind(3, b.report_id());
      w.breach.Bind(4, b.service_id()).Bind(5, b.duty_id()).Bind(6, b.rule_id());
      w.breach.Bind(7, b.deadline().seconds()).Bind(8, b.at().seconds()).Bind(9, b.kind());
      w.breach.BindBlobCopy(10, b.SerializeAsString());
      if (!Done(w.breach)) return fail("storing a breach");
    }
    for (const DerivedBatch::FindingRow& r : d.findings) {
      const v1::Finding& f = r.finding;
      w.finding.Bind(1, f.finding_id()).Bind(2, f.service_id()).Bind(3, f.duty_id());
      w.finding.Bind(4, f.status()).Bind(5, f.opened_at().seconds());
      w.finding.Bind(6, static_cast<int64_t>(r.seq)).BindBlobCopy(7, f.SerializeAsString());
      if (!Done(w.finding)) return fail("storing a finding");
    }
    for (const DerivedBatch::FindingMember& m : d.finding_members) {
      w.member.Bind(1, m.finding_id).Bind(2, m.obligation_id).Bind(3, m.name).Bind(4, m.role);
      if (!Done(w.member)) return fail("storing a finding's obligations");
    }
    for (const auto& [id, seq] : d.obligation_events) {
      w.ob_ev.Bind(1, id).Bind(2, static_cast<int64_t>(seq));
      if (!Done(w.ob_ev)) return fail("indexing an obligation's events");
    }
    for (const auto& [id, seq] : d.finding_events) {
      w.finding_ev.Bind(1, id).Bind(2, static_cast<int64_t>(seq));
      if (!Done(w.finding_ev)) return fail("indexing a finding's events");
    }
    for (const auto& [type, seq] : d.key_events) {
      w.key_event.Bind(1, static_cast<int64_t>(type)).Bind(2, static_cast<int64_t>(seq));
      if (!Done(w.key_event)) return fail("indexing an event");
    }
    for (const DerivedBatch::Flagged& f : d.flagged) {
      if (!IndexReport(f.service_id, f.report_id, f.digest, f.seq, f.recorded_at,
                       f.ruleset_version))
        return fail("indexing a report");
    }
    if (!d.rolled_up.empty()) {
      // What a rollup put into the log is no longer pending.
      Stmt& sub = Writer(
          "UPDATE stats_pending SET reports = reports - ?, flagged = flagged - ? WHERE "
          "service_id = ? AND day = ? AND surface = ? AND reason = ?");
      for (const auto& [service, day, surface, reason, reports, flagged] : d.rolled_up) {
        sub.Bind(1, reports).Bind(2, flagged).Bind(3, service).Bind(4, day);
        sub.Bind(5, surface).Bind(6, reason);
        if (!Done(sub)) return fail("rolling up counts");
      }
      Stmt& clean = Writer("DELETE FROM stats_pending WHERE reports = 0 AND flagged = 0");
      if (!Done(clean)) return fail("rolling up counts");
    }
    if (!d.alert_changes.empty()) {
      Stmt& deliver = Writer(
          "INSERT INTO signal_alerts (alert_id, service_id, seq, status, feedback, "
          "delivered_at, reviewed_at, breached, body) VALUES (?, ?, ?, ?, '', ?, 0, 0, ?) "
          "ON CONFLICT (alert_id) DO UPDATE SET seq = excluded.seq, status = "
          "excluded.status, body = excluded.body");
      Stmt& change = Writer(
          "UPDATE signal_alerts SET seq = CASE WHEN ?1 > 0 THEN ?1 ELSE seq END, "
          "status = CASE WHEN ?2 != '' THEN ?2 ELSE status END, "
          "feedback = CASE WHEN ?3 != '' THEN ?3 ELSE feedback END, "
          "reviewed_at = CASE WHEN ?4 > 0 AND (reviewed_at = 0 OR ?4 < reviewed_at) "
          "THEN ?4 ELSE reviewed_at END, breached = max(breached, ?5) WHERE alert_id = ?6");
      for (const DerivedBatch::AlertChange& c : d.alert_changes) {
        if (c.delivered) {
          deliver.Bind(1, c.alert_id).Bind(2, c.alert.service_id());
          deliver.Bind(3, static_cast<int64_t>(c.seq)).Bind(4, c.alert.status());
          deliver.Bind(5, c.delivered_at).BindBlobCopy(6, c.alert.SerializeAsString());
          if (!Done(deliver)) return fail("storing an alert");
        } else {
          change.Bind(1, static_cast<int64_t>(c.seq)).Bind(2, c.status).Bind(3, c.feedback);
          change.Bind(4, c.reviewed_at).Bind(5, static_cast<int64_t>(c.breached ? 1 : 0));
          change.Bind(6, c.alert_id);
          if (!Done(change)) return fail("updating an alert");
        }
      }
    }
    for (const auto& [service, day, n] : d.signal_quota) {
      Stmt& q = Writer(
          "INSERT INTO signal_quota (service_id, day, elements) VALUES (?, ?, ?) ON CONFLICT "
          "(service_id, day) DO UPDATE SET elements = elements + excluded.elements");
      q.Bind(1, service).Bind(2, day).Bind(3, n);
      if (!Done(q)) return fail("counting signal evaluations");
    }
    for (const auto& [name, delta] : d.counter_deltas) {
      if (delta == 0) continue;
      w.counter.Bind(1, name).Bind(2, delta);
      if (!Done(w.counter)) return fail("counting");
    }
    if (d.clock != INT64_MIN) {
      w.clock.Bind(1, d.clock);
      if (!Done(w.clock)) return fail("recording the clock");
    }
    return Status::Ok();
  }

  Status WriteRows(const WriteSet& w) {
    Status s = PrepareWrites();
    if (!s.ok()) return s;
    Stmt& ins = write_statements_->ins;
    for (const StoredEvent& e : w.events) {
      ins.Bind(1, static_cast<int64_t>(e.seq)).Bind(2, e.type).Bind(3, e.time);
      ins.BindBlob(4, e.payload).BindBlob(5, e.leaf_hash);
      if (!Done(ins)) return Error(write_db_, "appending event " + std::to_string(e.seq));
    }
    s = InsertNodes(w.nodes);
    if (s.ok()) s = WriteDerived(w.derived);
    if (!s.ok()) return s;
    if (w.checkpoint) {
      const v1::Checkpoint* checkpoint = w.checkpoint;
      Stmt& cp = Writer(
          "INSERT INTO checkpoints (tree_size, root_hash, time, signature, note) VALUES (?, ?, ?, "
          "?, ?)");
      cp.Bind(1, static_cast<int64_t>(checkpoint->tree_size()))
          .BindBlob(2, checkpoint->root_hash());
      cp.Bind(3, checkpoint->time().seconds()).BindBlob(4, checkpoint->signature());
      cp.BindBlob(5, checkpoint->note());
      if (!Done(cp)) return Error(write_db_, "writing checkpoint");
    }
    for (const ReportIndexRow& r : w.extras.reports) {
      if (!IndexReport(r.service_id, r.report_id, r.digest, r.seq, r.recorded_at,
                       r.ruleset_version))
        return Error(write_db_, "indexing report " + r.report_id);
    }
    for (const char* table : {"stats", "stats_pending"}) {
      if (w.extras.stats.empty()) break;
      Stmt& st =
          Writer((std::string("INSERT INTO ") + table +
                  " (service_id, day, surface, reason, reports, flagged) VALUES (?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (service_id, day, surface, reason) DO UPDATE SET "
                  "reports = reports + excluded.reports, flagged = flagged + excluded.flagged")
                     .c_str());
      for (const StatsRow& r : w.extras.stats) {
        st.Bind(1, r.service_id).Bind(2, r.day).Bind(3, r.surface).Bind(4, r.reason);
        st.Bind(5, r.reports).Bind(6, r.flagged);
        if (!Done(st)) return Error(write_db_, "writing stats");
      }
    }
    if (!w.extras.signals.empty()) {
      Stmt& st = Writer(
          "INSERT OR IGNORE INTO signal_tokens (kind, token, service_id, report_id, category, "
          "recorded_at) VALUES (?, ?, ?, ?, ?, ?)");
      for (const SignalRow& r : w.extras.signals) {
        st.Bind(1, r.kind).BindBlob(2, r.token).Bind(3, r.service_id).Bind(4, r.report_id);
        st.Bind(5, r.category).Bind(6, r.recorded_at);
        if (!Done(st)) return Error(write_db_, "storing signals");
      }
    }
    if (!w.extras.alert_tokens.empty()) {
      Stmt& st = Writer(
          "INSERT OR IGNORE INTO signal_alert_tokens (alert_id, service_id, kind, token, "
          "recorded_at) VALUES (?, ?, ?, ?, ?)");
      for (const AlertTokenRow& r : w.extras.alert_tokens) {
        st.Bind(1, r.alert_id).Bind(2, r.service_id).Bind(3, r.kind).BindBlob(4, r.token);
        st.Bind(5, r.recorded_at);
        if (!Done(st)) return Error(write_db_, "storing alert tokens");
      }
    }
    for (const auto& [key, value] : w.extras.meta) {
      Stmt& st = Writer("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
      st.Bind(1, key).BindBlob(2, value);
      if (!Done(st)) return Error(write_db_, "writing meta");
    }
    for (const auto& [service, report] : w.extras.withdraw_signals) {
      Stmt& st = Writer("DELETE FROM signal_tokens WHERE service_id = ? AND report_id = ?");
      st.Bind(1, service).Bind(2, report);
      if (!Done(st)) return Error(write_db_, "withdrawing signals");
    }
    if (w.extras.prune_signals_before) {
      for (const char* sql : {"DELETE FROM signal_tokens WHERE recorded_at < ?",
                              "DELETE FROM signal_alert_tokens WHERE recorded_at < ?"}) {
        Stmt& st = Writer(sql);
        st.Bind(1, w.extras.prune_signals_before);
        if (!Done(st)) return Error(write_db_, "pruning signals");
      }
    }
    if (w.extras.prune_unflagged_before) {
      // The oldest rows, in the order indexed, up to the first one still
      // within retention (a clock that went back only delays the rest).
      Stmt& head = Writer(
          "SELECT n, recorded_at, service_id, report_id FROM report_index_expiry ORDER BY n "
          "LIMIT ?");
      head.Bind(1, static_cast<int64_t>(w.extras.prune_limit));
      std::vector<std::pair<std::string, std::string>> expired;
      int64_t last = 0;
      int rc;
      while ((rc = head.Step()) == SQLITE_ROW && head.Int(1) < w.extras.prune_unflagged_before) {
        last = head.Int(0);
        expired.emplace_back(head.Text(2), head.Text(3));
      }
      head.Reset();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return Error(write_db_, "pruning the report index");
      Stmt& prune =
          Writer("DELETE FROM report_index WHERE service_id = ? AND report_id = ? AND seq = 0");
      for (const auto& [service, report] : expired) {
        prune.Bind(1, service).Bind(2, report);
        if (!Done(prune)) return Error(write_db_, "pruning the report index");
      }
      Stmt& done = Writer("DELETE FROM report_index_expiry WHERE n <= ?");
      done.Bind(1, last);
      if (!expired.empty() && !Done(done)) return Error(write_db_, "pruning the report index");
      if (w.pruned) *w.pruned = expired.size();
    }
    return Status::Ok();
  }

  std::string url_, path_;
  std::unique_ptr<WriteStatements> write_statements_;
  std::unordered_map<std::string, std::unique_ptr<Stmt>> write_cache_;  // writer thread
  std::unique_ptr<Stmt> node_stmt_, leaf_stmt_;                         // read_db_, under read_mu_
  std::map<std::string, std::unique_ptr<Stmt>> read_cache_;             // read_db_, under read_mu_
  sqlite3* write_db_ = nullptr;  // the opening thread, then the writer thread alone
  sqlite3* read_db_ = nullptr;
  std::mutex read_mu_;
  sqlite3* checkpoint_db_ = nullptr;
  std::thread checkpointer_;
  int lock_fd_ = -1;  // PATH.lock, flock'ed while open for writing
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool stop_checkpoints_ = false;
  bool has_note_ = false;
  bool nodes_by_pos_ = true;
  struct Lookup {
    sqlite3* db = nullptr;
    std::mutex mu;
    std::unique_ptr<Stmt> stmt;
  };
  static constexpr size_t kLookups = 4;
  static constexpr int kRestartFrames = 16384;  // 64 MiB of 4 KiB pages
  static constexpr int kRestartWaitMs = 5;      // for readers, at a WAL restart
  int wal_frames_ = 0;                          // after the last commit (writer thread)
  // After a restart was put off: the WAL size or time to try again at.
  int restart_at_frames_ = kRestartFrames;
  std::chrono::steady_clock::time_point restart_retry_at_{};
  int busy_timeout_ms_ = 10000;
  bool read_only_ = false;
  // A read snapshot is open on read_db_ (read-only backends; under read_mu_).
  std::atomic<bool> snapshot_{false};
  int snapshot_depth_ = 0;               // BeginSnapshot calls not yet ended
  std::unique_ptr<Stmt> snapshot_stmt_;  // LookupReport in the snapshot
  std::atomic<uint64_t> wal_restarts_deferred_{0};
  std::array<Lookup, kLookups> lookups_;
  std::unique_ptr<ReportFilter> filter_;  // writable backends only
  bool filter_restored_ = false;          // left by the last clean stop
  std::thread filter_scan_;
  static constexpr int64_t kScanChunk = 10000;  // rows per read transaction of the scan
  std::atomic<bool> stop_scan_{false};
  std::atomic<uint64_t> lookups_filtered_{0}, lookups_read_{0};
  std::atomic<size_t> next_lookup_{0};
};

}  // namespace

Status OpenSqliteBackend(const std::string& url, const std::string& path, bool read_only,
                         int busy_timeout_ms, std::unique_ptr<LedgerBackend>* out) {
  if (path.empty()) return Status::InvalidArgument("ledger URL names no file");
  auto backend = std::make_unique<SqliteBackend>();
  Status s = backend->Open(url, path, read_only, busy_timeout_ms);
  if (!s.ok()) return s;
  *out = std::move(backend);
  return Status::Ok();
}

}  // namespace carewatch::ledger
