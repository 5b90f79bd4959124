#include "engine/match/normalize.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace carewatch::match {
namespace {

TEST(Normalize, CaseFoldsAsciiAndUnicode) {
  EXPECT_EQ(FoldForMatching("Add ME"), "add me");
  EXPECT_EQ(FoldForMatching("STRASSE Straße"), "strasse strasse");
}

TEST(Normalize, FullWidthAndStyledLetters) {
  EXPECT_EQ(FoldForMatching("ｓｎａｐ"), "snap");
  EXPECT_EQ(FoldForMatching("𝐬𝐧𝐚𝐩"), "snap");  // mathematical bold
}

TEST(Normalize, DropsAccents) { EXPECT_EQ(FoldForMatching("télégram"), "telegram"); }

TEST(Normalize, RemovesZeroWidthCharacters) {
  EXPECT_EQ(FoldForMatching("tele\u200Bgr\u200Dam\uFEFF"), "telegram");
  EXPECT_EQ(FoldForMatching("soft\u00ADhyphen"), "softhyphen");
}

TEST(Normalize, FoldsLookAlikeLetters) {
  EXPECT_EQ(FoldForMatching("\u0441\u043E\u0440\u0435"), "cope");  // Cyrillic
  EXPECT_EQ(FoldForMatching("\u03BF\u03BA"), "ok");                // Greek
}

TEST(Normalize, FoldsDigitsAndSymbolsForLetters) {
  EXPECT_EQ(FoldForMatching("s3cr3t 4ll 0f $1t3 @pp"), "secret all of site app");
}

TEST(Normalize, RemovesSeparatorPunctuation) {
  EXPECT_EQ(FoldForMatching("s.n.a.p"), "snap");
  EXPECT_EQ(FoldForMatching("s-n_a*p"), "snap");
  EXPECT_EQ(FoldForMatching("don't"), "dont");
}

TEST(Normalize, JoinsSpacedOutLetters) {
  EXPECT_EQ(FoldForMatching("add me on s n a p now"), "add me on snap now");
  EXPECT_EQ(FoldForMatching("a b"), "a b");  // two single letters are left alone
}

// Punctuation next to a spaced letter does not stop the letters joining,
// and a run does not continue across it.
TEST(Normalize, JoinsSpacedOutLettersNextToPunctuation) {
  EXPECT_EQ(FoldForMatching("4re y0u a l o n e?"), "are you alone?");
  EXPECT_EQ(FoldForMatching("(s n a p) later"), "(snap) later");
  EXPECT_EQ(FoldForMatching("a l o n e? y e s"), "alone? yes");
  EXPECT_EQ(FoldForMatching("a b? c"), "a b? c");  // still only two before the '?'
}

TEST(Normalize, CollapsesWhitespace) {
  EXPECT_EQ(FoldForMatching("  add\t\tme \n on  "), "add me on");
}

TEST(Normalize, MapsSpansBackToTheOriginal) {
  std::string original = "ok ｓ.ｎ.ａ.ｐ!";
  FoldedText folded;
  FoldForMatching(original, &folded);
  ASSERT_EQ(folded.text, "ok snapi");
  ASSERT_EQ(folded.orig_start.size(), folded.text.size());
  auto [start, end] = folded.MapSpan(3, 7);  // "snap"
  EXPECT_EQ(original.substr(start, end - start), "ｓ.ｎ.ａ.ｐ");
}

TEST(Normalize, MapsSpansAcrossRemovedInvisibleCharacters) {
  std::string original = "x te\u200Blegram y";
  FoldedText folded;
  FoldForMatching(original, &folded);
  size_t at = folded.text.find("telegram");
  ASSERT_NE(at, std::string::npos);
  auto [start, end] = folded.MapSpan(at, at + 8);
  EXPECT_EQ(original.substr(start, end - start), "te\u200Blegram");
}

// Text is folded 32 bytes at a time where it is letters and single spaces;
// the rules are the same at every offset.
TEST(Normalize, LongTextFoldsByTheSameRules) {
  EXPECT_EQ(FoldForMatching("Hello There Friend, Add Me On S N A P Right Now Please"),
            "hello there friend add me on snap right now please");
  EXPECT_EQ(FoldForMatching("we talked for a while and then x y z was said to me"),
            "we talked for a while and then xyz was said to me");
  EXPECT_EQ(FoldForMatching("one a b two c d three e f four g h five i j six"),
            "one a b two c d three e f four g h five i j six");
  EXPECT_EQ(FoldForMatching("   leading   and  doubled   spaces are collapsed   "),
            "leading and doubled spaces are collapsed");
  EXPECT_EQ(FoldForMatching("ALLCAPSWORDSWITHOUTANYSPACEATALL"),
            "allcapswordswithoutanyspaceatall");
}

// `text` folded one byte at a time: a zero-width space after every byte is
// removed by the fold, but leaves at most one ASCII byte in a row, so
// no block path (whole blocks, prefixes of letters) can take it.
std::string FoldOneByteAtATime(std::string_view text) {
  std::string spaced;
  for (char c : text) {
    spaced += c;
    spaced += "\u200B";
  }
  FoldedText out;
  FoldForMatching(spaced, &out, /*with_map=*/false);
  return out.text;
}

// Each whole-block path this CPU has, in turn (the widest is left in use).
class FoldPaths : public ::testing::TestWithParam<FoldBlockPath> {
 protected:
  void SetUp() override {
    if (!SetFoldBlockPathForTesting(GetParam())) GTEST_SKIP() << "this CPU lacks the path";
  }
  void TearDown() override {
    for (FoldBlockPath p : {FoldBlockPath::kAvx512, FoldBlockPath::kAvx2, FoldBlockPath::kNone})
      if (SetFoldBlockPathForTesting(p)) break;
  }
};

INSTANTIATE_TEST_SUITE_P(Normalize, FoldPaths,
                         ::testing::Values(FoldBlockPath::kNone, FoldBlockPath::kAvx2,
                                           FoldBlockPath::kAvx512),
                         [](const ::testing::TestParamInfo<FoldBlockPath>& info) {
                           switch (info.param) {
                             case FoldBlockPath::kNone:
                               return std::string("NoBlocks");
                             case FoldBlockPath::kAvx2:
                               return std::string("Avx2");
                             case FoldBlockPath::kAvx512:
                               return std::string("Avx512");
                           }
                           return std::string("Unknown");
                         });

TEST(Normalize, TheWidestBlockPathIsInUse) {
  // No path wider than the one in use can be chosen.
  const FoldBlockPath in_use = FoldBlockPathInUse();
  if (in_use != FoldBlockPath::kAvx512) {
    EXPECT_FALSE(
        SetFoldBlockPathForTesting(static_cast<FoldBlockPath>(static_cast<int>(in_use) + 1)));
  }
  EXPECT_TRUE(SetFoldBlockPathForTesting(in_use));
}

// Differential check of the block paths against FoldOneByteAtATime.
// Separators, digits, white space and the bytes that send a block to the
// slower paths ('?', '@', controls) fall at every offset of a block.
TEST_P(FoldPaths, RunsOfLettersFoldAsOneByteAtATime) {
  const char* separators[] = {" ",  " ",  " ",    " ",    "  ",  ". ", ", ",  "? ", "(",   "0",
                              "\t", ".",  ",",    "..",   " . ", ".,", ", ,", " ,", "7",   "3 ",
                              "\n", " -", "\r\n", " \t ", "_",   "'",  "@",   "2",  " 9 ", "\x01"};
  std::mt19937 rng(11);
  FoldedText fast, fast_map;
  for (int round = 0; round < 4000; ++round) {
    // Words of one to five letters, one-letter words common, so that runs
    // of them start and end at every offset of a 32-byte block.
    std::string text;
    size_t length = 1 + rng() % 200;
    while (text.size() < length) {
      size_t letters = rng() % 2 ? 1 : 1 + rng() % 5;
      for (size_t i = 0; i < letters; ++i) text += "abcdefxyzABCXYZ"[rng() % 15];
      text += separators[rng() % std::size(separators)];
    }
    FoldForMatching(text, &fast, /*with_map=*/false);
    ASSERT_EQ(fast.text, FoldOneByteAtATime(text)) << "input: \"" << text << "\"";
    FoldForMatching(text, &fast_map, /*with_map=*/true);
    ASSERT_EQ(fast_map.text, fast.text);
    for (size_t i = 0; i < fast_map.text.size(); ++i) {
      ASSERT_LT(fast_map.orig_start[i], fast_map.orig_end[i]);
      ASSERT_LE(fast_map.orig_end[i], text.size());
    }
  }
}

// The same check on long runs of the bytes a whole block folds, so that
// blocks are folded two at a time (64 bits of masks and token counts in one
// pass) with runs of spaces, separators and one-letter words across the
// middle of a pair and across pairs; now and then one byte that stops the
// block path ('?' or '@'), so that a pair is cut at every offset.
TEST_P(FoldPaths, LongRunsOfWholeBlocksFoldAsOneByteAtATime) {
  const char* separators[] = {" ", " ", " ", "  ", ". ", ", ",  "\t", ".", " - ",
                              "7", "3", "_", "'",  "\n", "   ", "..", "0 "};
  std::mt19937 rng(13);
  FoldedText fast;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    const size_t length = 64 + rng() % 640;
    while (text.size() < length) {
      const size_t letters = rng() % 2 ? 1 : 1 + rng() % 6;
      for (size_t i = 0; i < letters; ++i) text += "abcdefxyzABCXYZ"[rng() % 15];
      text += separators[rng() % std::size(separators)];
    }
    if (round % 3 == 0) text.insert(rng() % text.size(), rng() % 2 ? "?" : "@");
    FoldForMatching(text, &fast, /*with_map=*/false);
    ASSERT_EQ(fast.text, FoldOneByteAtATime(text)) << "input: \"" << text << "\"";
  }
}

// The same check over every ASCII byte: each value takes the path its
// class decides (folded in a block, or by the table one byte at a time),
// and the results must agree.
TEST_P(FoldPaths, EveryAsciiByteFoldsAlikeInBlocksAndOneAtATime) {
  std::mt19937 rng(12);
  FoldedText fast;
  for (int round = 0; round < 4000; ++round) {
    std::string text;
    const size_t length = 1 + rng() % 300;
    // Mostly letters and spaces, so that whole blocks of ordinary text
    // occur; any of the 128 values otherwise.
    while (text.size() < length) {
      const uint32_t pick = rng() % 8;
      text += pick < 4   ? "abcdefghijklmnopqrstuvwxyzQZ"[rng() % 28]
              : pick < 6 ? ' '
                         : static_cast<char>(rng() % 128);
    }
    FoldForMatching(text, &fast, /*with_map=*/false);
    ASSERT_EQ(fast.text, FoldOneByteAtATime(text)) << "round " << round;
  }
}

}  // namespace
}  // namespace carewatch::match
