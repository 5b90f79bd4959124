// Copying a ledger between stores (copy.h).
#include "engine/ledger/copy.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "engine/common/digest.h"
#include "engine/common/files.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/pg_backend.h"
#include "engine/ledger/verify.h"

namespace carewatch::ledger {
namespace {

// A ledger's size and the root over its leaves, computed from the stored
// leaf hashes (not from its stored subtrees).
Status SizeAndRoot(LedgerBackend& backend, uint64_t* size, Hash* root) {
  Status s = backend.ReadTreeSize(size);
  if (!s.ok()) return s;
  std::vector<Hash> leaves;
  s = backend.ReadLeafHashes(&leaves);
  if (!s.ok()) return s;
  CompactTree tree;
  for (const Hash& h : leaves) tree.Append(h, nullptr);
  *root = tree.Root();
  return Status::Ok();
}

}  // namespace

Status CopyLedger(const std::string& from, const std::string& to, CopyReport* report) {
  std::unique_ptr<LedgerBackend> src;
  Status s = OpenBackend(from, true, &src);
  if (!s.ok()) return s.WithPrefix("source " + RedactUrl(from) + ": ");
  uint64_t size = 0;
  s = src->ReadTreeSize(&size);
  if (!s.ok()) return s;
  CarriedRows carried;
  s = src->ReadCarried(&carried);
  if (!s.ok()) return s;
  std::vector<v1::Checkpoint> checkpoints;
  s = src->ReadCheckpoints(&checkpoints);
  if (!s.ok()) return s;

  CompactTree tree;
  {
    std::unique_ptr<LedgerBackend> dst;
    s = OpenBackend(to, false, &dst);
    if (!s.ok()) return s.WithPrefix("target " + RedactUrl(to) + ": ");
    uint64_t held = 0;
    s = dst->ReadTreeSize(&held);
    if (!s.ok()) return s;
    if (held != 0) {
      return Status::FailedPrecondition("target " + RedactUrl(to) + " holds " +
                                        std::to_string(held) +
                                        " events: copy into an empty ledger");
    }
    for (uint64_t next = 1; next <= size;) {
      CopyChunk chunk;
      s = src->ReadEvents(next, 10000, &chunk.events);
      if (!s.ok()) return s;
      if (chunk.events.empty()) break;
      for (const StoredEvent& e : chunk.events) {
        if (e.seq != next) {
          return Status::DataLoss("source is missing event " + std::to_string(next) +
                                  "; run `carewatch verify` on it");
        }
        if (e.seq > size) break;
        tree.Append(e.leaf_hash, &chunk.nodes);
        ++next;
      }
      while (!chunk.events.empty() && chunk.events.back().seq > size) chunk.events.pop_back();
      s = dst->WriteCopy(chunk);
      if (!s.ok()) return s;
    }
    CopyChunk last;
    for (const v1::Checkpoint& c : checkpoints) {
      if (c.tree_size() <= size) last.checkpoints.push_back(c);
    }
    last.carried = &carried;
    s = dst->WriteCopy(last);
    if (!s.ok()) return s;
  }
  // Opened again for writing: the derived tables are derived from the log.
  {
    std::unique_ptr<LedgerBackend> dst;
    s = OpenBackend(to, false, &dst);
    if (!s.ok()) return s.WithPrefix("reopening the copy: ");
  }
  std::unique_ptr<LedgerBackend> check;
  s = OpenBackend(to, true, &check);
  if (!s.ok()) return s;
  uint64_t copied = 0;
  Hash copied_root;
  s = SizeAndRoot(*check, &copied, &copied_root);
  if (!s.ok()) return s;
  if (copied != size || copied_root != tree.Root()) {
    return Status::DataLoss("the copy differs from the source: " + std::to_string(copied) +
                            " events against " + std::to_string(size));
  }
  VerifyReport v = VerifyLedger(*check, "");
  if (!v.ok) return Status::DataLoss("the copy does not verify: " + v.message);
  report->events = size;
  report->checkpoints = v.checkpoints;
  report->root_hex = HexEncode(tree.Root());
  return Status::Ok();
}

Status BackupLedgerFile(const std::string& from, const std::string& to, BackupReport* report) {
  if (IsPostgresUrl(from)) {
    return Status::InvalidArgument(
        "ledger backup copies an SQLite ledger file; back up a PostgreSQL ledger with pg_dump "
        "(docs/operations.md)");
  }
  const std::string path = from.rfind("sqlite://", 0) == 0 ? from.substr(9) : from;
  if (from.find("://") != std::string::npos && from.rfind("sqlite://", 0) != 0)
    return Status::InvalidArgument("unknown ledger URL scheme in '" + RedactUrl(from) + "'");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return Status::NotFound("no ledger file " + path);
  if (std::filesystem::exists(to, ec) || ec)
    return Status::FailedPrecondition(to + " exists: a backup never overwrites a file");
  const std::string partial = to + ".partial";
  // Created here, mode 0600 and not there before: SQLite then writes into it.
  std::filesystem::remove(partial, ec);
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Internal("cannot create " + partial + ": " + std::strerror(errno));
  ::close(fd);

  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  auto fail = [&](Status s) {
    if (src) sqlite3_close(src);
    if (dst) sqlite3_close(dst);
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    std::filesystem::remove(partial + "-journal", ignored);
    return s;
  };
  if (sqlite3_open_v2(path.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    return fail(Status::Unavailable("cannot open " + path + ": " + sqlite3_errmsg(src)));
  sqlite3_busy_timeout(src, 10000);
  if (sqlite3_open_v2(partial.c_str(), &dst, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    return fail(Status::Internal("cannot open " + partial + ": " + sqlite3_errmsg(dst)));
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) return fail(Status::Internal(std::string("backup: ") + sqlite3_errmsg(dst)));
  // All pages in one step: one read transaction of the source, so the copy
  // is one snapshot. Steps of a few pages would start again whenever the
  // writer commits, which under load is always.
  int rc = sqlite3_backup_step(b, -1);
  for (int tries = 0; (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 100; ++tries) {
    sqlite3_sleep(50);
    rc = sqlite3_backup_step(b, -1);
  }
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) {
    return fail(Status::Unavailable(
        "copying " + path + ": " +
        (sqlite3_errcode(dst) != SQLITE_OK ? sqlite3_errmsg(dst) : sqlite3_errstr(rc))));
  }
  // The copy came with the source's WAL mode: one file, no WAL beside it.
  if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return fail(Status::Internal("finishing " + partial + ": " + sqlite3_errmsg(dst)));
  sqlite3_close(src);
  src = nullptr;
  if (sqlite3_close(dst) != SQLITE_OK) return fail(Status::Internal("cannot close " + partial));
  dst = nullptr;
  Status s = SyncFile(partial);
  if (!s.ok()) return fail(s);
  if (std::filesystem::exists(to, ec) || ec)
    return fail(Status::FailedPrecondition(to + " exists: a backup never overwrites a file"));
  std::filesystem::rename(partial, to, ec);
  if (ec) return fail(Status::Internal("cannot rename " + partial + ": " + ec.message()));
  s = SyncDirectory(std::filesystem::path(to).parent_path().string());
  if (!s.ok()) return s;

  report->bytes = std::filesystem::file_size(to, ec);
  std::unique_ptr<LedgerBackend> copy;
  s = OpenBackend(to, true, &copy);
  if (!s.ok()) return s.WithPrefix("the copy " + to + ": ");
  Hash root;
  s = SizeAndRoot(*copy, &report->events, &root);
  if (!s.ok()) return s;
  report->root_hex = HexEncode(root);
  return Status::Ok();
}

}  // namespace carewatch::ledger
