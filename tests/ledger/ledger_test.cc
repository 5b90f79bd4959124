#include "engine/ledger/ledger.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "engine/common/digest.h"
#include "engine/ledger/note.h"
#include "engine/ledger/pg_backend.h"
#include "engine/ledger/verify.h"
#include "tests/test_ledger.h"

namespace carewatch::ledger {
namespace {

namespace fs = std::filesystem;

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/cw-ledger-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    url_ = carewatch::testing::FreshLedgerUrl(dir_);
  }

  // The ledger's options: its URL, and its key in the test's directory (a
  // PostgreSQL ledger has no directory of its own).
  LedgerOptions Options() {
    LedgerOptions o;
    o.url = url_;
    o.signing_key_path = dir_ + "/ledger.key";
    return o;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Ledger> OpenLedger(uint64_t checkpoint_every = 4) {
    LedgerOptions o = Options();
    o.checkpoint_every = checkpoint_every;
    std::unique_ptr<Ledger> l;
    Status s = Ledger::Open(o, &l);
    EXPECT_TRUE(s.ok()) << s.message();
    return l;
  }

  // Appends n ACTION_RECORDED events, one per Append.
  void AppendEvents(Ledger& l, int n) {
    for (int i = 0; i < n; ++i) {
      std::vector<v1::LedgerEvent> events(1);
      events[0].set_type(v1::ACTION_RECORDED);
      events[0].mutable_time()->set_seconds(1767607200 + i);
      events[0].mutable_action_recorded()->set_report_id("r" + std::to_string(i));
      events[0].mutable_action_recorded()->set_action("remove_content");
      ASSERT_TRUE(l.Append(&events).ok());
    }
  }

  // Every event up to checkpoint `cp` (at most 100) has an inclusion proof
  // that verifies against its root.
  static void ExpectEveryEventProvable(Ledger& l, const v1::Checkpoint& cp) {
    std::vector<StoredEvent> rows;
    ASSERT_TRUE(l.backend().ReadEvents(1, 100, &rows).ok());
    for (const auto& row : rows) {
      if (row.seq > cp.tree_size()) break;
      std::vector<Hash> proof;
      ASSERT_TRUE(l.InclusionProof(row.seq, cp.tree_size(), &proof).ok()) << row.seq;
      EXPECT_TRUE(
          VerifyInclusion(row.leaf_hash, row.seq - 1, cp.tree_size(), proof, cp.root_hash()))
          << row.seq;
    }
  }

  // Indexes report `id` of service "svc" (unflagged unless `seq`), durably.
  void IndexReport(Ledger& l, const std::string& id, int64_t at = 1767607200, uint64_t seq = 0) {
    BatchExtras extras;
    extras.reports.push_back({"svc", id, "digest-" + id, seq, at, "v1"});
    std::vector<v1::LedgerEvent> none;
    ASSERT_TRUE(l.Enqueue(&none, std::move(extras))->Wait().ok());
  }
  // Whether the index holds report `id` of service "svc" (its row in `row`).
  static bool Indexed(LedgerBackend& b, const std::string& id, ReportIndexRow* row = nullptr) {
    ReportIndexRow r;
    bool f = false;
    EXPECT_TRUE(b.LookupReport("svc", id, row ? row : &r, &f).ok());
    return f;
  }

  void Sql(const std::string& sql, const std::vector<carewatch::testing::SqlArg>& args = {}) {
    carewatch::testing::LedgerSql(url_, sql, args);
  }

  std::unique_ptr<LedgerBackend> OpenReadOnly() {
    std::unique_ptr<LedgerBackend> b;
    EXPECT_TRUE(OpenBackend(url_, true, &b).ok());
    return b;
  }

  std::string ReadPayload(uint64_t seq) {
    std::unique_ptr<LedgerBackend> b;
    EXPECT_TRUE(OpenBackend(url_, true, &b).ok());
    std::vector<StoredEvent> rows;
    EXPECT_TRUE(b->ReadEvents(seq, 1, &rows).ok());
    return rows.empty() ? "" : rows[0].payload;
  }

  // Overwrites event `seq`'s payload (and, when given, its leaf hash).
  void RewriteEvent(uint64_t seq, const std::string& payload, const std::string& leaf = "") {
    using carewatch::testing::SqlBytes;
    using carewatch::testing::SqlInt;
    if (leaf.empty()) {
      Sql("UPDATE events SET payload = ?1 WHERE seq = ?2",
          {SqlBytes(payload), SqlInt(static_cast<int64_t>(seq))});
    } else {
      Sql("UPDATE events SET payload = ?1, leaf_hash = ?2 WHERE seq = ?3",
          {SqlBytes(payload), SqlBytes(leaf), SqlInt(static_cast<int64_t>(seq))});
    }
  }

  VerifyReport Verify(const std::string& pem = "") {
    std::unique_ptr<LedgerBackend> b;
    Status s = OpenBackend(url_, true, &b);
    EXPECT_TRUE(s.ok()) << s.message();
    return VerifyLedger(*b, pem);
  }

  std::string dir_, url_;
};

TEST_F(LedgerTest, AppendAssignsSeqsAndRoundTrips) {
  {
    auto l = OpenLedger();
    AppendEvents(*l, 10);
    EXPECT_EQ(l->size(), 10u);
  }
  auto l = OpenLedger();
  EXPECT_EQ(l->size(), 10u) << "a reopened ledger keeps every event";
  std::vector<StoredEvent> rows;
  ASSERT_TRUE(l->backend().ReadEvents(1, 100, &rows).ok());
  ASSERT_EQ(rows.size(), 10u);
  for (size_t i = 0; i < rows.size(); ++i) {
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(rows[i].payload));
    EXPECT_EQ(e.seq(), i + 1);
    EXPECT_EQ(e.action_recorded().report_id(), "r" + std::to_string(i));
    EXPECT_EQ(rows[i].leaf_hash, LeafHash(rows[i].payload));
  }
  AppendEvents(*l, 1);
  EXPECT_EQ(l->size(), 11u);
}

TEST_F(LedgerTest, ALockHeldElsewhereIsRetriedAndNothingIsLost) {
  LedgerOptions o = Options();
  o.busy_timeout_ms = 50;
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(Ledger::Open(o, &l).ok());
  AppendEvents(*l, 3);
  // Another process (here another connection) holds the write lock for a
  // while, far past the busy timeout.
  carewatch::testing::WriteLockHolder other(url_);
  std::atomic<bool> appended{false};
  Status append_status;
  std::thread writer([&] {
    std::vector<v1::LedgerEvent> events(1);
    events[0].set_type(v1::ACTION_RECORDED);
    events[0].mutable_time()->set_seconds(1767607300);
    events[0].mutable_action_recorded()->set_report_id("during");
    append_status = l->Append(&events);
    appended = true;
  });
  Status degraded;
  for (int i = 0; i < 200 && degraded.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    degraded = l->health();
  }
  EXPECT_FALSE(degraded.ok()) << "health() says the ledger cannot write now";
  EXPECT_NE(degraded.message().find("retrying"), std::string::npos) << degraded.message();
  EXPECT_FALSE(appended.load()) << "nothing is acknowledged while the write cannot be made";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  other.Release();
  writer.join();
  EXPECT_TRUE(append_status.ok()) << "written once the lock is released: "
                                  << append_status.message();
  EXPECT_TRUE(l->health().ok()) << "the ledger recovers by itself: " << l->health().message();
  EXPECT_GT(l->write_retries(), 0u);
  AppendEvents(*l, 2);
  EXPECT_EQ(l->size(), 6u);
  l.reset();
  VerifyReport r = VerifyLedger(*OpenReadOnly(), "");
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.events, 6u) << "every acknowledged event exactly once";
}

TEST_F(LedgerTest, ATicketsCallbackRunsOnceItsBatchIsDurableOrAtOnceIfItIs) {
  auto l = OpenLedger();
  std::vector<v1::LedgerEvent> events(1);
  events[0].set_type(v1::ACTION_RECORDED);
  events[0].mutable_time()->set_seconds(1767607200);
  events[0].mutable_action_recorded()->set_report_id("r");
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  uint64_t size_then = 0;
  std::thread::id ran_on;
  std::shared_ptr<Ledger::Ticket> ticket;
  {
    // The batch cannot be written while another connection holds the lock.
    carewatch::testing::WriteLockHolder other(url_);
    ticket = l->Enqueue(&events);
    ticket->OnDone([&](const Status& s) {
      EXPECT_TRUE(s.ok()) << s.message();
      std::lock_guard<std::mutex> lock(mu);
      size_then = l->size();
      ran_on = std::this_thread::get_id();
      ++calls;
      cv.notify_all();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(calls, 0) << "not before the batch is durable";
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return calls > 0; }));
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(size_then, 1u) << "the events were durable when it ran";
    EXPECT_NE(ran_on, std::this_thread::get_id()) << "run by the ledger, nobody waiting";
  }
  // Once the outcome is known, a callback runs at once on the caller's thread.
  std::thread::id later;
  ticket->OnDone([&](const Status& s) {
    EXPECT_TRUE(s.ok());
    later = std::this_thread::get_id();
  });
  EXPECT_EQ(later, std::this_thread::get_id());
}

