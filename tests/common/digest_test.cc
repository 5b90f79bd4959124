#include "engine/common/digest.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "engine/ledger/keys.h"

namespace carewatch {
namespace {

TEST(Digest, HexDecodeTakesBackWhatHexEncodeWrote) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back = "untouched";
  ASSERT_TRUE(HexDecode(HexEncode(all), &back));
  EXPECT_EQ(back, all);
  ASSERT_TRUE(HexDecode("", &back));
  EXPECT_EQ(back, "");
  back = "untouched";
  for (const char* bad : {"0", "abc", "0g", "AB", " 0a", "0a\n", "-1"}) {
    EXPECT_FALSE(HexDecode(bad, &back)) << bad;
    EXPECT_EQ(back, "untouched") << bad;
  }
}

// The HMAC key file holds the key as HexEncode wrote it; anything else is
// refused, not read as some other key.
TEST(Digest, AnHmacKeyFileIsReadBackOrRefused) {
  const std::string path = ::testing::TempDir() + "/cw-hmac-" + std::to_string(::getpid()) + ".key";
  std::filesystem::remove(path);
  std::string created, read;
  ASSERT_TRUE(ledger::LoadOrCreateHmacKey(path, &created).ok());
  ASSERT_EQ(created.size(), 32u);
  ASSERT_TRUE(ledger::LoadOrCreateHmacKey(path, &read).ok());
  EXPECT_EQ(read, created);
  std::ofstream(path, std::ios::trunc) << std::string(64, 'A') << "\n";
  Status s = ledger::LoadOrCreateHmacKey(path, &read);
  EXPECT_NE(s.message().find("must hold 64 lower-case hex digits"), std::string::npos)
      << s.message();
  EXPECT_EQ(read, created) << "a refused file changes nothing";
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace carewatch
