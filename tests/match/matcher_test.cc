#include "engine/match/matcher.h"

#include <gtest/gtest.h>
#include <re2/re2.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "engine/rules/pattern.h"

namespace carewatch::match {
namespace {

using rules::Field;

PatternLeaf Regex(const std::string& re, uint32_t flags = 0, Field field = Field::kText) {
  PatternLeaf leaf;
  leaf.field = field;
  leaf.expressions = {re};
  leaf.regex_flags = flags;
  return leaf;
}

// As the Evaluator builds phrases leaves: the \b pattern (for RE2) and the
// lower-case literal (for Hyperscan and span search).
PatternLeaf Phrase(const std::string& phrase) {
  PatternLeaf leaf;
  leaf.field = Field::kText;
  leaf.expressions = {rules::PhrasePattern(phrase)};
  leaf.regex_flags = rules::kCaseSensitive;
  std::string lower = phrase;
  for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  leaf.literals = {lower};
  return leaf;
}

std::unique_ptr<Matcher> Build(std::vector<PatternLeaf> leaves) {
  std::unique_ptr<Matcher> m;
  Status s = Matcher::Build(std::move(leaves), "", "", &m);
  EXPECT_TRUE(s.ok()) << s.message();
  return m;
}

std::set<uint32_t> Hits(const Matcher& m, std::string_view text, Field field = Field::kText) {
  std::set<uint32_t> hits;
  auto scratch = m.NewScratch();
  Status s = m.Scan(
      DatabaseSlot(field, false), text, *scratch,
      [](uint32_t id, uint32_t, uint32_t, void* c) {
        static_cast<std::set<uint32_t>*>(c)->insert(id);
      },
      &hits);
  EXPECT_TRUE(s.ok()) << s.message();
  return hits;
}

using Spans = std::vector<std::pair<uint32_t, uint32_t>>;

Spans SpansOf(const Matcher& m, uint32_t leaf, std::string_view text) {
  Spans spans;
  m.FindSpans(leaf, text, 8, &spans);
  return spans;
}

TEST(Matcher, CaseInsensitiveByDefault) {
  auto m = Build({Regex("snap")});
  EXPECT_EQ(Hits(*m, "SNAP"), std::set<uint32_t>{0});
  EXPECT_EQ(SpansOf(*m, 0, "x SnAp"), (Spans{{2, 6}}));
}

TEST(Matcher, CaseSensitiveFlag) {
  auto m = Build({Regex("Snap", rules::kCaseSensitive)});
  EXPECT_TRUE(Hits(*m, "snap").empty());
  EXPECT_EQ(Hits(*m, "Snap"), std::set<uint32_t>{0});
  EXPECT_TRUE(SpansOf(*m, 0, "snap").empty());
}

TEST(Matcher, DotallFlag) {
  auto plain = Build({Regex("a.b")});
  auto dotall = Build({Regex("a.b", rules::kDotAll)});
  EXPECT_TRUE(Hits(*plain, "a\nb").empty());
  EXPECT_EQ(Hits(*dotall, "a\nb"), std::set<uint32_t>{0});
  EXPECT_EQ(SpansOf(*dotall, 0, "a\nb"), (Spans{{0, 3}}));
}

TEST(Matcher, MultilineFlag) {
  auto plain = Build({Regex("^two")});
  auto multi = Build({Regex("^two", rules::kMultiline)});
  EXPECT_TRUE(Hits(*plain, "one\ntwo").empty());
  EXPECT_EQ(Hits(*multi, "one\ntwo"), std::set<uint32_t>{0});
  EXPECT_EQ(SpansOf(*multi, 0, "one\ntwo"), (Spans{{4, 7}}));
}

// Where PCRE's syntax and RE2's agree but their meanings do not, RE2 is
// given a translation (rules::TranslateForRe2): white space includes the
// vertical tab, \v is any vertical white space, and '$' also matches
// before a newline that ends the value; \h, \H, \V, \Z and \e, which RE2
// lacks, are written as RE2 can read them.
// Without it Hyperscan flagged such a match and RE2 found no span for it.
TEST(Matcher, RegexesMatchWhatTheirSpansShow) {
  struct Case {
    const char* re;
    uint32_t flags;
    const char* text;
    Spans spans;  // empty: no match
  };
  const Case cases[] = {
      {"a\\sb", 0, "a\vb", {{0, 3}}},
      {"a[\\s]b", 0, "a\vb", {{0, 3}}},
      {"a\\Sb", 0, "a\vb", {}},
      {"a[^\\S]b", 0, "a\vb", {{0, 3}}},
      {"a$", 0, "xa\n", {{1, 3}}},
      {"a$", 0, "xa", {{1, 2}}},
      {"a$", 0, "a\nb", {}},
      {"a$", rules::kMultiline, "a\nb", {{0, 1}}},
      {"(?m)a$", 0, "a\nb", {{0, 1}}},
      {"a\\$", 0, "a$", {{0, 2}}},
      {"a[$]", 0, "a$", {{0, 2}}},
      {"\\Q\\s$\\E", 0, "\\s$", {{0, 3}}},
      {"[]\\s]x", 0, "]x \vx", {{0, 2}, {3, 5}}},
      {"a\\vb",
       0,
       "a\nb a\xE2\x80\xA8"
       "b",
       {{0, 3}, {4, 9}}},
      {"a[\\v]b",
       0,
       "a\xC2\x85"
       "b",
       {{0, 4}}},
      {"a\\Vb", 0, "a\nb a b", {{4, 7}}},
      {"a\\hb",
       0,
       "a\xC2\xA0"
       "b",
       {{0, 4}}},
      {"a\\Hb", 0, "a\tb axb", {{4, 7}}},
      {"a\\Z", 0, "a\n", {{0, 2}}},
      {"a\\eb",
       0,
       "a\x1B"
       "b",
       {{0, 3}}},
      // Options as PCRE scopes them: clearing `m` is not setting it, and a
      // group's `m` ends with the group.
      {"(?-m)a$", rules::kMultiline, "a\n", {{0, 2}}},
      {"(?-m)a$", rules::kMultiline, "a\nb", {}},
      {"(?m:a$)|b$", 0, "b\n", {{0, 2}}},
      {"(?m:a$)|b$", 0, "a\nb", {{0, 1}, {2, 3}}},
      {"(a(?m))b$|c$", 0, "c\n", {{0, 2}}},
      // Syntax RE2 lacks: `x`, comments, named groups, \c, \o{}, [\b], a
      // stray \E, PCRE's properties and leading verbs.
      {"(?x) a b  # a comment\n c", 0, "abc", {{0, 3}}},
      {"(?x) a\\ b[ ]c", 0, "a b c", {{0, 5}}},
      // A comment may run to the pattern's end, as PCRE reads it (Hyperscan
      // is given a line feed after it); a '#' that starts no comment (in a
      // class, escaped, or where `x` is no longer in force) stays a '#'.
      {"(?x) a b  # a comment to the end", 0, "ab", {{0, 2}}},
      {"(?x)a[#]b # c", 0, "a#b", {{0, 3}}},
      {"(?x)a\\#b", 0, "a#b", {{0, 3}}},
      {"(?x:a) b#c", 0, "a b#c ab#c", {{0, 5}}},
      {"(?x)a(?-x) b#c", 0, "a b#c", {{0, 5}}},
      {"(?x:a b) c", 0, "ab c", {{0, 4}}},
      {"(?ix-m) a b", rules::kCaseSensitive, "AB", {{0, 2}}},
      {"a(?x) b|c d", 0, "c d cd", {{4, 6}}},
      {"(a(?x) b)c d", 0, "abc d", {{0, 5}}},
      {"a(?#comment (with a paren)b", 0, "a b ab", {{4, 6}}},
      {"a(?#comment)b", 0, "x ab", {{2, 4}}},
      {"(?<first>a)(?'second'b)", 0, "ab", {{0, 2}}},
      {"a\\cAb",
       0,
       "a\x01"
       "b",
       {{0, 3}}},
      {"a\\c[b",
       0,
       "a\x1B"
       "b",
       {{0, 3}}},
      {"a\\o{101}", rules::kCaseSensitive, "aA", {{0, 2}}},
      {"a[\\b]", 0, "a\b", {{0, 2}}},
      {"a\\Eb", 0, "ab", {{0, 2}}},
      {"\\p{Xan}+",
       0,
       "-\xC3\xA9"
       "7-",
       {{1, 4}}},
      {"\\P{Xan}", 0, "a-", {{1, 2}}},
      {"\\p{L&}", 0, "1a", {{1, 2}}},
      {"\\p{Xwd}\\p{Xsp}", 0, "a_\v", {{1, 3}}},
      {"a\\p{Xsp}b\\p{Xps}",
       0,
       "a\xC2\x85"
       "b\xE1\xA0\x8E",
       {{0, 7}}},
      {"(*UTF8)(*UCP)a\\w", 0, "a\xC3\xA9", {{0, 3}}},
      // Where the case is ignored, PCRE folds letters but not \w, \p{..}
      // or POSIX classes: the long s and the Kelvin sign are not word
      // characters, \p{Lu} is upper case only, and [:upper:] (like
      // [:lower:]) is either case of an ASCII letter.
      {"a\\W", 0, "a\xC5\xBF a\xE2\x84\xAA", {{0, 3}, {4, 8}}},
      {"a\\w", 0, "a\xC5\xBF", {}},
      {"x[^\\w]", 0, "x\xE2\x84\xAA", {{0, 4}}},
      {"x\\p{Lu}", 0, "xa xA", {{3, 5}}},
      {"x[\\p{Lu}b]", 0, "xa xb xB xA", {{3, 5}, {6, 8}, {9, 11}}},
      {"x[[:upper:]]", 0, "xa x\xC5\xBF", {{0, 2}}},
      {"x[[:upper:]]", rules::kCaseSensitive, "xa xA", {{3, 5}}},
      {"(?-i)x\\w(?i)y\\w", 0, "x\xC5\xBFya xaY\xE2\x84\xAA xaYb", {{13, 17}}},
      // With ucp, POSIX classes are Unicode's sets.
      {"x[[:alpha:]]", rules::kUcp, "x1 x\xC3\xA9", {{3, 6}}},
      {"x[[:digit:]]", rules::kUcp, "x\xD9\xA3", {{0, 3}}},
      {"x[[:space:]]", rules::kUcp, "x\xC2\xA0", {{0, 3}}},
      {"x[[:punct:]]", rules::kUcp, "x\xC2\xBF", {{0, 3}}},
      {"x[[:upper:]]", rules::kUcp | rules::kCaseSensitive, "x\xC3\xA9 x\xC3\x89", {{4, 7}}},
      {"x[[:upper:]]", rules::kUcp, "x\xC3\xA9", {{0, 3}}},
      {"x[[:graph:]]", rules::kUcp, "x\xC2\xA0 x\xE2\x82\xAC", {{4, 8}}},
      {"x[[:print:]]", rules::kUcp, "x\x01 x\xC2\xA0", {{3, 6}}},
      // Negated sets in a class, which RE2 cannot write there: [a\W] is
      // [a] or [^\W's members], [^\W] is \W's members.
      {"x[\\W]", rules::kUcp, "x\xC3\xA9 x-", {{4, 6}}},
      {"x[a\\W]", rules::kUcp, "x\xC3\xA9 xA x-", {{4, 6}, {7, 9}}},
      {"x[^\\W]", rules::kUcp, "x- x\xC3\xA9", {{3, 6}}},
      {"x[[:^word:]]", rules::kUcp, "x\xC3\xA9 x-", {{4, 6}}},
      {"x[\\S]", rules::kUcp, "x\xC2\xA0 xa", {{4, 6}}},
      {"x[a\\V]", 0, "x\n xb", {{3, 5}}},
      // A member '^' that the class's sets, moved to its end, leave first.
      {"x[[:alpha:]^[[:punct:]]", rules::kUcp, "x\xC3\xA9 x^ x1", {{0, 3}, {4, 6}}},
  };
  for (const Case& c : cases) {
    auto m = Build({Regex(c.re, c.flags)});
    EXPECT_EQ(Hits(*m, c.text).empty(), c.spans.empty()) << c.re;
    EXPECT_EQ(SpansOf(*m, 0, c.text), c.spans) << c.re;
  }
  // Random patterns of these pieces on random texts: Hyperscan reports a
  // match exactly when RE2 finds a span.
  const char* pieces[] = {"a",   "b",   "\\s", "\\S",   "[\\s]", "[^\\s]", "[a\\s]", "\\s+",
                          ".",   "\\v", "\\V", "[\\v]", "\\h",   "\\H",    "[\\h]",  "[a\\v]",
                          "\\e", "\\d", "\\D", "\\w",   "\\W",   "[\\w]",  "[a\\d]", "\\w+"};
  const char* texts[] = {"a",
                         "b",
                         "\v",
                         "\n",
                         " ",
                         "\t",
                         "\f",
                         "\r",
                         "x",
                         "\xC2\x85",
                         "\xC2\xA0",
                         "\x1B",
                         "\xE2\x80\xA8",
                         "\xE3\x80\x80",
                         "\xE1\x9A\x80",
                         "\xE2\x80\x89",
                         "7",
                         "_",
                         "\xC3\xA9",      // e with an acute accent: a letter
                         "\xD9\xA3",      // an Arabic-Indic digit: a decimal digit
                         "\xE2\x85\xAB",  // a Roman numeral: a number, not a digit
                         "\xCE\xB6"};     // a Greek letter
  std::mt19937 rng(3);
  int matched = 0;
  for (int round = 0; round < 200; ++round) {
    std::string re;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i)
      re += pieces[rng() % std::size(pieces)];
    const uint32_t end = rng() % 4;
    if (end == 1) re += "$";
    if (end == 2) re += "\\Z";
    const uint32_t flags = (rng() % 2 ? static_cast<uint32_t>(rules::kMultiline) : 0u) |
                           (rng() % 2 ? static_cast<uint32_t>(rules::kUcp) : 0u);
    auto m = Build({Regex(re, flags)});
    for (int t = 0; t < 60; ++t) {
      std::string text;
      for (int i = 0, n = static_cast<int>(rng() % 6); i < n; ++i)
        text += texts[rng() % std::size(texts)];
      const bool hit = !Hits(*m, text).empty();
      ASSERT_EQ(hit, !SpansOf(*m, 0, text).empty()) << "'" << re << "' flags " << flags;
      matched += hit;
    }
  }
  EXPECT_GT(matched, 1000) << "the patterns must match often";
}

TEST(Matcher, UcpFlagMakesClassesUnicodeAware) {
  auto plain = Build({Regex("^\\w+$")});
  auto ucp = Build({Regex("^\\w+$", rules::kUcp)});
  EXPECT_TRUE(Hits(*plain, "привет").empty());
  EXPECT_EQ(Hits(*ucp, "привет"), std::set<uint32_t>{0});
}

TEST(Matcher, Utf8SpansAreByteOffsets) {
  auto m = Build({Regex("café")});
  std::string text = "un café ici";
  EXPECT_EQ(Hits(*m, text), std::set<uint32_t>{0});
  EXPECT_EQ(SpansOf(*m, 0, text), (Spans{{3, 8}}));  // é is two bytes
}

TEST(Matcher, PhrasesMatchOnWordBoundaries) {
  auto m = Build({Phrase("snap")});
  EXPECT_EQ(Hits(*m, "add me on snap"), std::set<uint32_t>{0});
  EXPECT_EQ(Hits(*m, "snap, later"), std::set<uint32_t>{0});
  EXPECT_TRUE(Hits(*m, "snapshot").empty());
  EXPECT_TRUE(Hits(*m, "ohsnap").empty());
  EXPECT_TRUE(Hits(*m, "snap_1").empty());
}

TEST(Matcher, PhrasesAreLiteralNotRegex) {
  auto m = Build({Phrase("a.b (c)")});
  EXPECT_EQ(Hits(*m, "x a.b (c) y"), std::set<uint32_t>{0});
  EXPECT_TRUE(Hits(*m, "x axb (c) y").empty());
  EXPECT_EQ(SpansOf(*m, 0, "x a.b (c) y"), (Spans{{2, 9}}));
}

TEST(Matcher, PhrasesWithUtf8AndPunctuation) {
  auto m = Build({Phrase("café, s'il")});
  EXPECT_EQ(Hits(*m, "un café, s'il vous plaît"), std::set<uint32_t>{0});
  EXPECT_TRUE(Hits(*m, "un cafe, s'il").empty());
  EXPECT_EQ(SpansOf(*m, 0, "un café, s'il"), (Spans{{3, 14}}));
}

TEST(Matcher, PhraseBoundaryCheckedAtEveryOccurrence) {
  // The first occurrence is inside a word; the second is whole.
  auto m = Build({Phrase("snap")});
  EXPECT_EQ(Hits(*m, "snapshot then snap"), std::set<uint32_t>{0});
  EXPECT_EQ(SpansOf(*m, 0, "snapshot then snap"), (Spans{{14, 18}}));
}

TEST(Matcher, PhrasesAreCaseInsensitive) {
  auto m = Build({Phrase("Our Secret")});
  EXPECT_EQ(Hits(*m, "this is OUR SECRET"), std::set<uint32_t>{0});
}

// A phrase ignores the case of ASCII letters and matches other characters
// as written (normalize folds case in every script). The scan, the spans
// from its occurrences, FindSpans and the RE2::Set variant agree: RE2's
// (?i) took E acute for e acute, the long s for s and the Kelvin sign for
// k, where the scan did not.
// A phrase and a text, and the spans every path finds: the scan (and its
// occurrences, selected as the Evaluator selects them), FindSpans and the
// RE2::Set variant; and whether rules::PhrasePattern, the phrase as one
// regex with its boundaries, matches in RE2.
struct PhraseCase {
  const char* phrase;
  const char* text;
  Spans spans;
};

void ExpectOnEveryPath(const PhraseCase& c) {
  auto hs = Build({Phrase(c.phrase)});
  std::unique_ptr<Matcher> set;
  ASSERT_TRUE(Matcher::BuildWithRe2Set({Phrase(c.phrase)}, &set).ok());
  EXPECT_EQ(Hits(*hs, c.text).empty(), c.spans.empty()) << c.phrase << " in " << c.text;
  EXPECT_EQ(Hits(*set, c.text).empty(), c.spans.empty()) << c.phrase << " in " << c.text;
  EXPECT_EQ(SpansOf(*hs, 0, c.text), c.spans) << c.phrase << " in " << c.text;
  const RE2 re(rules::Re2Pattern(rules::PhrasePattern(c.phrase), rules::kCaseSensitive));
  ASSERT_TRUE(re.ok()) << re.error();
  EXPECT_EQ(RE2::PartialMatch(c.text, re), !c.spans.empty()) << c.phrase << " in " << c.text;
  std::vector<std::pair<uint32_t, uint32_t>> found;
  auto scratch = hs->NewScratch();
  ASSERT_TRUE(hs->Scan(
                    DatabaseSlot(Field::kText, false), c.text, *scratch,
                    [](uint32_t, uint32_t start, uint32_t end, void* f) {
                      static_cast<std::vector<std::pair<uint32_t, uint32_t>>*>(f)->emplace_back(
                          start, end);
                    },
                    &found)
                  .ok());
  Spans selected;
  Matcher::SelectSpans(&found, 8, &selected);
  EXPECT_EQ(selected, c.spans) << c.phrase << " in " << c.text;
}

TEST(Matcher, PhrasesIgnoreTheCaseOfAsciiLettersOnlyOnEveryPath) {
  const PhraseCase cases[] = {
      {"caf\xC3\xA9 meet", "CAF\xC3\xA9 MEET later", {{0, 10}}},
      {"caf\xC3\xA9 meet", "CAF\xC3\x89 MEET later", {}},
      {"\xD0\x9C\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2\xD0\xB0",
       "in \xD0\xBC\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2\xD0\xB0 "
       "\xD0\x9C\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2"
       "\xD0\xB0!",
       {{16, 28}}},
      {"x\xC3\xA9y", "ax\xC3\xA9y x\xC3\xA9yb X\xC3\xA9Y", {{12, 16}}},  // whole words
      {"snap", "\xC5\xBFnap snap", {{6, 10}}},
      {"kik", "\xE2\x84\xAAik KIK", {{6, 9}}},
  };
  for (const PhraseCase& c : cases) ExpectOnEveryPath(c);
}

// A phrase's edges are word boundaries in every script: a letter, mark or
// number beside a phrase that starts or ends with one makes it part of a
// longer word ("snap" is not in "snapé", nor a Polish word in a longer
// one, nor a Cyrillic word inside another); punctuation, symbols and
// spaces beyond ASCII (curly quotes, an ellipsis, an emoji, a no-break
// space) are not word characters.
TEST(Matcher, PhraseBoundariesAreWordsInEveryScript) {
  const PhraseCase cases[] = {
      {"snap", "snap\xC3\xA9 snap", {{7, 11}}},                     // é after
      {"snap", "\xC3\xA9snap snap", {{7, 11}}},                     // é before
      {"snap", "snap\xCC\x81 snap", {{7, 11}}},                     // a combining mark after
      {"snap", "snap\xD9\xA1 snap", {{7, 11}}},                     // an Arabic-Indic digit after
      {"snap", "snap\xE2\x80\xBF snap", {{8, 12}}},                 // connector punctuation
      {"snap", "\xE2\x80\x9Csnap\xE2\x80\x9D", {{3, 7}}},           // curly quotes
      {"snap", "on snap\xE2\x80\xA6", {{3, 7}}},                    // an ellipsis
      {"snap", "snap\xF0\x9F\x98\x80", {{0, 4}}},                   // an emoji
      {"snap", "snap\xC2\xA0me", {{0, 4}}},                         // a no-break space
      {"dziecko", "dziecko\xC5\x9B\xC4\x87 dziecko.", {{12, 19}}},  // ść
      {"\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",          // a Cyrillic word
       "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\xD1\x81\xD1\x82\xD0\xB2"
       " \xD0\xBA\xD0\xB0\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82"
       " \xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82!",
       {{36, 48}}},
      {"- -", "a- -b", {{1, 4}}},  // no word character at its edges: no boundary
  };
  for (const PhraseCase& c : cases) ExpectOnEveryPath(c);
}

TEST(Matcher, ManySpansAreReportedLeftToRight) {
  auto m = Build({Phrase("hi")});
  EXPECT_EQ(SpansOf(*m, 0, "hi there, hi again, hi"), (Spans{{0, 2}, {10, 12}, {20, 22}}));
}

TEST(Matcher, LeavesAreSeparatedByField) {
  auto m = Build({Regex("alpha", 0, Field::kText), Regex("alpha", 0, Field::kUsername)});
  EXPECT_EQ(Hits(*m, "alpha", Field::kText), std::set<uint32_t>{0});
  EXPECT_EQ(Hits(*m, "alpha", Field::kUsername), std::set<uint32_t>{1});
  EXPECT_TRUE(Hits(*m, "alpha", Field::kCaption).empty());
}

TEST(Matcher, EachLeafReportedOncePerScan) {
  auto m = Build({Regex("a")});
  int calls = 0;
  auto scratch = m->NewScratch();
  ASSERT_TRUE(m->Scan(
                   DatabaseSlot(Field::kText, false), "aaaa", *scratch,
                   [](uint32_t, uint32_t, uint32_t, void* c) { ++*static_cast<int*>(c); }, &calls)
                  .ok());
  EXPECT_EQ(calls, 1);
}

TEST(Matcher, InvalidPatternIsAnErrorNamingIt) {
  std::unique_ptr<Matcher> m;
  Status s = Matcher::Build({Regex("(unclosed")}, "", "", &m);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("(unclosed"), std::string::npos) << s.message();
}