TEST_F(LedgerTest, CheckpointsAreSignedAndProofsVerify) {
  auto l = OpenLedger(4);
  AppendEvents(*l, 9);
  ASSERT_TRUE(l->Flush().ok());
  v1::Checkpoint cp;
  ASSERT_TRUE(l->LatestCheckpoint(&cp).ok());
  EXPECT_EQ(cp.tree_size(), 9u);
  // A C2SP checkpoint note, signed by the ledger's key.
  std::unique_ptr<TrustedKey> trusted;
  ASSERT_TRUE(TrustedKey::FromVerifierKey(l->VerifierKey(), &trusted).ok());
  std::string text;
  ASSERT_TRUE(trusted->OpenNote(cp.note(), &text).ok()) << cp.note();
  EXPECT_EQ(text, l->origin() + "\n9\n" + Base64Encode(cp.root_hash()) + "\ntimestamp " +
                      std::to_string(cp.time().seconds()) + "\n");
  EXPECT_TRUE(trusted->VerifyCheckpoint(cp).ok());
  ExpectEveryEventProvable(*l, cp);
  std::vector<Hash> consistency;
  Hash root4;
  ASSERT_TRUE(l->RootAt(4, &root4).ok());
  ASSERT_TRUE(l->ConsistencyProof(4, 9, &consistency).ok());
  EXPECT_TRUE(VerifyConsistency(4, 9, root4, cp.root_hash(), consistency));
  EXPECT_FALSE(l->InclusionProof(10, 9, &consistency).ok());
}

TEST_F(LedgerTest, VerifyPassesOnAnIntactLedger) {
  {
    auto l = OpenLedger(3);
    AppendEvents(*l, 10);
  }
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.events, 10u);
  EXPECT_GE(r.checkpoints, 3u);
  EXPECT_EQ(r.unsigned_tail, 0u) << "closing signs a final checkpoint";
}

