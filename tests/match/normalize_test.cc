#include "engine/match/normalize.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace carewatch::match
