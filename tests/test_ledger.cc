#include "tests/test_ledger.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace carewatch::testing {

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool IsPg(const std::string& url) { return url.rfind("postgres", 0) == 0; }

std::string SqlitePath(const std::string& url) {
  return url.rfind("sqlite://", 0) == 0 ? url.substr(9) : url;
}

// A libpq connection for one call; null (and a test failure) when none.
PGconn* Connect(const std::string& url) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot reach the test PostgreSQL server: " << PQerrorMessage(c);
    PQfinish(c);
    return nullptr;
  }
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  return c;
}

std::string Dollars(const std::string& sql) {
  std::string out = sql;
  for (char& ch : out) {
    if (ch == '?') ch = '$';
  }
  return out;
}

}  // namespace

bool OnPostgres() { return Env("CAREWATCH_TEST_LEDGER") == "postgresql"; }

std::string FreshLedgerUrl(const std::string& dir, const std::string& name) {
  if (!OnPostgres()) return "sqlite://" + dir + "/" + name + ".db";
  const std::string base = Env("CAREWATCH_TEST_PG");
  if (base.empty()) {
    ADD_FAILURE() << "CAREWATCH_TEST_LEDGER=postgresql needs CAREWATCH_TEST_PG, the URL of a test "
                     "server (tests/with_pg.sh starts one)";
    return "postgresql://unset/";
  }
  static std::atomic<int> counter{0};
  std::random_device rd;
  const std::string schema = "cw_" + std::to_string(::getpid()) + "_" +
                             std::to_string(counter.fetch_add(1)) + "_" +
                             std::to_string(rd() % 100000);
  LedgerSql(base, "CREATE SCHEMA " + schema);
  return base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
         schema;
}

void LedgerSql(const std::string& url, const std::string& sql, const std::vector<SqlArg>& args) {
  if (IsPg(url)) {
    PGconn* c = Connect(url);
    if (!c) return;
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const SqlArg& a : args) {
      values.push_back(a.value.data());
      lengths.push_back(static_cast<int>(a.value.size()));
      formats.push_back(a.integer ? 0 : 1);
    }
    PGresult* r = args.empty()
                      ? PQexec(c, sql.c_str())
                      : PQexecParams(c, Dollars(sql).c_str(), static_cast<int>(args.size()),
                                     nullptr, values.data(), lengths.data(), formats.data(), 0);
    ExecStatusType st = PQresultStatus(r);
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        << sql << ": " << PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    return;
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(SqlitePath(url).c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  if (args.empty()) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  } else {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
    for (size_t i = 0; st && i < args.size(); ++i) {
      const int n = static_cast<int>(i + 1);
      if (args[i].integer) {
        sqlite3_bind_int64(st, n, std::strtoll(args[i].value.c_str(), nullptr, 10));
      } else {
        sqlite3_bind_blob(st, n, args[i].value.data(), static_cast<int>(args[i].value.size()),
                          SQLITE_TRANSIENT);
      }
    }
    if (st) {
      EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
}

WriteLockHolder::WriteLockHolder(const std::string& url) {
  if (IsPg(url)) {
    PGconn* c = Connect(url);
    pg_ = c;
    if (!c) return;
    PGresult* r = PQexec(c, "BEGIN; LOCK TABLE events, report_index IN EXCLUSIVE MODE");
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
    return;
  }
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(SqlitePath(url).c_str(), &db), SQLITE_OK);
  sqlite_ = db;
  EXPECT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
}

void WriteLockHolder::Release() {
  if (pg_) {
    PGconn* c = static_cast<PGconn*>(pg_);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    pg_ = nullptr;
  }
  if (sqlite_) {
    sqlite3* db = static_cast<sqlite3*>(sqlite_);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    sqlite_ = nullptr;
  }
}

std::string LedgerDump(const std::string& url) {
  std::string out;
  if (!IsPg(url)) {
    for (const char* suffix : {"", "-wal"}) {
      FILE* f = std::fopen((SqlitePath(url) + suffix).c_str(), "rb");
      if (!f) continue;
      char buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }
  std::vector<std::string> columns = LedgerQuery(
      url,
      "SELECT format(CASE WHEN data_type = 'bytea' THEN 'SELECT string_agg(encode(%I, ''escape''), "
      "'' '') FROM %I' ELSE 'SELECT string_agg(%I::text, '' '') FROM %I' END, column_name, "
      "table_name) FROM information_schema.columns WHERE table_schema = current_schema()");
  for (const std::string& sql : columns) {
    for (const std::string& v : LedgerQuery(url, sql)) out += v + "\n";
  }
  return out;
}

std::vector<std::string> LedgerQuery(const std::string& url, const std::string& sql) {
  std::vector<std::string> out;
  if (IsPg(url)) {
    PGconn* c = Connect(url);
    if (!c) return out;
    PGresult* r = PQexec(c, sql.c_str());
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << sql << ": " << PQresultErrorMessage(r);
    for (int i = 0; i < PQntuples(r); ++i) out.emplace_back(PQgetvalue(r, i, 0));
    PQclear(r);
    PQfinish(c);
    return out;
  }
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(SqlitePath(url).c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* v = sqlite3_column_text(st, 0);
    out.emplace_back(v ? reinterpret_cast<const char*>(v) : "");
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace carewatch::testing