TEST_F(LedgerTest, VerifyOfALedgerWhoseEventsTableWasAlteredSaysSo) {
  // A ledger file is input to the regulator's check: a copy whose schema
  // was altered (here a column of the events table renamed) gives an error
  // naming what could not be read, not a crash.
  {
    auto l = OpenLedger();
    AppendEvents(*l, 3);
  }
  Sql("ALTER TABLE events RENAME COLUMN leaf_hash TO leaf");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("events"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, FlippedByteInAnEventIsNamed) {
  {
    auto l = OpenLedger();
    AppendEvents(*l, 10);
  }
  // Flip one byte of event 6's payload (the last byte: inside the action name).
  std::string payload = ReadPayload(6);
  ASSERT_FALSE(payload.empty());
  payload.back() ^= 0x01;
  RewriteEvent(6, payload);
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 6u) << r.message;
  EXPECT_NE(r.message.find("event 6"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, DeletedRowIsNamed) {
  {
    auto l = OpenLedger();
    AppendEvents(*l, 10);
  }
  Sql("DELETE FROM events WHERE seq = 4");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 4u) << r.message;
  EXPECT_NE(r.message.find("missing"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, ReorderedRowsAreNamed) {
  {
    auto l = OpenLedger();
    AppendEvents(*l, 10);
  }
  Sql("UPDATE events SET seq = -3 WHERE seq = 3; UPDATE events SET seq = 3 WHERE seq = 7; "
      "UPDATE events SET seq = 7 WHERE seq = -3;");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 3u) << r.message;
  EXPECT_NE(r.message.find("reordered"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, ReplacedCheckpointSignatureIsNamed) {
  {
    auto l = OpenLedger(4);
    AppendEvents(*l, 10);
  }
  Sql("UPDATE checkpoints SET signature = ?1 WHERE tree_size = 8",
      {carewatch::testing::SqlBytes(std::string(64, '\0'))});
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 8u) << r.message;
  EXPECT_NE(r.message.find("checkpoint at size 8"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, ALedgerKeepsItsOrigin) {
  LedgerOptions o = Options();
  o.origin = "a.example/log";
  {
    std::unique_ptr<Ledger> l;
    ASSERT_TRUE(Ledger::Open(o, &l).ok());
    EXPECT_EQ(l->origin(), "a.example/log");
    EXPECT_EQ(l->VerifierKey().substr(0, 14), "a.example/log+");
  }
  o.origin = "b.example/log";
  std::unique_ptr<Ledger> l;
  Status s = Ledger::Open(o, &l);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("has origin 'a.example/log'"), std::string::npos) << s.message();
  o.origin.clear();
  ASSERT_TRUE(Ledger::Open(o, &l).ok()) << "unset: the recorded one";
  EXPECT_EQ(l->origin(), "a.example/log");
}

TEST_F(LedgerTest, CheckpointsSignedBeforeNotesKeepVerifying) {
  std::string vkey;
  {
    auto l = OpenLedger(4);
    AppendEvents(*l, 8);
    vkey = l->VerifierKey();
  }
  // As an older carewatch wrote it: no note, the legacy signed text.
  std::unique_ptr<SigningKey> key;
  ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/ledger.key", &key).ok());
  std::vector<v1::Checkpoint> cps;
  {
    std::unique_ptr<LedgerBackend> b;
    ASSERT_TRUE(OpenBackend(url_, true, &b).ok());
    ASSERT_TRUE(b->ReadCheckpoints(&cps).ok());
  }
  ASSERT_FALSE(cps.empty());
  const v1::Checkpoint& c = cps.front();
  std::string sig;
  ASSERT_TRUE(
      key->Sign(CheckpointSignedText(c.tree_size(), c.root_hash(), c.time().seconds()), &sig).ok());
  Sql("UPDATE checkpoints SET note = NULL, signature = ?1 WHERE tree_size = ?2",
      {carewatch::testing::SqlBytes(sig),
       carewatch::testing::SqlInt(static_cast<int64_t>(c.tree_size()))});
  VerifyReport r = Verify(vkey);
  EXPECT_TRUE(r.ok) << r.message;
  Sql("UPDATE checkpoints SET signature = ?1 WHERE tree_size = ?2",
      {carewatch::testing::SqlBytes(std::string(64, '\0')),
       carewatch::testing::SqlInt(static_cast<int64_t>(c.tree_size()))});
  r = Verify(vkey);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("signature is not valid"), std::string::npos) << r.message;
}

// A ledger's connections allocate without SQLite's memory statistics,
// which would take one process-wide mutex around every allocation SQLite
// makes (ConfigureSqlite, sqlite_vfs.h). Each test runs in a process of
// its own, so opening the ledger is the first thing SQLite sees here.
TEST_F(LedgerTest, SqliteKeepsNoMemoryStatisticsForTheLedger) {
  if (url_.rfind("sqlite", 0) != 0) GTEST_SKIP() << "SQLite's own settings";
  auto l = OpenLedger();
  AppendEvents(*l, 20);
  sqlite3_int64 used = -1, highwater = -1;
  ASSERT_EQ(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &highwater, 0), SQLITE_OK);
  EXPECT_EQ(used, 0);
  EXPECT_EQ(highwater, 0);
}

// A read-only backend's snapshot (verify --ledger, report --ledger, audit)
// sees the ledger as one moment left it while another writer appends: the
// tree size, the events and the tables all stay as they were until it ends.
TEST_F(LedgerTest, AReadSnapshotSeesOneMomentWhileTheWriterAppends) {
  auto l = OpenLedger();
  AppendEvents(*l, 10);
  std::unique_ptr<LedgerBackend> reader;
  ASSERT_TRUE(OpenBackend(url_, true, &reader).ok());
  uint64_t size = 0;
  {
    ReadSnapshot snapshot(*reader);
    ASSERT_TRUE(snapshot.status().ok()) << snapshot.status().message();
    ASSERT_TRUE(reader->ReadTreeSize(&size).ok());
    EXPECT_EQ(size, 10u);
    AppendEvents(*l, 5);
    {
      ReadSnapshot nested(*reader);  // nests: still the same moment
      ASSERT_TRUE(nested.status().ok());
      ASSERT_TRUE(reader->ReadTreeSize(&size).ok());
      EXPECT_EQ(size, 10u) << "the snapshot saw an append made after it began";
    }
    ASSERT_TRUE(reader->ReadTreeSize(&size).ok());
    EXPECT_EQ(size, 10u) << "a nested snapshot's end ended the outer one";
    std::vector<StoredEvent> rows;
    ASSERT_TRUE(reader->ReadEvents(1, 100, &rows).ok());
    EXPECT_EQ(rows.size(), 10u);
    ReportIndexRow row;
    bool found = true;
    ASSERT_TRUE(reader->LookupReport("svc", "r1", &row, &found).ok());
    VerifyReport r = VerifyLedger(*reader, "");
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_EQ(r.events, 10u);
  }
  ASSERT_TRUE(reader->ReadTreeSize(&size).ok());
  EXPECT_EQ(size, 15u) << "reads after the snapshot see the appends";
  EXPECT_TRUE(VerifyLedger(*reader, "").ok);
  // A snapshot begun after other reads (which a backend may spread over
  // several connections) is still one moment for every read inside it.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->ReadTreeSize(&size).ok());
  {
    ReadSnapshot snapshot(*reader);
    ASSERT_TRUE(snapshot.status().ok()) << snapshot.status().message();
    AppendEvents(*l, 5);
    ASSERT_TRUE(reader->ReadTreeSize(&size).ok());
    EXPECT_EQ(size, 15u) << "a later snapshot saw an append made after it began";
  }
}

// A reader of another process that holds one snapshot for long (`sqlite3
// .backup`, `carewatch ledger backup`, a long query) keeps SQLite from
// starting the WAL again. The writer's restart used to wait the busy timeout
// for that reader before every batch, holding every append behind it; it
// now waits briefly, puts the restart off, and appends go on. Once the
// reader lets go, the WAL starts again.
TEST_F(LedgerTest, AReaderHoldingOneSnapshotDoesNotHoldUpAppends) {
  if (url_.rfind("sqlite", 0) != 0) GTEST_SKIP() << "the SQLite WAL";
  LedgerOptions o = Options();
  o.busy_timeout_ms = 3600 * 1000;  // what every batch waited for the reader before
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(Ledger::Open(o, &l).ok());
  AppendEvents(*l, 1);
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(url_.substr(9).c_str(), &reader, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  // Each round writes past 64 MiB of WAL (the restart point): 40 batches of
  // 20 events of 100 KB.
  auto append_round = [&l](std::atomic<int>* batches) {
    for (int b = 0; b < 40; ++b) {
      std::vector<v1::LedgerEvent> events(20);
      for (size_t i = 0; i < events.size(); ++i) {
        events[i].set_type(v1::ACTION_RECORDED);
        events[i].mutable_time()->set_seconds(1767607200);
        events[i].mutable_action_recorded()->set_report_id("r" + std::to_string(b * 20 + i));
        events[i].mutable_action_recorded()->set_action(std::string(100000, 'a'));
      }
      if (!l->Append(&events).ok()) return;
      batches->fetch_add(1);
    }
  };
  std::atomic<int> batches{0};
  std::thread writer(append_round, &batches);
  // A bound on the wait, not a measure of speed: before the change the
  // first batch past the restart point waited an hour.
  for (int i = 0; i < 3000 && batches.load() < 40; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(batches.load(), 40) << "appends were held behind the reader's snapshot";
  EXPECT_GT(l->backend().wal_restarts_deferred(), 0u);
  auto wal_frames = [&] {
    sqlite3* db = nullptr;
    int frames = -1;
    // A passive checkpoint (it waits for nobody) says how many frames the
    // WAL holds, once the connection has read the file (and so found the WAL).
    // It is busy (and says nothing) while the ledger's own checkpointer runs
    // one: asked again then.
    if (sqlite3_open_v2(url_.substr(9).c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK &&
        sqlite3_exec(db, "PRAGMA schema_version", nullptr, nullptr, nullptr) == SQLITE_OK) {
      for (int tries = 0; tries < 500; ++tries) {
        if (sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, nullptr) !=
            SQLITE_BUSY)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    sqlite3_close(db);
    return frames;
  };
  const int held = wal_frames();
  EXPECT_GT(held, 16384) << "the reader's snapshot kept the WAL from starting again";
  ASSERT_EQ(sqlite3_exec(reader, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(reader);  // also lets a writer held behind it go on
  writer.join();
  // The reader gone, the next restart happens: the WAL starts again.
  std::atomic<int> more{0};
  append_round(&more);
  ASSERT_EQ(more.load(), 40);
  const int after = wal_frames();
  EXPECT_GE(after, 0);
  EXPECT_LT(after, held) << "the WAL did not start again once the reader had gone";
  std::vector<StoredEvent> rows;
  ASSERT_TRUE(l->backend().ReadEvents(1, 2000, &rows).ok());
  EXPECT_EQ(rows.size(), 1u + 2 * 40 * 20);
}

// Reports that matched nothing leave the index oldest first, a bounded
// number at a time, and never before their retention; flagged reports
// never. A ledger that found them through the older partial index is
// carried forward on its first writable open.
TEST_F(LedgerTest, UnflaggedReportsExpireOldestFirstAlsoInALedgerCarriedForward) {
  if (url_.rfind("sqlite", 0) != 0) GTEST_SKIP() << "the SQLite ledger's own schema";
  {
    auto l = OpenLedger();
    IndexReport(*l, "flagged", 0, 7);
    for (int i = 0; i < 10; ++i) IndexReport(*l, "a" + std::to_string(i), 1000 + i);
  }
  Sql("DROP TABLE report_index_expiry; "
      "CREATE INDEX report_index_unflagged ON report_index (recorded_at) WHERE seq = 0;");
  auto l = OpenLedger();
  ASSERT_TRUE(l);
  using carewatch::testing::LedgerQuery;
  EXPECT_EQ(LedgerQuery(url_, "SELECT COUNT(*) FROM report_index_expiry"),
            std::vector<std::string>{"10"});
  EXPECT_EQ(
      LedgerQuery(url_, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'report_index_unflagged'"),
      std::vector<std::string>{"0"});
  size_t deleted = 0;
  ASSERT_TRUE(l->PruneUnflagged(1005, 3, &deleted).ok());
  EXPECT_EQ(deleted, 3u) << "at most the limit";
  EXPECT_FALSE(Indexed(l->backend(), "a2"));
  EXPECT_TRUE(Indexed(l->backend(), "a3"));
  ASSERT_TRUE(l->PruneUnflagged(1005, 100, &deleted).ok());
  EXPECT_EQ(deleted, 2u) << "only those recorded before the cut";
  EXPECT_FALSE(Indexed(l->backend(), "a4"));
  EXPECT_TRUE(Indexed(l->backend(), "a5"));
  // Recorded after a5..a9 but with an earlier time (the clock went back):
  // it waits behind them.
  IndexReport(*l, "b", 999);
  ASSERT_TRUE(l->PruneUnflagged(1007, 100, &deleted).ok());
  EXPECT_EQ(deleted, 2u);
  EXPECT_TRUE(Indexed(l->backend(), "b"));
  ASSERT_TRUE(l->PruneUnflagged(2000, 100, &deleted).ok());
  EXPECT_EQ(deleted, 4u);
  EXPECT_FALSE(Indexed(l->backend(), "a9"));
  EXPECT_FALSE(Indexed(l->backend(), "b"));
  EXPECT_TRUE(Indexed(l->backend(), "flagged"));
  EXPECT_EQ(LedgerQuery(url_, "SELECT COUNT(*) FROM report_index_expiry"),
            std::vector<std::string>{"0"});
}

// Reports indexed before a restart are found after it, through the filter
// of indexed ids the SQLite ledger rebuilds in the background at start; a
// report never indexed is answered by the filter, without reading the
// index, once the filter is complete; one indexed after the restart is
// found too.
TEST_F(LedgerTest, IndexedReportsAreFoundAcrossARestartAndNewOnesWithoutReadingTheIndex) {
  // PostgreSQL's TEXT holds no NUL.
  const bool nul_ids = !carewatch::testing::OnPostgres();
  auto wait_ready = [](LedgerBackend& b) {
    for (int i = 0; i < 1000 && !b.lookup_stats().filter_ready; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return b.lookup_stats().filter_ready;
  };
  const std::string nul_id("nul\0id", 6);
  {
    auto l = OpenLedger();
    for (int i = 0; i < 300; ++i) IndexReport(*l, "old-" + std::to_string(i));
    if (nul_ids) IndexReport(*l, nul_id);
    // More than one of the start-up scan's chunks (10,000 rows each).
    BatchExtras extras;
    for (int i = 0; i < 10050; ++i)
      extras.reports.push_back({"svc", "bulk-" + std::to_string(i), "d", 0, 1767607200, "v1"});
    std::vector<v1::LedgerEvent> none;
    ASSERT_TRUE(l->Enqueue(&none, std::move(extras))->Wait().ok());
  }
  // As after a crash: no filter left by a clean stop, so the start scans.
  if (carewatch::testing::OnPostgres())
    Sql("DELETE FROM meta WHERE key = 'report_filter'");
  else
    std::filesystem::remove(url_.substr(std::string("sqlite://").size()) + ".filter");
  auto l = OpenLedger();
  ASSERT_TRUE(l);
  LedgerBackend& b = l->backend();
  EXPECT_FALSE(b.lookup_stats().filter_restored);
  ASSERT_TRUE(wait_ready(b));
  for (int i = 0; i < 10050; ++i) ASSERT_TRUE(Indexed(b, "bulk-" + std::to_string(i))) << i;
  if (nul_ids) {
    EXPECT_TRUE(Indexed(b, nul_id)) << "an id is all its bytes";
    EXPECT_FALSE(Indexed(b, "nul"));
  }
  const LedgerBackend::LookupStats before = b.lookup_stats();
  for (int i = 0; i < 300; ++i) {
    ReportIndexRow row;
    ASSERT_TRUE(Indexed(b, "old-" + std::to_string(i), &row)) << i;
    EXPECT_EQ(row.digest, "digest-old-" + std::to_string(i));
  }
  for (int i = 0; i < 300; ++i) EXPECT_FALSE(Indexed(b, "new-" + std::to_string(i)));
  const LedgerBackend::LookupStats after = b.lookup_stats();
  // Every indexed id is read from the index; nearly every new one is not
  // (the filter's false positives are about 1 in 10^6 at this size).
  EXPECT_GE(after.read - before.read, 300u);
  EXPECT_GE(after.filtered - before.filtered, 295u);
  IndexReport(*l, "later");
  EXPECT_TRUE(Indexed(b, "later"));
  // Another service's report of the same id is another report.
  ReportIndexRow r;
  bool other = true;
  ASSERT_TRUE(b.LookupReport("other-svc", "later", &r, &other).ok());
  EXPECT_FALSE(other);
}

// A writer that stops cleanly leaves its filter of indexed ids for the next
// start, which then answers from it at once instead of scanning the index.
// The next open takes it out whatever it finds; one that no longer matches
// the ledger (another writer indexed reports since) is not used.
TEST_F(LedgerTest, ACleanStopLeavesTheFilterOfIndexedIdsForTheNextStart) {
  // SQLite: a file beside the ledger; PostgreSQL: a row of meta.
  const bool pg = carewatch::testing::OnPostgres();
  const std::string path = pg ? "" : url_.substr(std::string("sqlite://").size()) + ".filter";
  auto saved = [&] {
    if (!pg) return std::filesystem::exists(path);
    return carewatch::testing::LedgerQuery(
               url_, "SELECT count(*) FROM meta WHERE key = 'report_filter'") ==
           std::vector<std::string>{"1"};
  };
  auto wait_ready = [](LedgerBackend& b) {
    for (int i = 0; i < 1000 && !b.lookup_stats().filter_ready; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return b.lookup_stats().filter_ready;
  };
  {
    // Below 65,536 ids a scan costs less than the saved filter: none saved.
    auto l = OpenLedger();
    for (int i = 0; i < 50; ++i) IndexReport(*l, "old-" + std::to_string(i));
    ASSERT_TRUE(wait_ready(l->backend()));
    EXPECT_FALSE(l->backend().lookup_stats().filter_restored) << "a new ledger has none saved";
  }
  EXPECT_FALSE(saved());
  {
    auto l = OpenLedger();
    EXPECT_FALSE(l->backend().lookup_stats().filter_restored);
    BatchExtras extras;
    for (int i = 0; i < 66000; ++i)
      extras.reports.push_back({"svc", "bulk-" + std::to_string(i), "d", 0, 1767607200, "v1"});
    std::vector<v1::LedgerEvent> none;
    ASSERT_TRUE(l->Enqueue(&none, std::move(extras))->Wait().ok());
    ASSERT_TRUE(wait_ready(l->backend()));
  }
  EXPECT_TRUE(saved());
  if (!pg) {
    EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  {
    auto l = OpenLedger();
    LedgerBackend& b = l->backend();
    EXPECT_FALSE(saved()) << "taken away at once";
    ASSERT_TRUE(b.lookup_stats().filter_restored);
    ASSERT_TRUE(b.lookup_stats().filter_ready) << "complete from the start, with no scan";
    for (int i = 0; i < 50; ++i) EXPECT_TRUE(Indexed(b, "old-" + std::to_string(i))) << i;
    for (int i = 0; i < 66000; i += 997) EXPECT_TRUE(Indexed(b, "bulk-" + std::to_string(i))) << i;
    const LedgerBackend::LookupStats before = b.lookup_stats();
    for (int i = 0; i < 50; ++i) EXPECT_FALSE(Indexed(b, "new-" + std::to_string(i)));
    EXPECT_GE(b.lookup_stats().filtered - before.filtered, 48u) << "answered by the filter";
    IndexReport(*l, "during");
  }
  {
    // Saved again, with what was indexed since.
    auto l = OpenLedger();
    ASSERT_TRUE(l->backend().lookup_stats().filter_restored);
    EXPECT_TRUE(Indexed(l->backend(), "during"));
    EXPECT_TRUE(Indexed(l->backend(), "old-7"));
  }
  // A writer that does not know the saved filter (an older carewatch)
  // indexes a report: the filter left is stale, and the next start scans.
  EXPECT_TRUE(saved());
  Sql("INSERT INTO report_index (service_id, report_id, digest, seq, recorded_at, "
      "ruleset_version) VALUES ('svc', 'behind', 'd', 0, 1767607200, 'v1')");
  if (!pg) {
    Sql("INSERT INTO report_index_expiry (recorded_at, service_id, report_id) VALUES "
        "(1767607200, 'svc', 'behind')");
  }
  Sql("UPDATE counters SET value = value + 1 WHERE name = 'reports'");
  auto l = OpenLedger();
  EXPECT_FALSE(l->backend().lookup_stats().filter_restored);
  EXPECT_FALSE(saved());
  ASSERT_TRUE(wait_ready(l->backend()));
  EXPECT_TRUE(Indexed(l->backend(), "behind"));
  EXPECT_TRUE(Indexed(l->backend(), "during"));
  // Nor one that others may write (not as a clean stop leaves it).
  if (!pg) {
    l.reset();
    ASSERT_TRUE(saved());
    std::filesystem::permissions(path, std::filesystem::perms::group_write,
                                 std::filesystem::perm_options::add);
    l = OpenLedger();
    EXPECT_FALSE(l->backend().lookup_stats().filter_restored);
    EXPECT_FALSE(saved());
    ASSERT_TRUE(wait_ready(l->backend()));
  }
  // A saved filter cut short (its stamp still right) is not used either.
  l.reset();
  ASSERT_TRUE(saved());
  if (pg) {
    Sql("UPDATE meta SET value = substring(value from 1 for length(value) - 1) WHERE key = "
        "'report_filter'");
  } else {
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  }
  l = OpenLedger();
  EXPECT_FALSE(l->backend().lookup_stats().filter_restored);
  EXPECT_FALSE(saved());
  ASSERT_TRUE(wait_ready(l->backend()));
  EXPECT_TRUE(Indexed(l->backend(), "behind"));
}

// Ledgers written when tree nodes were keyed by (level, idx) are read as
// they are when opened read-only, and carried forward to nodes keyed by
// where they end on the first writable open; every proof verifies before
// and after, and the ledger grows on.
TEST_F(LedgerTest, TreeNodesKeyedByLevelAreCarriedForward) {
  if (url_.rfind("sqlite", 0) != 0) GTEST_SKIP() << "the SQLite ledger's own schema";
  std::map<std::pair<int, uint64_t>, Hash> nodes;
  auto read_nodes = [&](LedgerBackend& b) {
    std::map<std::pair<int, uint64_t>, Hash> out;
    const NodeReader read = StoredNodeReader(
        [&b](int level, uint64_t idx, Hash* h) { return b.ReadNode(level, idx, h); });
    for (int level = 1; level <= 5; ++level) {
      for (uint64_t idx = 0; ((idx + 1) << level) <= 37; ++idx) {
        Hash h;
        EXPECT_TRUE(read(level, idx, &h).ok()) << level << " " << idx;
        out[{level, idx}] = h;
      }
    }
    return out;
  };
  {
    auto l = OpenLedger(4);
    AppendEvents(*l, 37);
    ASSERT_TRUE(l->Flush().ok());
    nodes = read_nodes(l->backend());
  }
  ASSERT_EQ(nodes.size(), 18u + 9 + 4 + 2 + 1);
  Sql("CREATE TABLE old_nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
      "PRIMARY KEY (level, idx)) WITHOUT ROWID; "
      "INSERT INTO old_nodes SELECT level, (pos >> level) - 1, hash FROM tree_nodes; "
      "DROP TABLE tree_nodes; ALTER TABLE old_nodes RENAME TO tree_nodes;");
  EXPECT_EQ(read_nodes(*OpenReadOnly()), nodes);
  auto l = OpenLedger(4);
  ASSERT_TRUE(l);
  EXPECT_EQ(read_nodes(l->backend()), nodes);
  AppendEvents(*l, 11);
  ASSERT_TRUE(l->Flush().ok());
  v1::Checkpoint cp;
  ASSERT_TRUE(l->LatestCheckpoint(&cp).ok());
  ASSERT_EQ(cp.tree_size(), 48u);
  ExpectEveryEventProvable(*l, cp);
  l.reset();
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.message;
}

// The bytes hashed into leaves and report digests are protobuf's own
// deterministic serialisation, written through a stream (maps in key
// order), for messages with maps, nesting, repeated fields and none: a
// change here would change every digest.
TEST(Ledger, SerializeDeterministicIsProtobufsDeterministicSerialisation) {
  auto streamed = [](const google::protobuf::Message& m) {
    std::string out;
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    EXPECT_TRUE(m.SerializeToCodedStream(&coded));
    coded.Trim();
    return out;
  };
  v1::ContentReport report;
  EXPECT_EQ(SerializeDeterministic(report), streamed(report));
  EXPECT_EQ(SerializeDeterministic(report), "");
  report.set_report_id("r-1");
  report.set_service_id("svc");
  report.set_text(std::string(5000, 'w'));
  report.add_urls("https://example.test/a");
  report.add_urls("https://example.test/b");
  report.mutable_received_at()->set_seconds(1767607200);
  for (int i = 31; i >= 0; --i)
    (*report.mutable_attributes())["key" + std::to_string(i)] = std::string(i, 'v');
  const std::string bytes = SerializeDeterministic(report);
  EXPECT_EQ(bytes, streamed(report));
  v1::ContentReport back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_EQ(back.attributes().size(), 32u);
  // The same map built in another order serialises alike.
  v1::ContentReport other = report;
  other.mutable_attributes()->clear();
  for (int i = 0; i < 32; ++i)
    (*other.mutable_attributes())["key" + std::to_string(i)] = std::string(i, 'v');
  EXPECT_EQ(SerializeDeterministic(other), bytes);
  v1::LedgerEvent e;
  e.set_seq(1u << 20);
  e.set_type(v1::REPORT_FLAGGED);
  e.mutable_report_flagged()->set_report_id("r-1");
  e.mutable_report_flagged()->add_rule_ids("rule.a");
  e.mutable_report_flagged()->add_rule_ids("rule.b");
  EXPECT_EQ(SerializeDeterministic(e), streamed(e));
}

TEST(Ledger, APayloadFromItsBodyIsTheEventsSerialisation) {
  std::vector<v1::LedgerEvent> events(4);
  events[0].set_type(v1::REPORT_FLAGGED);
  events[0].mutable_time()->set_seconds(1767607200);
  events[0].mutable_recorded_at()->set_seconds(1767607201);
  events[0].set_format(2);
  events[0].mutable_report_flagged()->set_report_id("r-1");
  events[0].mutable_report_flagged()->set_service_id("example-social");
  events[1].set_type(v1::ACTION_RECORDED);
  events[1].mutable_action_recorded()->add_obligation_ids("ob-1");
  events[1].mutable_action_recorded()->set_action("remove_content");
  events[2].set_type(v1::STATS_ROLLUP);
  events[2].mutable_stats_rollup()->add_counts()->set_reports(7);
  // events[3] stays empty: an event with nothing but its seq.
  for (uint64_t seq : {uint64_t{1}, uint64_t{127}, uint64_t{128}, uint64_t{300}, uint64_t{1} << 35,
                       ~uint64_t{0}}) {
    for (v1::LedgerEvent e : events) {
      e.set_seq(seq);
      const std::string whole = SerializeDeterministic(e);
      e.clear_seq();
      EXPECT_EQ(PayloadWithSeq(seq, SerializeDeterministic(e)), whole)
          << "seq " << seq << ", type " << e.type();
    }
  }
}

TEST_F(LedgerTest, AppendedEventsAreStoredAsTheirSerialisationWithTheirSeq) {
  auto l = OpenLedger(4);
  AppendEvents(*l, 3);
  std::vector<v1::LedgerEvent> two(2);
  two[0].set_type(v1::ACTION_RECORDED);
  two[0].mutable_action_recorded()->set_report_id("r-a");
  two[1].set_type(v1::ACTION_RECORDED);
  two[1].mutable_action_recorded()->set_report_id("r-b");
  ASSERT_TRUE(l->Append(&two).ok());
  EXPECT_EQ(two[0].seq(), 4u);  // the caller's events get their seqs
  EXPECT_EQ(two[1].seq(), 5u);
  std::vector<StoredEvent> rows;
  ASSERT_TRUE(l->backend().ReadEvents(1, 10, &rows).ok());
  ASSERT_EQ(rows.size(), 5u);
  for (const StoredEvent& row : rows) {
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(row.payload));
    EXPECT_EQ(e.seq(), row.seq);
    EXPECT_EQ(SerializeDeterministic(e), row.payload);
    EXPECT_EQ(LeafHash(row.payload), row.leaf_hash);
  }
  EXPECT_EQ(rows[4].payload, SerializeDeterministic(two[1]));
}

TEST_F(LedgerTest, SubtreesBelowTheStoredLevelAreComputedFromTheLeaves) {
  auto l = OpenLedger(4);
  AppendEvents(*l, 37);
  ASSERT_TRUE(l->Flush().ok());
  // Only the subtrees of 8 leaves and more are rows: 4 + 2 + 1 for 37 events.
  EXPECT_EQ(carewatch::testing::LedgerQuery(url_, "SELECT COUNT(*) FROM tree_nodes WHERE level < " +
                                                      std::to_string(kLowestStoredLevel)),
            std::vector<std::string>{"0"});
  EXPECT_EQ(carewatch::testing::LedgerQuery(url_, "SELECT COUNT(*) FROM tree_nodes"),
            std::vector<std::string>{"7"});
  // Every proof still holds: the lower levels come from the leaves.
  v1::Checkpoint cp;
  ASSERT_TRUE(l->LatestCheckpoint(&cp).ok());
  ASSERT_EQ(cp.tree_size(), 37u);
  ExpectEveryEventProvable(*l, cp);
  for (uint64_t size1 = 1; size1 < 37; ++size1) {
    std::vector<Hash> proof;
    Hash root1;
    ASSERT_TRUE(l->RootAt(size1, &root1).ok());
    ASSERT_TRUE(l->ConsistencyProof(size1, 37, &proof).ok());
    EXPECT_TRUE(VerifyConsistency(size1, 37, root1, cp.root_hash(), proof)) << size1;
  }
  // A restart loads the tree's edge (37 = 32 + 4 + 1: a level-2 subtree
  // from its leaves) and goes on with the same tree.
  l.reset();
  l = OpenLedger(4);
  AppendEvents(*l, 3);
  ASSERT_TRUE(l->Flush().ok());
  l.reset();
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_F(LedgerTest, AlteredCheckpointNoteIsNamed) {
  {
    auto l = OpenLedger(4);
    AppendEvents(*l, 10);
  }
  // The note claims another tree size; its signature no longer verifies.
  std::vector<v1::Checkpoint> cps;
  ASSERT_TRUE(OpenReadOnly()->ReadCheckpoints(&cps).ok());
  std::string note;
  for (const auto& c : cps) {
    if (c.tree_size() == 8) note = c.note();
  }
  size_t at = note.find("\n8\n");
  ASSERT_NE(at, std::string::npos) << note;
  note[at + 1] = '9';
  Sql("UPDATE checkpoints SET note = ?1 WHERE tree_size = 8", {carewatch::testing::SqlBytes(note)});
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 8u) << r.message;
  EXPECT_NE(r.message.find("does not verify"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, EventRewrittenWithItsLeafHashFailsTheCheckpoint) {
  {
    auto l = OpenLedger(4);
    AppendEvents(*l, 8);
  }
  // A careful forger recomputes the leaf hash too; the signed root still differs.
  v1::LedgerEvent e;
  ASSERT_TRUE(e.ParseFromString(ReadPayload(6)));
  e.mutable_action_recorded()->set_action("reviewed_not_illegal");
  std::string payload = e.SerializeAsString();
  RewriteEvent(6, payload, LeafHash(payload));
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("events 5..8"), std::string::npos) << r.message;
}

TEST_F(LedgerTest, AnotherDeploymentsKeyIsRefused) {
  {
    auto l = OpenLedger();
    AppendEvents(*l, 2);
  }
  fs::rename(dir_ + "/ledger.key", dir_ + "/ledger.key.orig");
  LedgerOptions o = Options();
  std::unique_ptr<Ledger> l;
  Status s = Ledger::Open(o, &l);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("another deployment"), std::string::npos) << s.message();
  // And verify with that other key's public half fails too.
  std::unique_ptr<SigningKey> other;
  ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/ledger.key", &other).ok());
  VerifyReport r = Verify(other->PublicPem());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("another deployment"), std::string::npos) << r.message;
}

// A key rotation: the checkpoint covering KEY_ROTATED is signed by both
// keys, later ones by the new key alone; the ledger then opens with the new
// key only, and the whole log verifies against either key (the chain of
// handovers), but not against a key that never signed it.
TEST_F(LedgerTest, ARotatedKeySignsFromItsHandoverAndEitherKeyVerifiesTheLog) {
  std::string old_vkey, new_vkey;
  {
    auto l = OpenLedger();
    AppendEvents(*l, 5);
    old_vkey = l->VerifierKey();
    std::unique_ptr<SigningKey> same;
    ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/ledger.key", &same).ok());
    EXPECT_FALSE(l->RotateKey(std::move(same), "").ok()) << "to the key it has";
    std::unique_ptr<SigningKey> bad_reason;
    ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/bad.key", &bad_reason).ok());
    Status refused = l->RotateKey(std::move(bad_reason), "two\nlines");
    EXPECT_NE(refused.message().find("reason: not one line"), std::string::npos)
        << refused.message();
    EXPECT_EQ(l->size(), 5u) << "nothing written";
    std::unique_ptr<SigningKey> next;
    ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/next.key", &next).ok());
    new_vkey = VerifierKeyString(l->origin(), next->PublicRaw());
    const uint64_t before = l->size();
    ASSERT_TRUE(l->RotateKey(std::move(next), "scheduled").ok());
    EXPECT_EQ(l->VerifierKey(), new_vkey);
    v1::Checkpoint handover;
    ASSERT_TRUE(l->LatestCheckpoint(&handover).ok());
    EXPECT_EQ(handover.tree_size(), before + 1) << "signed as soon as the event is written";
    std::vector<StoredEvent> rows;
    ASSERT_TRUE(l->backend().ReadEvents(before + 1, 1, &rows).ok());
    ASSERT_EQ(rows.size(), 1u);
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(rows[0].payload));
    EXPECT_EQ(e.type(), v1::KEY_ROTATED);
    EXPECT_EQ(e.key_rotated().previous_verifier_key(), old_vkey);
    EXPECT_EQ(e.key_rotated().verifier_key(), new_vkey);
    EXPECT_EQ(e.key_rotated().reason(), "scheduled");
    std::unique_ptr<TrustedKey> old_key, new_key;
    ASSERT_TRUE(TrustedKey::Load(old_vkey, &old_key).ok());
    ASSERT_TRUE(TrustedKey::Load(new_vkey, &new_key).ok());
    EXPECT_TRUE(old_key->VerifyCheckpoint(handover).ok());
    EXPECT_TRUE(new_key->VerifyCheckpoint(handover).ok());
    AppendEvents(*l, 5);
    ASSERT_TRUE(l->Flush().ok());
    v1::Checkpoint after;
    ASSERT_TRUE(l->LatestCheckpoint(&after).ok());
    EXPECT_GT(after.tree_size(), handover.tree_size());
    EXPECT_TRUE(new_key->VerifyCheckpoint(after).ok());
    EXPECT_FALSE(old_key->VerifyCheckpoint(after).ok()) << "the old key signs no more";
    ExpectEveryEventProvable(*l, after);
  }
  // The old key no longer opens the ledger, and says where the log went.
  std::unique_ptr<Ledger> l;
  Status s = Ledger::Open(Options(), &l);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rotated out at event 6 (KEY_ROTATED) to " + new_vkey),
            std::string::npos)
      << s.message();
  LedgerOptions o = Options();
  o.signing_key_path = dir_ + "/next.key";
  s = Ledger::Open(o, &l);
  ASSERT_TRUE(s.ok()) << s.message();
  AppendEvents(*l, 1);
  l.reset();

  for (const std::string& trusted : {old_vkey, new_vkey, old_vkey + "," + new_vkey}) {
    VerifyReport r = Verify(trusted);
    EXPECT_TRUE(r.ok) << trusted << ": " << r.message;
    EXPECT_TRUE(r.authenticated);
    EXPECT_NE(r.message.find("(1 key rotation)"), std::string::npos) << r.message;
  }
  EXPECT_TRUE(Verify().ok) << "with the keys the log names";
  std::unique_ptr<SigningKey> stranger;
  ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/stranger.key", &stranger).ok());
  VerifyReport r = Verify(stranger->PublicPem());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("none of the 2 keys that signed this ledger is trusted"),
            std::string::npos)
      << r.message;
  std::unique_ptr<SigningKey> old_signing, new_signing;
  ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/ledger.key", &old_signing).ok());
  ASSERT_TRUE(SigningKey::LoadOrCreate(dir_ + "/next.key", &new_signing).ok());
  auto record_key = [&](const SigningKey& key) {
    Sql("UPDATE meta SET value = ?1 WHERE key = 'public_key'",
        {carewatch::testing::SqlBytes(key.PublicPem())});
  };
  // The stored key put back to the old one is not where the log went.
  record_key(*old_signing);
  r = Verify(old_vkey);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("is not the one its last KEY_ROTATED event (seq 6) handed over to"),
            std::string::npos)
      << r.message;
  record_key(*new_signing);
  ASSERT_TRUE(Verify(new_vkey).ok);
  // A handover checkpoint the old key did not sign breaks the chain, for
  // whoever trusts either key.
  std::vector<v1::Checkpoint> cps;
  ASSERT_TRUE(OpenReadOnly()->ReadCheckpoints(&cps).ok());
  const v1::Checkpoint* handover = nullptr;
  for (const auto& c : cps) {
    if (c.tree_size() == 6) handover = &c;
  }
  ASSERT_NE(handover, nullptr);
  const std::string note = handover->note();
  const std::string body = note.substr(0, note.rfind("\n\n") + 1);
  std::string new_only;
  ASSERT_TRUE(SignNote(body, body.substr(0, body.find('\n')), *new_signing, &new_only).ok());
  Sql("UPDATE checkpoints SET note = ?1 WHERE tree_size = 6",
      {carewatch::testing::SqlBytes(new_only)});
  for (const std::string& trusted : {old_vkey, new_vkey}) {
    r = Verify(trusted);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, 6u) << r.message;
    EXPECT_NE(r.message.find("not signed by the key it hands over from"), std::string::npos)
        << r.message;
  }
}

// Only RotateKey writes KEY_ROTATED (it holds the key handed over to): one
// appended otherwise is refused, and the ledger stops rather than leave a
// gap where its seq was.
TEST_F(LedgerTest, AKeyRotatedEventAppendedOtherwiseIsRefusedAndLeavesNoGap) {
  auto l = OpenLedger();
  AppendEvents(*l, 2);
  std::vector<v1::LedgerEvent> events(1);
  events[0].set_type(v1::KEY_ROTATED);
  events[0].mutable_time()->set_seconds(1767607200);
  events[0].mutable_key_rotated()->set_verifier_key("x");
  Status s = l->Append(&events);
  EXPECT_NE(s.message().find("a KEY_ROTATED event is written only by RotateKey"), std::string::npos)
      << s.message();
  std::vector<v1::LedgerEvent> more(1);
  more[0].set_type(v1::ACTION_RECORDED);
  more[0].mutable_time()->set_seconds(1767607200);
  EXPECT_FALSE(l->Append(&more).ok()) << "nothing after it";
  l.reset();
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.events, 2u);
}

TEST_F(LedgerTest, ASecondWriterIsRefusedUntilTheFirstCloses) {
  auto first = OpenLedger();
  AppendEvents(*first, 2);
  std::unique_ptr<Ledger> second;
  Status s = Ledger::Open(Options(), &second);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.message();
  EXPECT_NE(s.message().find("in use by another"), std::string::npos) << s.message();
  first.reset();
  ASSERT_TRUE(Ledger::Open(Options(), &second).ok()) << "the lock goes with the first writer";
  EXPECT_EQ(second->size(), 2u);
}

TEST_F(LedgerTest, AQueuedCommandLeavesTheQueueWithTheBatchThatRecordsIt) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  auto l = OpenLedger();
  std::unique_ptr<CommandQueue> q;
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &q).ok());
  int64_t a = 0, b = 0, c = 0;
  std::string digest;
  ASSERT_TRUE(q->Push("svc", "r1", "d1", "one", 100, &a, &digest).ok());
  EXPECT_EQ(digest, "d1");
  // The same report again (a retry to another replica): not queued twice;
  // its queued command and digest are returned.
  ASSERT_TRUE(q->Push("svc", "r1", "d2", "other", 101, &b, &digest).ok());
  EXPECT_EQ(b, a);
  EXPECT_EQ(digest, "d1") << "the caller compares digests: other content is refused";
  // Actions are not unique per report.
  ASSERT_TRUE(q->Push("svc", "", "", "act", 102, &b, nullptr).ok());
  ASSERT_TRUE(q->Push("svc", "", "", "act", 103, &c, nullptr).ok());
  EXPECT_NE(b, c);
  std::vector<QueuedRow> rows;
  ASSERT_TRUE(q->Pull(10, &rows).ok());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].id, a) << "queue order";
  EXPECT_EQ(rows[0].body, "one");
  // A batch that fails leaves the command queued; the one that commits
  // takes it out.
  Sql("INSERT INTO events (seq, type, time, payload, leaf_hash) VALUES (2, 4, 0, ?1, ?2)",
      {carewatch::testing::SqlBytes("x"), carewatch::testing::SqlBytes(std::string(32, 'h'))});
  std::vector<v1::LedgerEvent> events(2);
  for (auto& e : events) {
    e.set_type(v1::ACTION_RECORDED);
    e.mutable_time()->set_seconds(1767607300);
  }
  BatchExtras x;
  x.dequeue = {a};
  EXPECT_FALSE(l->Enqueue(&events, x)->Wait().ok());
  int64_t depth = 0;
  ASSERT_TRUE(q->Depth(&depth).ok());
  EXPECT_EQ(depth, 3);
  l.reset();
  Sql("DELETE FROM events WHERE seq = 2");
  l = OpenLedger();
  events.assign(1, events[0]);
  ASSERT_TRUE(l->Enqueue(&events, x)->Wait().ok());
  std::vector<int64_t> still;
  ASSERT_TRUE(q->Queued({a, b, c}, &still).ok());
  EXPECT_EQ(still, (std::vector<int64_t>{b, c}));
  // Answers: stored once, read by id, pruned by age; answering removes the
  // command (idempotent).
  ASSERT_TRUE(q->Answer({{a, "A"}, {b, "B"}}, 1000, 0).ok());
  ASSERT_TRUE(q->Answer({{b, "B2"}}, 1001, 0).ok());
  std::vector<QueueAnswer> got;
  ASSERT_TRUE(q->Answers({a, b, c}, &got).ok());
  ASSERT_EQ(got.size(), 2u);
  std::map<int64_t, std::string> by_id;
  for (auto& g : got) by_id[g.id] = g.body;
  EXPECT_EQ(by_id[a], "A");
  EXPECT_EQ(by_id[b], "B") << "the first answer stands";
  ASSERT_TRUE(q->Depth(&depth).ok());
  EXPECT_EQ(depth, 1);
  ASSERT_TRUE(q->Answer({{c, "C"}}, 2000, 1500).ok());
  got.clear();
  ASSERT_TRUE(q->Answers({a, b, c}, &got).ok());
  ASSERT_EQ(got.size(), 1u) << "answers before the prune time are gone";
  EXPECT_EQ(got[0].id, c);
  // The queue is not part of the log: it verifies.
  EXPECT_TRUE(VerifyLedger(l->backend(), "").ok);
}

