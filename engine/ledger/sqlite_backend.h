#ifndef CAREWATCH_ENGINE_LEDGER_SQLITE_BACKEND_H_
#define CAREWATCH_ENGINE_LEDGER_SQLITE_BACKEND_H_

#include <memory>
#include <string>

#include "engine/common/status.h"
#include "engine/ledger/ledger.h"

namespace carewatch::ledger {

// The embedded ledger backend (LedgerBackend's contract): one SQLite file in
// WAL mode with synchronous=FULL, so a committed WriteSet survives a crash or
// power loss. Tables (docs/storage.md): the log (events, tree_nodes,
// checkpoints), what events alone cannot give (report_index, stats,
// stats_pending), and the tables derived from events (obligations,
// obligation_actions, breaches, findings, finding_obligations,
// finding_events, obligation_events, key_events, counters), which a change of
// schema version derives again from the log, once.
//
// One writer connection (the ledger's writer thread), one connection for
// reads under a mutex, a pool of four read-only connections for report
// lookups, and a background thread that copies the WAL into the file.
//
// `path` is a file path; `url` is what url() reports. `read_only` opens an
// existing ledger without creating, migrating or changing it.
Status OpenSqliteBackend(const std::string& url, const std::string& path, bool read_only,
                         int busy_timeout_ms, std::unique_ptr<LedgerBackend>* out);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_SQLITE_BACKEND_H_
