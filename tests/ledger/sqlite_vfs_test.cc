#include "engine/ledger/sqlite_vfs.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace carewatch::ledger {
namespace {

class GatheringVfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cw-vfs-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "t.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void Exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  static int64_t Count(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(GatheringVfsTest, ACommitReachesTheWalInAFewWritesAndEveryReaderSeesIt) {
  ASSERT_NE(GatheringVfs(), nullptr);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            GatheringVfs()),
            SQLITE_OK);
  Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;");
  Exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  // A reader on the default VFS, open before the commit, as the ledger's are.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  EXPECT_EQ(Count(reader, "SELECT COUNT(*) FROM t"), 0);

  const GatheringVfsStats before = GatheringVfsCounts();
  // About 100 pages in one commit, one row of them larger than a write.
  Exec(db,
       "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
       "INSERT INTO t SELECT i, randomblob(1000) FROM n; INSERT INTO t VALUES (1000, "
       "zeroblob(200000)); COMMIT;");
  const GatheringVfsStats after = GatheringVfsCounts();
  const uint64_t asked = after.asked - before.asked, made = after.made - before.made;
  EXPECT_GT(asked, 200u) << "two writes a frame";
  EXPECT_LE(made, asked / 20) << asked << " writes asked for, " << made << " made";
  EXPECT_GE(made, 3u) << "no more than 128 KiB a write";

  EXPECT_EQ(Count(reader, "SELECT COUNT(*) FROM t"), 301) << "committed frames are in the file";
  EXPECT_EQ(Count(reader, "SELECT length(v) FROM t WHERE k = 1000"), 200000);
  Exec(db, "UPDATE t SET v = randomblob(10) WHERE k <= 10");
  EXPECT_EQ(Count(reader, "SELECT SUM(length(v)) FROM t WHERE k <= 10"), 100);
  sqlite3_close(reader);
  // Copied into the database and reopened without this VFS: intact.
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  EXPECT_EQ(Count(db, "SELECT COUNT(*) FROM t"), 301);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// A transaction rolled back after SQLite spilled some of its pages into the
// WAL leaves nothing behind, and the next commit overwrites those frames.
TEST_F(GatheringVfsTest, FramesOfARolledBackTransactionAreNeverSeen) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            GatheringVfs()),
            SQLITE_OK);
  Exec(db,
       "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=10; "
       "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL); INSERT INTO t VALUES (0, x'00')");
  Exec(db,
       "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
       "INSERT INTO t SELECT i, randomblob(1000) FROM n; ROLLBACK;");
  Exec(db, "INSERT INTO t VALUES (1, x'01')");
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  EXPECT_EQ(Count(reader, "SELECT COUNT(*) FROM t"), 2);
  sqlite3_close(reader);
  sqlite3_close(db);
}

}  // namespace
}  // namespace carewatch::ledger
