// libFuzzer target: arbitrary bytes as an SQLite ledger file, through
//  1. the offline check a regulator runs on a copy of a ledger (`carewatch
//     verify --ledger`, ledger::VerifyLedger, read-only). The copy comes
//     from the party held to account;
//  2. carewatchd's start on it after damage (a disk, an operator's
//     mistake): the writable open, which may carry an old ledger forward,
//     the duty engine's recovery of its state, and the close, which writes
//     a final checkpoint.
// Any row, any column type, any damage must give a precise failure, never
// a crash or a hang.
//
// The seed (tests/fuzz/corpus/ledger_file) is a ledger of a small generated
// scenario (`carewatch gen-scenario -n 4`, then `replay --ledger`; synthetic
// reports, digests only), rewritten with 512-byte pages so that mutations
// land on rows rather than on empty space. Before the writable open the
// harness names its own test key in the ledger's meta table, so that the
// open does not stop at "signed by another deployment's key".
#include <google/protobuf/stubs/logging.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "engine/duty/duty_engine.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/verify.h"

namespace {

namespace fs = std::filesystem;
using namespace carewatch;

struct Paths {
  std::string ledger, key;
  std::string public_pem;
};

const Paths& TestPaths() {
  static const Paths* paths = [] {
    google::protobuf::SetLogHandler(nullptr);  // parse failures are reported, not logged
    fs::path dir = fs::temp_directory_path() / ("cw-fuzz-ledger-" + std::to_string(getpid()));
    fs::create_directories(dir);
    auto* p = new Paths{(dir / "ledger.db").string(), (dir / "ledger.key").string(), ""};
    std::unique_ptr<ledger::SigningKey> key;
    if (!ledger::SigningKey::LoadOrCreate(p->key, &key).ok()) __builtin_trap();
    p->public_pem = key->PublicPem();
    return p;
  }();
  return *paths;
}

void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal", ".filter"}) {
    std::error_code ec;
    fs::remove(path + suffix, ec);
  }
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// Names the harness's key in the meta table; false when the file does not
// take the change (then the open's own error is not worth reaching).
bool NameTestKey(const std::string& path, const std::string& pem) {
  sqlite3* db = nullptr;
  bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK;
  sqlite3_stmt* st = nullptr;
  ok = ok && sqlite3_prepare_v2(db, "UPDATE meta SET value = ?1 WHERE key = 'public_key'", -1, &st,
                                nullptr) == SQLITE_OK;
  if (ok) {
    sqlite3_bind_blob(st, 1, pem.data(), static_cast<int>(pem.size()), SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Paths& paths = TestPaths();
  WriteFile(paths.ledger, data, size);
  {
    std::unique_ptr<ledger::LedgerBackend> backend;
    // A damaged file may fail to open; that is a precise error too.
    if (ledger::OpenBackend("sqlite://" + paths.ledger, true, &backend, 100).ok()) {
      ledger::VerifyReport r = ledger::VerifyLedger(*backend, "");
      if (!r.ok && r.message.empty()) __builtin_trap();  // a failure names what failed
    }
  }
  if (!NameTestKey(paths.ledger, paths.public_pem)) return 0;
  ledger::LedgerOptions options;
  options.url = "sqlite://" + paths.ledger;
  options.signing_key_path = paths.key;
  options.busy_timeout_ms = 100;
  std::unique_ptr<ledger::Ledger> l;
  Status s = ledger::Ledger::Open(options, &l);
  if (!s.ok()) {
    if (s.message().empty()) __builtin_trap();
    return 0;
  }
  duty::DutyEngineOptions engine_options;
  engine_options.hmac_key = std::string(32, 'k');
  duty::DutyEngine engine(l.get(), engine_options);
  s = engine.Recover();
  if (!s.ok() && s.message().empty()) __builtin_trap();
  return 0;
}