// Pushes and answers are announced (LISTEN/NOTIFY) to a waiter that waits,
// so that the writer's sequencer and the queueing replicas need not poll the
// tables; to no one while no one waits. Separate handles: a replica's and the
// writer's, as two processes have.
TEST_F(LedgerTest, TheQueueAnnouncesPushesAndAnswersToThoseWaiting) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  auto l = OpenLedger();
  std::unique_ptr<CommandQueue> replica, other_replica, writer;
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &replica).ok());
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &other_replica).ok());
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &writer).ok());
  using Event = CommandQueue::Event;
  bool happened = false;
  int64_t id = 0, id2 = 0;
  // No one waits: a push is not announced, and a waiter that starts after
  // it finds nothing announced (it reads the table instead).
  ASSERT_TRUE(replica->Push("svc", "r0", "d0", "zero", 99, &id, nullptr).ok());
  ASSERT_TRUE(writer->SetWaiting(Event::kQueued, true).ok());
  ASSERT_TRUE(writer->WaitFor(Event::kQueued, 50, -1, &happened).ok());
  EXPECT_FALSE(happened);
  // Waiting: each push is announced. Without the announcement the wait
  // would time out (30 s), not return.
  ASSERT_TRUE(replica->Push("svc", "r1", "d1", "one", 100, &id, nullptr).ok());
  ASSERT_TRUE(writer->WaitFor(Event::kQueued, 30 * 1000, -1, &happened).ok());
  EXPECT_TRUE(happened);
  ASSERT_TRUE(writer->WaitFor(Event::kQueued, 0, -1, &happened).ok());
  EXPECT_FALSE(happened) << "one announcement, taken by the wait it ended";
  // Answers, to every replica that waits.
  ASSERT_TRUE(replica->SetWaiting(Event::kAnswered, true).ok());
  ASSERT_TRUE(other_replica->SetWaiting(Event::kAnswered, true).ok());
  ASSERT_TRUE(writer->Answer({{id, "A"}}, 1000, 0).ok());
  ASSERT_TRUE(replica->WaitFor(Event::kAnswered, 30 * 1000, -1, &happened).ok());
  EXPECT_TRUE(happened);
  ASSERT_TRUE(other_replica->WaitFor(Event::kAnswered, 30 * 1000, -1, &happened).ok());
  EXPECT_TRUE(happened);
  // Announcements of one kind do not end a wait for the other.
  ASSERT_TRUE(writer->WaitFor(Event::kQueued, 50, -1, &happened).ok());
  EXPECT_FALSE(happened);
  // A writer that stops waiting is told nothing more (a busy sequencer
  // reads the table anyway).
  ASSERT_TRUE(writer->SetWaiting(Event::kQueued, false).ok());
  ASSERT_TRUE(replica->Push("svc", "r2", "d2", "two", 101, &id2, nullptr).ok());
  ASSERT_TRUE(writer->WaitFor(Event::kQueued, 50, -1, &happened).ok());
  EXPECT_FALSE(happened);
  // Answers go on being announced while one replica still waits.
  ASSERT_TRUE(other_replica->SetWaiting(Event::kAnswered, false).ok());
  ASSERT_TRUE(writer->Answer({{id2, "B"}}, 1001, 0).ok());
  ASSERT_TRUE(replica->WaitFor(Event::kAnswered, 30 * 1000, -1, &happened).ok());
  EXPECT_TRUE(happened);
  // The caller's descriptor ends a wait early (a new waiter, or stopping).
  ASSERT_TRUE(writer->SetWaiting(Event::kQueued, true).ok());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  ASSERT_TRUE(writer->WaitFor(Event::kQueued, 30 * 1000, fds[0], &happened).ok());
  EXPECT_FALSE(happened);
  ::close(fds[0]);
  ::close(fds[1]);
}

