// libFuzzer target: arbitrary bytes as an SQLite ledger file, through the
// offline check a regulator runs on a copy of a ledger (`carewatch verify
// --ledger`, ledger::VerifyLedger, read-only). The copy comes from the party
// held to account: any row, any column type, any damage must give a precise
// failure, never a crash or a hang.
//
// The seed (tests/fuzz/corpus/ledger_file) is a ledger of a small generated
// scenario (`carewatch gen-scenario -n 4`, then `replay --ledger`; synthetic
// reports, digests only), rewritten with 512-byte pages so that mutations
// land on rows rather than on empty space.
#include <google/protobuf/stubs/logging.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "engine/ledger/ledger.h"
#include "engine/ledger/verify.h"

namespace {

namespace fs = std::filesystem;

const std::string& LedgerPath() {
  static const std::string* path = [] {
    google::protobuf::SetLogHandler(nullptr);  // parse failures are reported, not logged
    fs::path dir = fs::temp_directory_path() / ("cw-fuzz-ledger-" + std::to_string(getpid()));
    fs::create_directories(dir);
    return new std::string((dir / "ledger.db").string());
  }();
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carewatch;
  const std::string& path = LedgerPath();
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::error_code ec;
    fs::remove(path + suffix, ec);
  }
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  std::unique_ptr<ledger::LedgerBackend> backend;
  // A damaged file may fail to open; that is a precise error too.
  if (!ledger::OpenBackend("sqlite://" + path, true, &backend, 100).ok()) return 0;
  ledger::VerifyReport r = ledger::VerifyLedger(*backend, "");
  if (!r.ok && r.message.empty()) __builtin_trap();  // a failure names what failed
  return 0;
}
