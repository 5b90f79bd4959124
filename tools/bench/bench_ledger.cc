// Ledger append throughput, side by side in one run:
//   (a) a plain SQLite loop inserting the same rows, in transactions of the
//       same sizes, WAL + synchronous=FULL (the limit), and (a2) the same
//       loop through the VFS the ledger's writer uses (sqlite_vfs.h);
//   (b) carewatch's Ledger: Merkle leaves, signed checkpoints, group commit
//       by one writer thread, acknowledged only when durable.
// With --pg URL (a PostgreSQL database), the same two on PostgreSQL:
//   (c) a plain libpq loop inserting the same rows in the same transaction
//       sizes (prepared statement, synchronous_commit=on);
//   (d) the Ledger on a postgresql:// ledger (a fresh schema in that database).
// The SQLite figures are medians over --rounds rounds (default 5), each a
// ledger run and then its baselines.
// Usage: carewatch_bench_ledger [--events N] [--writers N] [--rounds N] [--dir DIR]
//                               [--pg URL]
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "engine/ledger/ledger.h"
#include "engine/ledger/sqlite_vfs.h"
#include "tools/bench/bench_args.h"

using namespace carewatch;
using Clock = std::chrono::steady_clock;

namespace {

// Appends `events` events from `writers` threads; returns seconds taken.
double RunLedger(const ledger::LedgerOptions& options, int events, int writers, uint64_t* commits) {
  std::unique_ptr<ledger::Ledger> l;
  Status open = ledger::Ledger::Open(options, &l);
  if (!open.ok()) {
    std::fprintf(stderr, "opening %s: %s\n", options.url.c_str(), open.message().c_str());
    std::exit(1);
  }
  std::atomic<int> next{0};
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&] {
      for (;;) {
        int i = next++;
        if (i >= events) return;
        std::vector<v1::LedgerEvent> ev(1);
        ev[0].set_type(v1::ACTION_RECORDED);
        ev[0].mutable_time()->set_seconds(1767607200 + i);
        auto* a = ev[0].mutable_action_recorded();
        a->set_service_id("example-social");
        a->set_report_id("r-" + std::to_string(i));
        a->set_action("remove_content");
        a->set_actor("moderator-7");
        if (!l->Append(&ev).ok()) std::abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  *commits = l->commits();
  return seconds;
}

std::vector<ledger::StoredEvent> ReadBack(const std::string& url, int events) {
  std::unique_ptr<ledger::LedgerBackend> b;
  std::vector<ledger::StoredEvent> rows;
  Status read = ledger::OpenBackend(url, true, &b);
  if (read.ok()) read = b->ReadEvents(1, events, &rows);
  if (!read.ok()) {
    std::fprintf(stderr, "reading the ledger back: %s\n", read.message().c_str());
    std::exit(1);
  }
  return rows;
}

PGconn* PgConnect(const std::string& url) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "PostgreSQL: %s\n", PQerrorMessage(c));
    std::exit(1);
  }
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  return c;
}

void PgExec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::fprintf(stderr, "%s: %s\n", sql.c_str(), PQresultErrorMessage(r));
    std::exit(1);
  }
  PQclear(r);
}

