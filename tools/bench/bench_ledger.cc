// Ledger append throughput, side by side in one run:
//   (a) a plain SQLite loop inserting the same rows, in transactions of the
//       same sizes, WAL + synchronous=FULL (the limit);
//   (b) carewatch's Ledger: Merkle leaves, signed checkpoints, group commit
//       by one writer thread, acknowledged only when durable.
// Usage: carewatch_bench_ledger [--events N] [--writers N] [--dir DIR]
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "engine/ledger/ledger.h"

using namespace carewatch;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int events = 20000, writers = 16;
  std::string dir = "/tmp/carewatch-bench-ledger";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--events"))
      events = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--writers"))
      writers = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dir"))
      dir = argv[i + 1];
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  // (b) first: it decides the batch sizes the baseline then uses.
  ledger::LedgerOptions options;
  options.url = "sqlite://" + dir + "/ledger.db";
  std::unique_ptr<ledger::Ledger> l;
  if (!ledger::Ledger::Open(options, &l).ok()) return 1;
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
  double ledger_s = std::chrono::duration<double>(Clock::now() - start).count();
  uint64_t commits = l->commits();
  l.reset();

  sqlite3* db = nullptr;
  sqlite3_open((dir + "/plain.db").c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE events (seq INTEGER PRIMARY KEY, type INTEGER, time INTEGER, payload "
               "BLOB, leaf_hash BLOB);",
               nullptr, nullptr, nullptr);
  // Same rows: read them back from the ledger file.
  std::unique_ptr<ledger::LedgerBackend> b;
  std::vector<ledger::StoredEvent> rows;
  Status read = ledger::OpenBackend(options.url, true, &b);
  if (read.ok()) read = b->ReadEvents(1, events, &rows);
  if (!read.ok()) {
    std::fprintf(stderr, "reading the ledger back: %s\n", read.message().c_str());
    std::exit(1);
  }
  // The same transaction sizes the ledger's group commit formed.
  int batch = std::max<int>(1, static_cast<int>(events / std::max<uint64_t>(commits, 1)));
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO events VALUES (?, ?, ?, ?, ?)", -1, &st, nullptr);
  start = Clock::now();
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
  double plain_s = std::chrono::duration<double>(Clock::now() - start).count();
  sqlite3_finalize(st);
  sqlite3_close(db);

  std::printf("%d events, %d concurrent writers, WAL + synchronous=FULL\n", events, writers);
  std::printf("mean group commit: %d events per transaction (%llu commits)\n", batch,
              static_cast<unsigned long long>(commits));
  std::printf("%-58s %10.0f events/s\n", "(a) plain SQLite inserts, same transaction sizes",
              events / plain_s);
  std::printf("%-58s %10.0f events/s\n", "(b) Ledger.Append (group commit, Merkle, checkpoints)",
              events / ledger_s);
  std::printf("ratio (b)/(a) = %.2f  [>= 0.5]\n", plain_s / ledger_s);
  std::filesystem::remove_all(dir);
  return 0;
}