TEST(Matcher, LargeFieldScansWithoutTrouble) {
  auto m = Build({Phrase("needle")});
  std::string big(10u << 20, 'x');
  big.replace(big.size() - 10, 8, " needle ");
  EXPECT_EQ(Hits(*m, big), std::set<uint32_t>{0});
}

TEST(Matcher, CompiledDatabasesAreCachedOnDisk) {
  std::string dir = ::testing::TempDir() + "/cw-hs-cache-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::unique_ptr<Matcher> first, second, other;
  bool compiled = false;
  ASSERT_TRUE(Matcher::Build({Regex("cached")}, dir, "v1", &first, &compiled).ok());
  EXPECT_TRUE(compiled);
  ASSERT_TRUE(Matcher::Build({Regex("cached")}, dir, "v1", &second, &compiled).ok());
  EXPECT_FALSE(compiled) << "a second build with the same key must load the cache";
  EXPECT_EQ(Hits(*second, "is it cached?"), std::set<uint32_t>{0});
  ASSERT_TRUE(Matcher::Build({Regex("other")}, dir, "v2", &other, &compiled).ok());
  EXPECT_TRUE(compiled) << "another key must compile";
  std::filesystem::remove_all(dir);
}

TEST(Matcher, CorruptCacheFileIsRecompiled) {
  std::string dir = ::testing::TempDir() + "/cw-hs-corrupt-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::unique_ptr<Matcher> m;
  bool compiled = false;
  ASSERT_TRUE(Matcher::Build({Regex("cached")}, dir, "k", &m, &compiled).ok());
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ofstream(entry.path(), std::ios::trunc) << "garbage";
  }
  ASSERT_TRUE(Matcher::Build({Regex("cached")}, dir, "k", &m, &compiled).ok());
  EXPECT_TRUE(compiled);
  EXPECT_EQ(Hits(*m, "cached"), std::set<uint32_t>{0});
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::match