// (c): the same rows, the same transaction sizes, through libpq alone.
double PlainPostgres(const std::string& url, const std::vector<ledger::StoredEvent>& rows,
                     int batch) {
  PGconn* c = PgConnect(url);
  PgExec(c,
         "SET synchronous_commit = on; CREATE TABLE plain_events (seq BIGINT PRIMARY KEY, type "
         "INTEGER NOT NULL, time BIGINT NOT NULL, payload BYTEA NOT NULL, leaf_hash BYTEA NOT "
         "NULL)");
  PQclear(PQprepare(c, "ins", "INSERT INTO plain_events VALUES ($1, $2, $3, $4, $5)", 0, nullptr));
  auto start = Clock::now();
  for (size_t i = 0; i < rows.size(); i += batch) {
    PgExec(c, "BEGIN");
    for (size_t k = i; k < rows.size() && k < i + batch; ++k) {
      const auto& r = rows[k];
      std::string seq = std::to_string(r.seq), type = std::to_string(r.type),
                  time = std::to_string(r.time);
      const char* values[] = {seq.c_str(), type.c_str(), time.c_str(), r.payload.data(),
                              r.leaf_hash.data()};
      int lengths[] = {0, 0, 0, static_cast<int>(r.payload.size()),
                       static_cast<int>(r.leaf_hash.size())};
      int formats[] = {0, 0, 0, 1, 1};
      PGresult* res = PQexecPrepared(c, "ins", 5, values, lengths, formats, 0);
      if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        std::fprintf(stderr, "insert: %s\n", PQresultErrorMessage(res));
        std::exit(1);
      }
      PQclear(res);
    }
    PgExec(c, "COMMIT");
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  PQfinish(c);
  return seconds;
}

template <typename T>
double Median(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

}  // namespace

// Inserts `rows` in transactions of `batch` into a fresh SQLite file (WAL,
// synchronous=FULL) opened with `vfs` (nullptr: the default); seconds.
double PlainSqlite(const std::string& path, const std::vector<ledger::StoredEvent>& rows, int batch,
                   const char* vfs) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE events (seq INTEGER PRIMARY KEY, type INTEGER, time INTEGER, payload "
               "BLOB, leaf_hash BLOB);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO events VALUES (?, ?, ?, ?, ?)", -1, &st, nullptr);
  auto start = Clock::now();
  for (size_t i = 0; i < rows.size(); i += batch) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    for (size_t k = i; k < rows.size() && k < i + batch; ++k) {
      const auto& r = rows[k];
      sqlite3_bind_int64(st, 1, r.seq);
      sqlite3_bind_int64(st, 2, r.type);
      sqlite3_bind_int64(st, 3, r.time);
      sqlite3_bind_blob(st, 4, r.payload.data(), r.payload.size(), SQLITE_STATIC);
      sqlite3_bind_blob(st, 5, r.leaf_hash.data(), r.leaf_hash.size(), SQLITE_STATIC);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  sqlite3_finalize(st);
  sqlite3_close(db);
  return secs;
}