// What makes the announcements complete: a push still in flight when the
// sequencer starts waiting is not announced to it (it took the push side of
// the wait lock), so SetWaiting returns only once that push has committed,
// and the read after it finds the command.
TEST_F(LedgerTest, AWaiterStartsWaitingOnlyOnceUnannouncedPushesHaveCommitted) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  auto l = OpenLedger();
  std::unique_ptr<CommandQueue> writer;
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &writer).ok());
  PGconn* push = PQconnectdb(url_.c_str());
  ASSERT_EQ(PQstatus(push), CONNECTION_OK) << PQerrorMessage(push);
  auto exec = [&](const char* sql) {
    PGresult* r = PQexec(push, sql);
    const ExecStatusType st = PQresultStatus(r);
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        << sql << ": " << PQerrorMessage(push);
    std::string first = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    return first;
  };
  // As a replica's push does while no one waits: the lock's push side,
  // the row, and no announcement.
  exec("BEGIN");
  EXPECT_EQ(exec("SELECT pg_try_advisory_xact_lock_shared(1667330662, hashtext(current_schema()))"),
            "t");
  exec(
      "INSERT INTO unsequenced (service_id, report_key, digest, body, accepted_at) VALUES "
      "('svc', 'in-flight', 'd', 'b', 1)");
  std::atomic<bool> returned{false};
  std::thread starts([&] {
    EXPECT_TRUE(writer->SetWaiting(CommandQueue::Event::kQueued, true).ok());
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(returned) << "waiting began while an unannounced push could still commit";
  exec("COMMIT");
  starts.join();
  std::vector<QueuedRow> rows;
  ASSERT_TRUE(writer->Pull(10, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].body, "b");
  PQfinish(push);
}

// A wait lock held by a waiter that is going away (a writer whose session
// has not ended yet) does not hold up a new sequencer: joining the waiters
// gives up after the listener's lock timeout, so the caller polls, and it
// joins once the old session has gone. Without the timeout SetWaiting would
// wait for as long as the old session lives (here: the test's timeout).
TEST_F(LedgerTest, AWaitLockHeldByASessionGoingAwayIsGivenUpOn) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  auto l = OpenLedger();
  std::unique_ptr<CommandQueue> writer, replica;
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &writer).ok());
  ASSERT_TRUE(OpenCommandQueue(url_, 1000, &replica).ok());
  PGconn* old_waiter = PQconnectdb(url_.c_str());
  ASSERT_EQ(PQstatus(old_waiter), CONNECTION_OK) << PQerrorMessage(old_waiter);
  PGresult* r =
      PQexec(old_waiter, "SELECT pg_advisory_lock(1667330662, hashtext(current_schema()))");
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQerrorMessage(old_waiter);
  PQclear(r);
  std::promise<Status> joined;
  std::future<Status> result = joined.get_future();
  std::thread starts(
      [&] { joined.set_value(writer->SetWaiting(CommandQueue::Event::kQueued, true)); });
  const bool returned = result.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  if (!returned) PQfinish(old_waiter);  // let the thread go, then fail
  starts.join();
  ASSERT_TRUE(returned) << "joining the waiters waited on a lock held elsewhere";
  EXPECT_FALSE(result.get().ok()) << "the lock is held: the caller must poll instead";
  // Polling finds what is pushed meanwhile.
  int64_t id = 0;
  ASSERT_TRUE(replica->Push("svc", "r1", "d1", "one", 100, &id, nullptr).ok());
  std::vector<QueuedRow> rows;
  ASSERT_TRUE(writer->Pull(10, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  // The old session gone, the next try joins, and pushes are announced again.
  PQfinish(old_waiter);
  ASSERT_TRUE(writer->SetWaiting(CommandQueue::Event::kQueued, true).ok());
  ASSERT_TRUE(replica->Push("svc", "r2", "d2", "two", 101, &id, nullptr).ok());
  bool happened = false;
  ASSERT_TRUE(writer->WaitFor(CommandQueue::Event::kQueued, 30 * 1000, -1, &happened).ok());
  EXPECT_TRUE(happened);
}

TEST_F(LedgerTest, ABatchThatFailsHalfWayLeavesNothing) {
  auto l = OpenLedger();
  AppendEvents(*l, 3);
  // A row in the way of the second event of the next batch.
  Sql("INSERT INTO events (seq, type, time, payload, leaf_hash) VALUES (5, 4, 0, ?1, ?2)",
      {carewatch::testing::SqlBytes("x"), carewatch::testing::SqlBytes(std::string(32, 'h'))});
  std::vector<v1::LedgerEvent> events(2);
  for (auto& e : events) {
    e.set_type(v1::ACTION_RECORDED);
    e.mutable_time()->set_seconds(1767607300);
    e.mutable_action_recorded()->set_report_id("blocked");
  }
  EXPECT_FALSE(l->Append(&events).ok());
  EXPECT_EQ(carewatch::testing::LedgerQuery(url_, "SELECT COUNT(*) FROM events WHERE seq = 4"),
            std::vector<std::string>{"0"})
      << "the batch's first event was rolled back with the rest";
  EXPECT_EQ(l->size(), 3u);
}

TEST_F(LedgerTest, ADatabaseServerGoneMidWriteLosesNothing) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the server goes away";
  const char* pg_dir = std::getenv("CAREWATCH_TEST_PG_DIR");
  ASSERT_NE(pg_dir, nullptr) << "tests/with_pg.sh sets CAREWATCH_TEST_PG_DIR";
  const std::string server = std::string(CAREWATCH_SOURCE_DIR) + "/scripts/pg-test-server.sh ";
  auto l = OpenLedger(3);
  AppendEvents(*l, 5);
  for (int i = 0; i < 500 && !l->backend().lookup_stats().filter_ready; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(l->backend().lookup_stats().filter_ready) << "the filter of indexed ids answers";
  ASSERT_EQ(std::system((server + "stop " + pg_dir).c_str()), 0);
  std::atomic<bool> appended{false};
  Status append_status;
  std::thread writer([&] {
    std::vector<v1::LedgerEvent> events(2);
    for (auto& e : events) {
      e.set_type(v1::ACTION_RECORDED);
      e.mutable_time()->set_seconds(1767607300);
      e.mutable_action_recorded()->set_report_id("during");
    }
    append_status = l->Append(&events);
    appended = true;
  });
  Status degraded;
  for (int i = 0; i < 500 && degraded.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    degraded = l->health();
  }
  EXPECT_FALSE(degraded.ok()) << "health() says the ledger cannot write while the server is down";
  EXPECT_FALSE(appended.load()) << "nothing is acknowledged while the server is down";
  ASSERT_EQ(std::system((server + "restart " + pg_dir).c_str()), 0);
  writer.join();
  EXPECT_TRUE(append_status.ok()) << "written once the server is back: " << append_status.message();
  EXPECT_TRUE(l->health().ok()) << l->health().message();
  // The writer lock was lost with the session and taken again: another
  // writer may have indexed reports meanwhile, so the filter of indexed
  // ids no longer answers, and every lookup reads the index.
  EXPECT_FALSE(l->backend().lookup_stats().filter_ready);
  // Each read session the restart ended is replaced on its first use:
  // lookups do not fail for it (Indexed expects each to succeed).
  for (int i = 0; i < 8; ++i) EXPECT_FALSE(Indexed(l->backend(), "new-" + std::to_string(i)));
  AppendEvents(*l, 1);
  EXPECT_EQ(l->size(), 8u);
  l.reset();
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.events, 8u) << "every acknowledged event exactly once";
}

