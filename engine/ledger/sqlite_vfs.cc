#include "engine/ledger/sqlite_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <new>
#include <vector>

namespace carewatch::ledger {
namespace {

std::atomic<uint64_t> g_asked{0};
std::atomic<uint64_t> g_made{0};

// One open file: ours in front, the default VFS's behind (sqlite3_vfs's
// szOsFile covers both, in one allocation SQLite makes).
struct File {
  sqlite3_file base;  // first: SQLite passes &base as the file
  sqlite3_file* real;
  bool wal;
  // Gathered WAL writes: bytes for [offset, offset + pending.size()).
  std::vector<char>* pending;
  sqlite3_int64 offset;
};

sqlite3_vfs* Real(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }
File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
const sqlite3_io_methods* M(File* f) { return f->real->pMethods; }

int Flush(File* f) {
  if (!f->pending || f->pending->empty()) return SQLITE_OK;
  const int rc =
      M(f)->xWrite(f->real, f->pending->data(), static_cast<int>(f->pending->size()), f->offset);
  g_made.fetch_add(1, std::memory_order_relaxed);
  f->pending->clear();
  return rc;
}

int Close(sqlite3_file* file) {
  File* f = Of(file);
  int rc = Flush(f);
  delete f->pending;
  f->pending = nullptr;
  int c = M(f)->xClose(f->real);
  return rc != SQLITE_OK ? rc : c;
}

int Read(sqlite3_file* file, void* buf, int n, sqlite3_int64 off) {
  File* f = Of(file);
  int rc = Flush(f);
  return rc != SQLITE_OK ? rc : M(f)->xRead(f->real, buf, n, off);
}

int Write(sqlite3_file* file, const void* buf, int n, sqlite3_int64 off) {
  File* f = Of(file);
  if (!f->wal) return M(f)->xWrite(f->real, buf, n, off);
  g_asked.fetch_add(1, std::memory_order_relaxed);
  std::vector<char>& p = *f->pending;
  const bool continues = !p.empty() && off == f->offset + static_cast<sqlite3_int64>(p.size());
  if (!continues || static_cast<int64_t>(p.size()) + n > kMaxGathered) {
    int rc = Flush(f);
    if (rc != SQLITE_OK) return rc;
    if (n > kMaxGathered) {
      g_made.fetch_add(1, std::memory_order_relaxed);
      return M(f)->xWrite(f->real, buf, n, off);
    }
    f->offset = off;
  }
  try {
    p.insert(p.end(), static_cast<const char*>(buf), static_cast<const char*>(buf) + n);
  } catch (const std::bad_alloc&) {
    int rc = Flush(f);
    if (rc != SQLITE_OK) return rc;
    g_made.fetch_add(1, std::memory_order_relaxed);
    return M(f)->xWrite(f->real, buf, n, off);
  }
  return SQLITE_OK;
}

// Every other call on a file sees it as written so far: gathered bytes are
// written first.
int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = Of(file);
  int rc = Flush(f);
  return rc != SQLITE_OK ? rc : M(f)->xTruncate(f->real, size);
}
int Sync(sqlite3_file* file, int flags) {
  File* f = Of(file);
  int rc = Flush(f);
  return rc != SQLITE_OK ? rc : M(f)->xSync(f->real, flags);
}
int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  File* f = Of(file);
  int rc = Flush(f);
  return rc != SQLITE_OK ? rc : M(f)->xFileSize(f->real, size);
}
int Lock(sqlite3_file* file, int level) { return M(Of(file))->xLock(Of(file)->real, level); }
int Unlock(sqlite3_file* file, int level) {
  File* f = Of(file);
  int rc = Flush(f);
  int u = M(f)->xUnlock(f->real, level);
  return rc != SQLITE_OK ? rc : u;
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  return M(Of(file))->xCheckReservedLock(Of(file)->real, out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  File* f = Of(file);
  int rc = Flush(f);
  return rc != SQLITE_OK ? rc : M(f)->xFileControl(f->real, op, arg);
}
int SectorSize(sqlite3_file* file) { return M(Of(file))->xSectorSize(Of(file)->real); }
int DeviceCharacteristics(sqlite3_file* file) {
  return M(Of(file))->xDeviceCharacteristics(Of(file)->real);
}
int ShmMap(sqlite3_file* file, int page, int size, int extend, void volatile** out) {
  return M(Of(file))->xShmMap(Of(file)->real, page, size, extend, out);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  return M(Of(file))->xShmLock(Of(file)->real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) { M(Of(file))->xShmBarrier(Of(file)->real); }
int ShmUnmap(sqlite3_file* file, int del) { return M(Of(file))->xShmUnmap(Of(file)->real, del); }
int Fetch(sqlite3_file* file, sqlite3_int64 off, int n, void** out) {
  File* f = Of(file);
  int rc = Flush(f);
  return rc != SQLITE_OK ? rc : M(f)->xFetch(f->real, off, n, out);
}
int Unfetch(sqlite3_file* file, sqlite3_int64 off, void* p) {
  return M(Of(file))->xUnfetch(Of(file)->real, off, p);
}

const sqlite3_io_methods kMethods = {3,
                                     Close,
                                     Read,
                                     Write,
                                     Truncate,
                                     Sync,
                                     FileSize,
                                     Lock,
                                     Unlock,
                                     CheckReservedLock,
                                     FileControl,
                                     SectorSize,
                                     DeviceCharacteristics,
                                     ShmMap,
                                     ShmLock,
                                     ShmBarrier,
                                     ShmUnmap,
                                     Fetch,
                                     Unfetch};

int Open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = Of(file);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->pending = nullptr;
  f->offset = 0;
  int rc = Real(vfs)->xOpen(Real(vfs), name, f->real, flags, out_flags);
  if (rc != SQLITE_OK || !f->real->pMethods) return rc;
  if (f->real->pMethods->iVersion < 3) {
    // Not the shape this shim forwards: close it and refuse.
    f->real->pMethods->xClose(f->real);
    return SQLITE_CANTOPEN;
  }
  if (f->wal) {
    f->pending = new (std::nothrow) std::vector<char>();
    if (!f->pending) {
      f->real->pMethods->xClose(f->real);
      return SQLITE_NOMEM;
    }
  }
  f->base.pMethods = &kMethods;
  return SQLITE_OK;
}

int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return Real(vfs)->xDelete(Real(vfs), name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return Real(vfs)->xAccess(Real(vfs), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return Real(vfs)->xFullPathname(Real(vfs), name, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) { return Real(vfs)->xDlOpen(Real(vfs), name); }
void DlError(sqlite3_vfs* vfs, int n, char* out) { Real(vfs)->xDlError(Real(vfs), n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* h, const char* sym))(void) {
  return Real(vfs)->xDlSym(Real(vfs), h, sym);
}
void DlClose(sqlite3_vfs* vfs, void* h) { Real(vfs)->xDlClose(Real(vfs), h); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  return Real(vfs)->xRandomness(Real(vfs), n, out);
}
int Sleep(sqlite3_vfs* vfs, int us) { return Real(vfs)->xSleep(Real(vfs), us); }
int CurrentTime(sqlite3_vfs* vfs, double* out) { return Real(vfs)->xCurrentTime(Real(vfs), out); }
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return Real(vfs)->xGetLastError(Real(vfs), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return Real(vfs)->xCurrentTimeInt64(Real(vfs), out);
}

}  // namespace

void ConfigureSqlite() {
  static const bool once = [] {
    // SQLITE_MISUSE if SQLite has already initialised: it then keeps its
    // defaults, which are correct, only slower.
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)once;
}

const char* GatheringVfs() {
  static sqlite3_vfs vfs;
  static const char* name = []() -> const char* {
    ConfigureSqlite();  // before sqlite3_vfs_find initialises SQLite
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    if (!real || real->iVersion < 2) return nullptr;
    vfs.iVersion = 2;
    vfs.szOsFile = static_cast<int>(sizeof(File)) + real->szOsFile;
    vfs.mxPathname = real->mxPathname;
    vfs.zName = "carewatch-gathering";
    vfs.pAppData = real;
    vfs.xOpen = Open;
    vfs.xDelete = Delete;
    vfs.xAccess = Access;
    vfs.xFullPathname = FullPathname;
    vfs.xDlOpen = DlOpen;
    vfs.xDlError = DlError;
    vfs.xDlSym = DlSym;
    vfs.xDlClose = DlClose;
    vfs.xRandomness = Randomness;
    vfs.xSleep = Sleep;
    vfs.xCurrentTime = CurrentTime;
    vfs.xGetLastError = GetLastError;
    vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK) return nullptr;
    return vfs.zName;
  }();
  return name;
}

GatheringVfsStats GatheringVfsCounts() {
  return {g_asked.load(std::memory_order_relaxed), g_made.load(std::memory_order_relaxed)};
}

}  // namespace carewatch::ledger
