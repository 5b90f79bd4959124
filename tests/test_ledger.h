#ifndef CAREWATCH_TESTS_TEST_LEDGER_H_
#define CAREWATCH_TESTS_TEST_LEDGER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace carewatch::testing {

// The ledger backend the ledger, duty, signal and service suites run
// against: PostgreSQL when CAREWATCH_TEST_LEDGER=postgresql, else SQLite.
// `make test` runs those suites both ways (tests/with_pg.sh starts the
// PostgreSQL server and sets CAREWATCH_TEST_PG to its URL).
bool OnPostgres();

// A new, empty ledger for one test: the SQLite file DIR/NAME.db, or on
// PostgreSQL a fresh schema on the test server (its own ledger: tables,
// writer lock and all).
std::string FreshLedgerUrl(const std::string& dir, const std::string& name = "ledger");

// A statement argument: bytes (BLOB/BYTEA) or an integer.
struct SqlArg {
  std::string value;
  bool integer = false;
};
inline SqlArg SqlBytes(std::string v) { return {std::move(v), false}; }
inline SqlArg SqlInt(int64_t v) { return {std::to_string(v), true}; }

// Runs SQL on a ledger of either backend, as someone with the database's
// own tools would (tests that tamper with a ledger): `sql` is one statement
// with ?1, ?2... placeholders, or without arguments several statements.
// Failures fail the test.
void LedgerSql(const std::string& url, const std::string& sql,
               const std::vector<SqlArg>& args = {});

// Another session holding a ledger's write lock until Release() or
// destruction: SQLite's BEGIN IMMEDIATE; on PostgreSQL, a lock on the
// tables every batch of events or reports writes (events, report_index),
// which readers may still read.
class WriteLockHolder {
 public:
  explicit WriteLockHolder(const std::string& url);
  ~WriteLockHolder() { Release(); }
  WriteLockHolder(const WriteLockHolder&) = delete;
  WriteLockHolder& operator=(const WriteLockHolder&) = delete;
  void Release();

 private:
  void* sqlite_ = nullptr;  // sqlite3*
  void* pg_ = nullptr;      // PGconn*
};

// Everything a ledger stores, as bytes a search can look through: the
// SQLite file and its WAL, or every column of every table of the
// PostgreSQL ledger's schema (byte columns in PostgreSQL's escape format,
// which keeps printable ASCII as it is).
std::string LedgerDump(const std::string& url);

// The rows of a one-column query, as text.
std::vector<std::string> LedgerQuery(const std::string& url, const std::string& sql);

}  // namespace carewatch::testing

#endif  // CAREWATCH_TESTS_TEST_LEDGER_H_