TEST_F(LedgerTest, CorruptOrForeignFilesGetAPreciseError) {
  std::unique_ptr<LedgerBackend> b;
  if (carewatch::testing::OnPostgres()) {
    // A schema holding someone else's table of that name.
    Sql("CREATE TABLE events (x INTEGER)");
    Status s = OpenBackend(url_, true, &b);
    EXPECT_EQ(s.code(), Status::Code::kDataLoss) << s.message();
    EXPECT_NE(s.message().find("not a carewatch ledger"), std::string::npos) << s.message();
    std::unique_ptr<Ledger> l;
    s = Ledger::Open(Options(), &l);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("events"), std::string::npos) << s.message();
    // No server there; the password is never repeated.
    s = OpenBackend("postgresql://carewatch:s3cret-pw@127.0.0.1:1/x?connect_timeout=2", false, &b);
    EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.message();
    EXPECT_NE(s.message().find("cannot reach"), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find("s3cret-pw"), std::string::npos) << s.message();
    return;
  }
  std::string path = dir_ + "/ledger.db";
  { std::ofstream(path, std::ios::binary) << std::string(4096, '\x42'); }
  Status s = OpenBackend(url_, true, &b);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(s.message().empty());
  LedgerOptions o = Options();
  std::unique_ptr<Ledger> l;
  EXPECT_FALSE(Ledger::Open(o, &l).ok());
  // A truncated ledger: the first half of a real one.
  fs::remove(path);
  {
    auto good = OpenLedger();
    AppendEvents(*good, 50);
  }
  fs::resize_file(path, fs::file_size(path) / 2);
  fs::remove(path + "-wal");
  s = OpenBackend(url_, true, &b);
  if (s.ok()) {
    VerifyReport r = VerifyLedger(*b, "");
    EXPECT_FALSE(r.ok) << r.message;
  }
  EXPECT_FALSE(OpenBackend("postgresql://nowhere.invalid/db?connect_timeout=2", false, &b).ok());
  EXPECT_FALSE(OpenBackend("ftp://x/y", false, &b).ok());
  EXPECT_FALSE(OpenBackend(dir_ + "/absent.db", true, &b).ok());
}

}  // namespace
}  // namespace carewatch::ledger
