#ifndef CAREWATCH_ENGINE_LEDGER_PG_BACKEND_H_
#define CAREWATCH_ENGINE_LEDGER_PG_BACKEND_H_

#include <memory>
#include <string>

#include "engine/common/status.h"
#include "engine/ledger/ledger.h"

namespace carewatch::ledger {

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
//   snapshot.
//
// `read_only` opens an existing ledger without creating, migrating, locking
// or changing it (`carewatch verify`, audit commands). `busy_timeout_ms`:
// how long a statement waits for a lock another session holds (lock_timeout)
// before it fails as Unavailable, which the ledger retries.
Status OpenPostgresBackend(const std::string& url, bool read_only, int busy_timeout_ms,
                           std::unique_ptr<LedgerBackend>* out);

// The URL with any password replaced by "****": what messages and logs show.
std::string RedactUrl(const std::string& url);

// True for postgresql:// and postgres:// URLs.
bool IsPostgresUrl(const std::string& url);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_PG_BACKEND_H_
