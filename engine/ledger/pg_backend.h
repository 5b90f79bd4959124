#ifndef CAREWATCH_ENGINE_LEDGER_PG_BACKEND_H_
#define CAREWATCH_ENGINE_LEDGER_PG_BACKEND_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/ledger/ledger.h"

namespace carewatch::ledger {

// Holds a PostgreSQL ledger's writer lock until destroyed.
class WriterLock {
 public:
  virtual ~WriterLock() = default;
};
// Takes the writer lock of the ledger at `url` if it is free, without
// waiting: FailedPrecondition (IsLedgerInUse) while a writer holds it. How
// a queueing replica learns that the writer is gone.
Status TryWriterLock(const std::string& url, std::unique_ptr<WriterLock>* out);

// The shared ledger backend (LedgerBackend's contract) on PostgreSQL 15
// through libpq: the same tables and rows as SQLite (docs/storage.md), in a
// database the URL names ("postgresql://user@host:port/db?sslmode=...").
//
// - Schema: created on first open and carried forward by numbered
//   migrations (table schema_migrations), one transaction each, under a
//   transaction-level advisory lock so concurrent starts apply each once.
// - One writer per ledger: the writer connection holds a session-level
//   advisory lock for as long as it is open; a second carewatchd on the same
//   database is refused with a precise message, and takes over only after
//   the first is gone (its connection closed or the server restarted).
// - Durability: a WriteSet is one transaction committed with
//   synchronous_commit=on. A connection lost mid-write is reconnected on the
//   next call (Unavailable meanwhile, which the ledger retries); a commit
//   whose answer was lost is recognised by its first event, so a retried
//   WriteSet is never written twice.
// - Reads come from a pool of four connections; a read that spans tables
//   (open obligations with their actions) runs in one REPEATABLE READ
//   snapshot, and a restart's reads go through a cursor, a chunk of rows
//   at a time.
//
// `read_only` opens an existing ledger without creating, migrating, locking
// or changing it (`carewatch verify`, audit commands). `busy_timeout_ms`:
// how long a statement waits for a lock another session holds (lock_timeout)
// before it fails as Unavailable, which the ledger retries.
// `writer_lock` (may be null): a lock TryWriterLock took, whose connection
// becomes the writer connection.
Status OpenPostgresBackend(const std::string& url, bool read_only, int busy_timeout_ms,
                           std::unique_ptr<LedgerBackend>* out,
                           std::shared_ptr<WriterLock> writer_lock = nullptr);

// Rows a streamed read (a restart's open obligations and window rows)
// fetches from its cursor at once: 4096 unless set. Tests set a few, so
// that their reads cross many chunk boundaries.
void SetPostgresReadChunk(int rows);

// The unsequenced queue of a PostgreSQL ledger shared by replicas
// (docs/operations.md "Replicas"). A replica that is not the writer stores
// the commands it accepts here durably (Push, then it waits for the
// answer); the writer takes them in queue order (Pull), sequences them into
// the log, removing each from the queue in the transaction that records it
// (BatchExtras::dequeue), and stores its answer (Answer).
struct QueuedRow {
  int64_t id = 0;
  std::string body;  // a serialised v1::QueuedCommand
};
struct QueueAnswer {
  int64_t id = 0;
  std::string body;  // a serialised v1::QueuedResult
};
class CommandQueue {
 public:
  virtual ~CommandQueue() = default;
  // Stores a command durably; `id` receives its queue id. A report
  // (`report_id` not empty) already queued and not yet sequenced is not
  // stored again: `id` and `queued_digest` receive the queued one's.
  virtual Status Push(const std::string& service_id, const std::string& report_id,
                      const std::string& digest, const std::string& body, int64_t accepted_at,
                      int64_t* id, std::string* queued_digest) = 0;
  // Push without waiting: `done` is called once with what Push returns and
  // fills, from the thread that committed it (it must not block). Pushes
  // of both kinds share group commits.
  using PushDone =
      std::function<void(const Status& s, int64_t id, const std::string& queued_digest)>;
  virtual void PushAsync(const std::string& service_id, const std::string& report_id,
                         const std::string& digest, const std::string& body, int64_t accepted_at,
                         PushDone done) = 0;
  // Commits what PushAsync queued (its callbacks called) and takes no more:
  // a later PushAsync is answered Unavailable at once.
  virtual void StopPushes() = 0;
  // The answers stored for any of `ids`.
  virtual Status Answers(const std::vector<int64_t>& ids, std::vector<QueueAnswer>* out) = 0;
  // Those of `ids` still queued.
  virtual Status Queued(const std::vector<int64_t>& ids, std::vector<int64_t>* out) = 0;
  // The writer: up to `limit` of the oldest queued commands.
  virtual Status Pull(size_t limit, std::vector<QueuedRow>* out) = 0;
  // The writer: stores answers and removes their commands from the queue,
  // in one transaction; deletes answers stored before `prune_before`
  // (0: none). Idempotent.
  virtual Status Answer(const std::vector<QueueAnswer>& answers, int64_t now,
                        int64_t prune_before) = 0;
  // Commands queued and not yet sequenced.
  virtual Status Depth(int64_t* n) = 0;

  // What a wait is for: commands pushed (the writer's sequencer waits for
  // these) or answers stored (queueing replicas wait for these).
  enum class Event { kQueued, kAnswered };
  // Whether this process waits for `event`'s announcements. Once
  // SetWaiting(event, true) has returned, every Push (kQueued) or Answer
  // (kAnswered) that commits is announced to it (PostgreSQL's NOTIFY), and
  // every one that committed before without being announced is visible to
  // its next read of the table: read the table once more, then WaitFor.
  // While no one waits, nothing is announced (a busy reader reads anyway),
  // which spares the database a NOTIFY per transaction under load. One
  // thread per event, the writer's sequencer alone for kQueued.
  virtual Status SetWaiting(Event event, bool waiting) = 0;
  // Waits at most `timeout_ms` for an announcement of `event` since the
  // previous wait returned; `*happened` says whether one came (all that
  // came are taken). The wait also ends when `wake_fd` (if not -1) becomes
  // readable, which the caller then drains. With timeout 0 it only takes
  // what came. A lost connection is an error: the waiter no longer waits
  // (SetWaiting again) and polls meanwhile.
  virtual Status WaitFor(Event event, int timeout_ms, int wake_fd, bool* happened) = 0;
};

// Opens the queue of the ledger at `url` (written by a carewatchd that
// knows queues: FailedPrecondition otherwise).
Status OpenCommandQueue(const std::string& url, int busy_timeout_ms,
                        std::unique_ptr<CommandQueue>* out);

// The URL with any password replaced by "****": what messages and logs show.
std::string RedactUrl(const std::string& url);

// True for postgresql:// and postgres:// URLs.
bool IsPostgresUrl(const std::string& url);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_PG_BACKEND_H_
