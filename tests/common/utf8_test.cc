#include "engine/common/utf8.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace carewatch {
namespace {

// The offset of the first ill-formed sequence by the Unicode Standard's
// table of well-formed UTF-8 byte sequences (Table 3-7), written out
// independently of FindInvalidUtf8.
size_t FirstIllFormed(std::string_view s) {
  auto in = [](unsigned char b, int lo, int hi) { return b >= lo && b <= hi; };
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    int len = 0, lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) {
      len = 1;
    } else if (in(b, 0xC2, 0xDF)) {
      len = 2;
    } else if (b == 0xE0) {
      len = 3, lo = 0xA0;
    } else if (in(b, 0xE1, 0xEC) || in(b, 0xEE, 0xEF)) {
      len = 3;
    } else if (b == 0xED) {
      len = 3, hi = 0x9F;
    } else if (b == 0xF0) {
      len = 4, lo = 0x90;
    } else if (in(b, 0xF1, 0xF3)) {
      len = 4;
    } else if (b == 0xF4) {
      len = 4, hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (len > 1 && !in(p[i + 1], lo, hi)) return i;
    for (int k = 2; k < len; ++k) {
      if (!in(p[i + k], 0x80, 0xBF)) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// ASCII of every length (the paths that OR whole blocks of 64, 16 and 8
// bytes, with their overlapping last reads), and text with a bad or good
// sequence at every offset, against the table.
TEST(Utf8, AgreesWithTheStandardsTableOnRandomText) {
  std::mt19937 rng(7);
  const std::string pieces[] = {"a",
                                " ",
                                "\x7f",
                                "\xc3\xa9",
                                "\xe2\x80\x8b",
                                "\xf0\x9f\x98\x80",
                                "\xed\x9f\xbf",
                                "\xf4\x8f\xbf\xbf",
                                "\xc0\x80",
                                "\xed\xa0\x80",
                                "\xf4\x90\x80\x80",
                                "\xe0\x80\xaf",
                                "\x80",
                                "\xff",
                                "\xc3",
                                "\xf0\x9f\x98"};
  for (int round = 0; round < 20000; ++round) {
    std::string s(rng() % 200, 'x');  // past three 64-byte steps
    for (char& c : s) c = static_cast<char>(rng() % 128);
    if (round % 2) {
      const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
      s.insert(at, pieces[rng() % std::size(pieces)]);
    }
    ASSERT_EQ(FindInvalidUtf8(s), FirstIllFormed(s)) << "round " << round;
    ASSERT_EQ(IsValidUtf8(s), FirstIllFormed(s) == std::string_view::npos);
  }
}

// Word characters for phrase edges: letters, marks, numbers and connector
// punctuation in any script, read at a byte offset forwards or backwards;
// not invalid bytes, and nothing past either end.
TEST(Utf8, WordCharactersAreReadAtEitherSideOfAnOffset) {
  EXPECT_TRUE(IsWordCodePoint('a'));
  EXPECT_TRUE(IsWordCodePoint('_'));
  EXPECT_FALSE(IsWordCodePoint('-'));
  EXPECT_TRUE(IsWordCodePoint(0xE9));      // é
  EXPECT_TRUE(IsWordCodePoint(0x0301));    // a combining acute accent
  EXPECT_TRUE(IsWordCodePoint(0x0661));    // an Arabic-Indic digit
  EXPECT_TRUE(IsWordCodePoint(0x4E2D));    // a Han character
  EXPECT_FALSE(IsWordCodePoint(0x2019));   // a right single quote
  EXPECT_FALSE(IsWordCodePoint(0xA0));     // a no-break space
  EXPECT_FALSE(IsWordCodePoint(0x1F600));  // an emoji
  EXPECT_FALSE(IsWordCodePoint(-1));

  const std::string s = "a\xC3\xA9-\xF0\x9F\x98\x80\xE4\xB8\xAD";  // a é - 😀 中
  EXPECT_TRUE(WordCharAt(s, 0));
  EXPECT_TRUE(WordCharAt(s, 1));
  EXPECT_FALSE(WordCharAt(s, 3));
  EXPECT_FALSE(WordCharAt(s, 4));
  EXPECT_TRUE(WordCharAt(s, 8));
  EXPECT_FALSE(WordCharAt(s, s.size()));
  EXPECT_FALSE(WordCharBefore(s, 0));
  EXPECT_TRUE(WordCharBefore(s, 1));
  EXPECT_TRUE(WordCharBefore(s, 3));  // é, two bytes back
  EXPECT_FALSE(WordCharBefore(s, 4));
  EXPECT_FALSE(WordCharBefore(s, 8));  // the emoji, four bytes back
  EXPECT_TRUE(WordCharBefore(s, s.size()));
  // Invalid bytes are not word characters, however they are reached.
  const std::string bad = "\xC3x\xA9";
  EXPECT_FALSE(WordCharAt(bad, 0));
  EXPECT_FALSE(WordCharAt(bad, 2));
  EXPECT_FALSE(WordCharBefore(bad, 1));
  EXPECT_FALSE(WordCharBefore(bad, 3));
  EXPECT_TRUE(WordCharBefore(bad, 2));
}

}  // namespace
}  // namespace carewatch