int main(int argc, char** argv) {
  // SQLite's process-wide settings, as carewatch runs it, for the ledger
  // and the plain loops alike (sqlite_vfs.h).
  ledger::ConfigureSqlite();
  int events = 20000, writers = 16, rounds = 5;
  std::string dir = "/tmp/carewatch-bench-ledger", pg;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--events"))
      events = static_cast<int>(bench::IntArg("--events", argv[i + 1], 1, 100000000));
    else if (!std::strcmp(argv[i], "--writers"))
      writers = static_cast<int>(bench::IntArg("--writers", argv[i + 1], 1, 4096));
    else if (!std::strcmp(argv[i], "--dir"))
      dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--pg"))
      pg = argv[i + 1];
    else if (!std::strcmp(argv[i], "--rounds"))
      rounds = static_cast<int>(bench::IntArg("--rounds", argv[i + 1], 1, 1000));
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  // Each round runs (b) first, since it decides the batch sizes the
  // baselines then use, and the baselines right after it. The figures
  // printed are the medians over the rounds: on this kind of machine one
  // round's baseline moves by a quarter from one minute to the next.
  ledger::LedgerOptions options;
  options.signing_key_path = dir + "/ledger.key";
  std::vector<double> plain_rates, ledger_rates, gathered_rates, ratios, like_ratios;
  std::vector<int> batches;
  uint64_t commits = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::string round_dir = dir + "/" + std::to_string(round);
    std::filesystem::create_directories(round_dir);
    options.url = "sqlite://" + round_dir + "/ledger.db";
    double ledger_s = RunLedger(options, events, writers, &commits);
    // Same rows: read them back from the ledger file.
    std::vector<ledger::StoredEvent> rows = ReadBack(options.url, events);
    // The same transaction sizes the ledger's group commit formed.
    int batch = std::max<int>(1, static_cast<int>(events / std::max<uint64_t>(commits, 1)));
    // (a) with SQLite's default VFS; (a2) with the one the ledger's writer
    // uses (engine/ledger/sqlite_vfs.h), to compare like with like.
    double plain_s = PlainSqlite(round_dir + "/plain.db", rows, batch, nullptr);
    double gathered_s =
        PlainSqlite(round_dir + "/gathered.db", rows, batch, ledger::GatheringVfs());
    std::filesystem::remove_all(round_dir);
    batches.push_back(batch);
    plain_rates.push_back(events / plain_s);
    ledger_rates.push_back(events / ledger_s);
    gathered_rates.push_back(events / gathered_s);
    ratios.push_back(plain_s / ledger_s);
    like_ratios.push_back(gathered_s / ledger_s);
    if (rounds > 1) {
      std::printf(
          "round %d: %d events a commit; (a) %.0f, (b) %.0f, (a2) %.0f events/s; "
          "(b)/(a) %.2f, (b)/(a2) %.2f\n",
          round + 1, batch, plain_rates.back(), ledger_rates.back(), gathered_rates.back(),
          ratios.back(), like_ratios.back());
    }
  }
  const char* of = rounds > 1 ? ", median of the rounds" : "";
  std::printf("%d events, %d concurrent writers, WAL + synchronous=FULL, %d round%s\n", events,
              writers, rounds, rounds > 1 ? "s" : "");
  std::printf("mean group commit: %.0f events per transaction%s\n", Median(batches), of);
  std::printf("%-58s %10.0f events/s\n", "(a) plain SQLite inserts, same transaction sizes",
              Median(plain_rates));
  std::printf("%-58s %10.0f events/s\n", "(b) Ledger.Append (group commit, Merkle, checkpoints)",
              Median(ledger_rates));
  std::printf("%-58s %10.0f events/s\n", "(a2) the same through the ledger's gathering VFS",
              Median(gathered_rates));
  std::printf("ratio (b)/(a) = %.2f  [>= 0.5]%s\n", Median(ratios), of);
  std::printf("ratio (b)/(a2) = %.2f  (like with like: the same VFS)%s\n", Median(like_ratios), of);
  if (!pg.empty()) {
    // A schema of its own in the database: the ledger's tables and the plain
    // table side by side, dropped afterwards.
    const std::string schema = "bench_" + std::to_string(::getpid());
    PGconn* admin = PgConnect(pg);
    PgExec(admin, "CREATE SCHEMA " + schema);
    const std::string url =
        pg + (pg.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
    ledger::LedgerOptions po = options;
    po.url = url;
    uint64_t pg_commits = 0;
    double pg_ledger_s = RunLedger(po, events, writers, &pg_commits);
    std::vector<ledger::StoredEvent> pg_rows = ReadBack(url, events);
    int pg_batch = std::max<int>(1, static_cast<int>(events / std::max<uint64_t>(pg_commits, 1)));
    double pg_plain_s = PlainPostgres(url, pg_rows, pg_batch);
    PgExec(admin, "DROP SCHEMA " + schema + " CASCADE");
    PQfinish(admin);
    std::printf("PostgreSQL: mean group commit %d events per transaction (%llu commits)\n",
                pg_batch, static_cast<unsigned long long>(pg_commits));
    std::printf("%-58s %10.0f events/s\n", "(c) plain libpq inserts, same transaction sizes",
                events / pg_plain_s);
    std::printf("%-58s %10.0f events/s\n", "(d) Ledger.Append on postgresql://",
                events / pg_ledger_s);
    std::printf("ratio (d)/(c) = %.2f  [>= 0.5]\n", pg_plain_s / pg_ledger_s);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
