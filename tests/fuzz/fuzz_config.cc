// libFuzzer target: arbitrary bytes as carewatchd's configuration files,
// read as carewatchd reads them at start: byte 0 picks the file, even the
// config file (`--config`, server::LoadConfigFile, then ValidateConfig),
// odd the tokens file (server::TokenStore::Load). A bad file must give an
// error naming the file and what is wrong, never a crash, a hang or an
// exception out of the reader.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/server/auth.h"
#include "engine/server/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carewatch;
  if (size < 1) return 0;
  static const std::string path = (std::filesystem::temp_directory_path() /
                                   ("cw-fuzz-config-" + std::to_string(getpid()) + ".yaml"))
                                      .string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  if (data[0] & 1) {
    server::TokenStore tokens;
    Status s = server::TokenStore::Load(path, &tokens);
    if (!s.ok() && s.message().find(path) == std::string::npos) __builtin_trap();
    return 0;
  }
  server::ServerConfig config;
  Status s = server::LoadConfigFile(path, &config);
  if (!s.ok()) {
    if (s.message().find(path) == std::string::npos) __builtin_trap();  // names the file
    return 0;
  }
  (void)server::ValidateConfig(config);
  return 0;
}
