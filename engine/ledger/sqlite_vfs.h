#ifndef CAREWATCH_ENGINE_LEDGER_SQLITE_VFS_H_
#define CAREWATCH_ENGINE_LEDGER_SQLITE_VFS_H_

// The SQLite VFS the ledger's writer opens its database with: the
// platform's default VFS, except that the frames a commit appends to the
// WAL reach the file in one write instead of two system calls per frame
// (a 4 KiB page and its 24-byte header: about sixty a commit under load,
// docs/performance.md).
//
// Writes to a WAL file that continue the previous one are gathered in
// memory (up to kMaxGathered bytes) and written at the next call that is
// not such a write: xSync first of all, so with synchronous=FULL (the
// ledger's setting) a commit's frames are in the file and synced before
// SQLite publishes the commit in the WAL index, as they are without this
// VFS. A write that cannot be made is reported by the call that makes it
// (xSync for a commit), and the commit fails as it would have. Only the
// WAL is gathered: the database file and the -shm index are passed
// through. Requires synchronous=FULL: with NORMAL SQLite would publish
// frames it has not synced, and readers could look for them in the file
// before they are written.

#include <cstdint>

namespace carewatch::ledger {

// SQLite's unix VFS writes at most 128 KiB - 1 bytes a call (it masks the
// size), so that is as many as are gathered: 31 frames of 4 KiB pages.
inline constexpr int64_t kMaxGathered = (128 << 10) - 1;

// Registers the VFS once (not as the default) and returns its name, for
// sqlite3_open_v2. nullptr if it could not be registered (the default VFS
// is then used, unchanged).
const char* GatheringVfs();

// Sets SQLite's process-wide options, once, before SQLite initialises:
// without memory statistics (SQLITE_CONFIG_MEMSTATUS), which SQLite
// otherwise keeps under one global mutex taken around every allocation and
// free, for every connection. carewatch reads none of those statistics.
// Called before the ledger opens any connection and by GatheringVfs(); a
// call after SQLite has initialised changes nothing (SQLite refuses it).
void ConfigureSqlite();

// Counts since the process started: WAL writes SQLite asked for, and
// writes made to the file. For tests and benchmarks.
struct GatheringVfsStats {
  uint64_t asked = 0;
  uint64_t made = 0;
};
GatheringVfsStats GatheringVfsCounts();

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_SQLITE_VFS_H_
