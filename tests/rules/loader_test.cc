#include "engine/rules/loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/rules/duration.h"
#include "engine/rules/vocabulary.h"
#include "tests/testing.h"

namespace carewatch::rules {
namespace {

using testing::FakeFiles;
using testing::LoadPack;
using testing::PackWithRules;

// The first error, for tests that expect exactly one problem.
Diagnostic FirstError(const LoadResult& r) {
  for (const auto& d : r.diagnostics) {
    if (d.level == Diagnostic::Level::kError) return d;
  }
  ADD_FAILURE() << "no error; diagnostics:\n" << testing::Describe(r.diagnostics);
  return {};
}

void ExpectErrorAt(const std::string& yaml, int line, int col, const std::string& fragment,
                   const std::string& rule_id = "", const FakeFiles& files = {}) {
  LoadResult r = LoadPack(yaml, files);
  EXPECT_FALSE(r.ruleset) << "a pack with errors must not load";
  Diagnostic d = FirstError(r);
  EXPECT_EQ(d.pos.file, "pack.yaml");
  EXPECT_EQ(d.pos.line, line) << d.ToString();
  EXPECT_EQ(d.pos.col, col) << d.ToString();
  EXPECT_NE(d.message.find(fragment), std::string::npos) << d.ToString();
  EXPECT_EQ(d.rule_id, rule_id) << d.ToString();
}

const char* kGoodRule =
    "  - id: r1\n"
    "    duty: d\n"
    "    severity: high\n"
    "    when: {field: text, phrases: [hello there]}\n"
    "    tests:\n"
    "      - {name: t, report: {text: hello there}, expect: match}\n";

TEST(Loader, LoadsAValidPack) {
  LoadResult r = LoadPack(PackWithRules(kGoodRule));
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  EXPECT_TRUE(r.diagnostics.empty()) << testing::Describe(r.diagnostics);
  ASSERT_EQ(r.ruleset->rules().size(), 1u);
  const Rule& rule = r.ruleset->rules()[0];
  EXPECT_EQ(rule.id, "r1");
  EXPECT_EQ(rule.severity, Severity::kHigh);
  EXPECT_EQ(rule.when.kind, Condition::Kind::kPhrases);
  EXPECT_EQ(rule.when.pos.line, 9);
  EXPECT_EQ(r.ruleset->DeadlineFor(rule), 86400);
  EXPECT_EQ(r.ruleset->ActionsFor(rule), std::vector<std::string>{"remove_content"});
  ASSERT_EQ(rule.tests.size(), 1u);
  EXPECT_EQ(rule.tests[0].report_json, R"({"text":"hello there"})");
  EXPECT_EQ(r.ruleset->version().size(), 16u);
}

TEST(Loader, VersionIsAContentHash) {
  LoadResult a = LoadPack(PackWithRules(kGoodRule));
  LoadResult b = LoadPack(PackWithRules(kGoodRule));
  LoadResult c = LoadPack(
      PackWithRules(std::string(kGoodRule) +
                    "  - {id: r2, duty: d, severity: low, when: {field: text, regex: 'x+y'}}\n"));
  ASSERT_TRUE(a.ruleset && b.ruleset && c.ruleset);
  EXPECT_EQ(a.ruleset->version(), b.ruleset->version());
  EXPECT_NE(a.ruleset->version(), c.ruleset->version());
}

TEST(Loader, YamlSyntaxError) {
  ExpectErrorAt("pack: test\nversion: [1, 2\n", 3, 1,
                "YAML syntax error: end of sequence flow not found");
}

TEST(Loader, NotUtf8) {
  ExpectErrorAt("pack: test\nversion: \"1\"\n# caf\xE9\n", 3, 6, "not valid UTF-8");
}

TEST(Loader, UnknownTopLevelKey) {
  ExpectErrorAt("pack: test\nversion: \"1\"\nrulez: []\n", 3, 1, "unknown key 'rulez'");
}

TEST(Loader, MissingRequiredKey) {
  ExpectErrorAt(
      PackWithRules("  - id: r1\n    severity: high\n    when: {field: text, regex: 'a'}\n"), 6, 5,
      "missing required key 'duty'", "r1");
}

TEST(Loader, ExtractNeedsARegexAKnownKindAndAPlatformForHandles) {
  auto pack = [](const std::string& leaf) {
    return PackWithRules("  - id: r1\n    duty: d\n    severity: high\n    when: " + leaf + "\n");
  };
  LoadResult ok =
      LoadPack(pack("{field: text, regex: 'x([a-z]+)', extract: {kind: handle, "
                    "platform: otherapp}}"));
  EXPECT_TRUE(ok.ruleset) << testing::Describe(ok.diagnostics);
  ExpectErrorAt(pack("{field: text, phrases: [a], extract: email}"), 9, 48,
                "'extract' applies only to regex", "r1");
  ExpectErrorAt(pack("{field: text, regex: 'a', extract: emial}"), 9, 46,
                "unknown identifier kind 'emial' (did you mean 'email'?)", "r1");
  ExpectErrorAt(pack("{field: text, regex: 'a', extract: handle}"), 9, 46,
                "a handle needs its platform", "r1");
  ExpectErrorAt(pack("{field: text, regex: 'a', extract: {kind: email, platform: x}}"), 9, 46,
                "only a handle has a platform", "r1");
}

TEST(Loader, UnknownKeyInRule) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: high\n    colour: red\n"
                              "    when: {field: text, regex: 'a'}\n"),
                9, 5, "unknown key 'colour'", "r1");
}

TEST(Loader, WrongType) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: high\n"
                              "    when: {field: text, phrases: hello}\n"),
                9, 34, "'phrases' must be a list", "r1");
}

TEST(Loader, DuplicateRuleIdAcrossPacks) {
  std::string a = PackWithRules(kGoodRule);
  std::string b = "pack: other\nversion: \"1\"\nrules:\n" + std::string(kGoodRule);
  LoadResult r = LoadRuleSetFromSources({{"a.yaml", a}, {"b.yaml", b}}, FakeFiles{}.Reader());
  EXPECT_FALSE(r.ruleset);
  Diagnostic d = FirstError(r);
  EXPECT_EQ(d.pos.file, "b.yaml");
  EXPECT_EQ(d.pos.line, 4);
  EXPECT_EQ(d.pos.col, 9);
  EXPECT_NE(d.message.find("already defined at a.yaml:6"), std::string::npos) << d.ToString();
}

TEST(Loader, DutyDefinedTwice) {
  ExpectErrorAt(
      "pack: test\nversion: \"1\"\nduties:\n"
      "  - {id: d, deadline: 24h, actions: [remove_content]}\n"
      "  - {id: d, deadline: 12h, actions: [remove_content]}\n",
      5, 10, "duty 'd' is already defined at pack.yaml:4");
}

TEST(Loader, UndefinedDuty) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: nope\n    severity: low\n    when: {field: text, regex: 'a'}\n"),
      7, 11, "undefined duty 'nope'", "r1");
}

TEST(Loader, BadDuration) {
  ExpectErrorAt(
      "pack: test\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24x, actions: "
      "[remove_content]}\n",
      4, 23, "unknown unit 'x'");
}

TEST(Loader, ZeroDuration) {
  ExpectErrorAt(
      "pack: test\nversion: \"1\"\nduties:\n  - {id: d, deadline: 0h, actions: [remove_content]}\n",
      4, 23, "greater than zero");
}

TEST(Loader, BadSeverity) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: urgent\n    when: {field: text, regex: 'a'}\n"),
      8, 15, "severity 'urgent'", "r1");
}

// carewatchd refuses RecordAction with an unknown action name, so an
// obligation requiring one could never be met: an error, not a warning.
TEST(Loader, UnknownRequiredActionIsAnError) {
  LoadResult r = LoadPack(
      "pack: test\nversion: \"1\"\nduties:\n"
      "  - {id: d, deadline: 1h, actions: [notify_moon]}\n");
  EXPECT_FALSE(r.ruleset) << "an obligation that can never be met must not load";
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].level, Diagnostic::Level::kError);
  EXPECT_EQ(r.diagnostics[0].pos.line, 4);
  EXPECT_EQ(r.diagnostics[0].pos.col, 36);
  EXPECT_NE(r.diagnostics[0].message.find("unknown action 'notify_moon'"), std::string::npos);
}

TEST(Loader, UnknownSurfaceIsAWarning) {
  LoadResult r = LoadPack(PackWithRules(
      "  - id: r1\n    duty: d\n    severity: low\n    when: {field: surface, equals: hologram}\n"
      "    tests: [{name: t, report: {surface: hologram}, expect: match}]\n"));
  ASSERT_TRUE(r.ruleset);
  ASSERT_EQ(r.diagnostics.size(), 1u) << testing::Describe(r.diagnostics);
  EXPECT_EQ(r.diagnostics[0].level, Diagnostic::Level::kWarning);
  EXPECT_EQ(r.diagnostics[0].pos.line, 9);
  EXPECT_EQ(r.diagnostics[0].pos.col, 36);
  EXPECT_EQ(r.diagnostics[0].rule_id, "r1");
}

TEST(Loader, RegexRejectedByHyperscanPassesItsMessageOn) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, regex: 'a(?=b)'}\n"),
      9, 32, "Hyperscan rejects the pattern", "r1");
  LoadResult r = LoadPack(PackWithRules(
      "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, regex: 'a(?=b)'}\n"));
  EXPECT_NE(FirstError(r).message.find("not supported"), std::string::npos)
      << FirstError(r).message;
}

// Where Hyperscan names the byte of a pattern it refuses ("\k at index 4"),
// the diagnostic's column is that byte's in the file, through the
// scalar's quoting: '' is one quote, "\u00e9" two bytes, "\t" one.
TEST(Loader, ARefusedRegexIsPointedAtWhereHyperscanSays) {
  const std::string rule = "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, ";
  ExpectErrorAt(PackWithRules(rule + "regex: 'it''s\\kx'}\n"), 9, 38, "at index 4", "r1");
  ExpectErrorAt(PackWithRules(rule + "regex: \"\\u00e9\\t\\\\kx\"}\n"), 9, 41, "at index 3", "r1");
  ExpectErrorAt(PackWithRules(rule + "regex: ab\\kx}\n"), 9, 34, "at index 2", "r1");
  // A block scalar: the value's own position.
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n    when:\n"
                              "      field: text\n      regex: |\n        ab\\kx\n"),
                11, 14, "at index 2", "r1");
}

// Under normalize a phrase of separators and punctuation folds to nothing:
// an error at that phrase (the databases could not be built from it, and it
// would match every report), not at a phrase that keeps a character.
TEST(Loader, APhraseThatNormalizesToNothingIsAnError) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n"
                              "    when: {field: text, normalize: true, phrases: [snap, '- -']}\n"),
                9, 58, "'- -' is nothing once normalized", "r1");
  LoadResult r = LoadPack(
      PackWithRules("  - id: r1\n    duty: d\n    severity: low\n"
                    "    when: {field: text, normalize: true, phrases: ['!!!', 'a-b', '#']}\n"
                    "    tests: [{name: t, report: {text: a b}, expect: match}]\n"
                    "  - id: r2\n    duty: d\n    severity: low\n"
                    "    when: {field: text, phrases: ['- -']}\n"
                    "    tests: [{name: t, report: {text: x - - y}, expect: match}]\n"));
  EXPECT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
}

// A value shown in a diagnostic keeps it on one line and writes no control
// character to the terminal.
TEST(Loader, ControlCharactersInADiagnosticAreEscaped) {
  LoadResult r =
      LoadPack(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n"
                             "    when: {field: text, regex: \"a\\x1B[2J\\n(\"}\n"));
  const Diagnostic d = FirstError(r);
  EXPECT_NE(d.message.find("bad regex 'a\\x1B[2J\\n('"), std::string::npos) << d.message;
  EXPECT_EQ(d.ToString().find_first_of("\n\x1B"), std::string::npos) << d.ToString();
}

// Without normalize a phrase's letters beyond ASCII match in the case
// written: the loader says so where such a phrase is, and not for one
// under normalize or without such a letter.
TEST(Loader, APhraseWhoseCaseMattersIsWarnedAbout) {
  LoadResult r = LoadPack(PackWithRules(
      "  - id: r1\n    duty: d\n    severity: low\n"
      "    when: {field: text, phrases: [snap, \"caf\xC3\xA9 meet\", \"\xE4\xB8\xAD\"]}\n"
      "    tests: [{name: t, report: {text: snap}, expect: match}]\n"
      "  - id: r2\n    duty: d\n    severity: low\n"
      "    when: {field: text, normalize: true, phrases: [\"caf\xC3\xA9\"]}\n"
      "    tests: [{name: t, report: {text: CAFE}, expect: match}]\n"));
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  ASSERT_EQ(r.diagnostics.size(), 1u) << testing::Describe(r.diagnostics);
  EXPECT_EQ(r.diagnostics[0].level, Diagnostic::Level::kWarning);
  EXPECT_EQ(r.diagnostics[0].pos.line, 9);
  EXPECT_EQ(r.diagnostics[0].pos.col, 41);
  EXPECT_NE(r.diagnostics[0].message.find("U+00E9"), std::string::npos) << r.diagnostics[0].message;
}

// Under the `x` option a #-comment may end the pattern, as PCRE reads it
// (Hyperscan alone refuses it: "Unterminated comment"), here a block
// scalar without a final line feed.
TEST(Loader, ACommentMayEndAnExtendedRegex) {
  LoadResult r = LoadPack(
      PackWithRules("  - id: r1\n    duty: d\n    severity: low\n    when:\n      field: text\n"
                    "      regex: |-\n        (?x) snap \\s+ chat   # the app's name\n"
                    "    tests: [{name: t, report: {text: snap chat}, expect: match}]\n"));
  EXPECT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  EXPECT_TRUE(r.diagnostics.empty()) << testing::Describe(r.diagnostics);
}

TEST(Loader, RegexThatMatchesEmpty) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, regex: 'a*'}\n"),
      9, 32, "empty string", "r1");
}

TEST(Loader, UnknownRegexFlag) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n"
                              "    when: {field: text, regex: 'a', flags: [sticky]}\n"),
                9, 44, "unknown flag 'sticky'", "r1");
}

TEST(Loader, AtLeastOutOfRange) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n    when:\n"
                              "      at_least: 3\n      of:\n        - {field: text, regex: 'a'}\n"
                              "        - {field: text, regex: 'b'}\n"),
                10, 17, "from 1 to 2", "r1");
}

TEST(Loader, AtLeastZero) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n    when:\n"
                              "      at_least: 0\n      of: [{field: text, regex: 'a'}]\n"),
                10, 17, "from 1 to 1", "r1");
}

TEST(Loader, EmptyCombinator) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n    when: {any: []}\n"),
                9, 17, "at least one condition", "r1");
}

TEST(Loader, UnknownField) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: body, regex: 'a'}\n"),
      9, 19, "unknown field 'body'", "r1");
}

// An unknown field, a bad flag or a bad setting does not hide the rest of
// its condition's problems: one run names them all, each where it is.
TEST(Loader, AnUnknownFieldStillHasItsConditionChecked) {
  LoadResult r = LoadPack(PackWithRules(
      "  - id: r1\n    duty: d\n    severity: low\n"
      "    when: {any: [{field: txt, regex: '(unclosed'}, {field: bdy, phrases: []}]}\n"
      "  - id: r2\n    duty: d\n    severity: low\n"
      "    when: {field: text, regex: '(x', flags: [dotal], normalize: maybe}\n"));
  EXPECT_FALSE(r.ruleset);
  const std::string all = testing::Describe(r.diagnostics);
  for (const char* expected : {
           "pack.yaml:9:26: error: unknown field 'txt' (did you mean 'text'?) [r1]",
           "pack.yaml:9:39: error: bad regex '(unclosed'",
           "pack.yaml:9:60: error: unknown field 'bdy'",
           "pack.yaml:9:74: error: phrases must list at least one phrase",
           "pack.yaml:13:45: error: unknown flag 'dotal'",
           "pack.yaml:13:65: error: normalize must be true or false [r2]",
           "pack.yaml:13:33: error: bad regex '(x'",
       }) {
    EXPECT_NE(all.find(expected), std::string::npos) << "missing: " << expected << "\n" << all;
  }
}

TEST(Loader, RegexOnCategoricalField) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: surface, regex: 'a'}\n"),
      9, 19, "applies to text fields", "r1");
}

TEST(Loader, TwoOperatorsInOneLeaf) {
  ExpectErrorAt(PackWithRules("  - id: r1\n    duty: d\n    severity: low\n"
                              "    when: {field: text, regex: 'a', phrases: [b]}\n"),
                9, 11, "more than one", "r1");
}

TEST(Loader, MissingListFile) {
  ExpectErrorAt(
      "pack: test\nversion: \"1\"\nlists:\n  bad: {kind: hash, file: lists/missing.txt}\n", 4, 27,
      "cannot read list file lists/missing.txt");
}

TEST(Loader, ListFilesResolveRelativeToThePack) {
  FakeFiles files;
  files.files["packs/lists/h.txt"] = "# synthetic\nABCDEF01\n\nabcdef02  # trailing comment\n";
  LoadResult r = rules::LoadRuleSetFromSources(
      {{"packs/p.yaml",
        "pack: test\nversion: \"1\"\nlists:\n  h: {kind: hash, file: lists/h.txt}\n"}},
      files.Reader());
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  const ListDef* list = r.ruleset->FindList("h");
  ASSERT_NE(list, nullptr);
  EXPECT_EQ(list->entries, (std::vector<std::string>{"ABCDEF01", "abcdef02"}));
}

TEST(Loader, BadHashListEntryNamesTheListLine) {
  FakeFiles files;
  files.files["h.txt"] = "abcdef\nnot-hex\n";
  LoadResult r =
      LoadPack("pack: test\nversion: \"1\"\nlists:\n  h: {kind: hash, file: h.txt}\n", files);
  Diagnostic d = FirstError(r);
  EXPECT_EQ(d.pos.file, "h.txt");
  EXPECT_EQ(d.pos.line, 2);
}

TEST(Loader, UrlListEntriesThatAreNotUrlsAreWarnedOfAtTheirLines) {
  FakeFiles files;
  std::string entries = "listed.test\nhttp://bad host.test/\nfiles.test/a\nlisted.test:99999\n";
  for (int i = 0; i < 12; ++i) entries += "http://@/" + std::to_string(i) + "\n";
  files.files["u.txt"] = entries;
  LoadResult r =
      LoadPack("pack: test\nversion: \"1\"\nlists:\n  u: {kind: url, file: u.txt}\n", files);
  ASSERT_TRUE(r.ruleset) << "a warning, not an error: the pack still loads";
  std::vector<int> lines;
  std::string more;
  for (const Diagnostic& d : r.diagnostics) {
    ASSERT_EQ(d.level, Diagnostic::Level::kWarning) << d.message;
    if (d.pos.file == "u.txt") {
      lines.push_back(d.pos.line);
      EXPECT_NE(d.message.find("is not a URL"), std::string::npos) << d.message;
    } else if (d.message.find("more entries") != std::string::npos) {
      more = d.message;
    }
  }
  // Lines 2 and 4, then the first eight of the twelve hostless ones.
  EXPECT_EQ(lines, (std::vector<int>{2, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(more, "4 more entries of list 'u' are not URLs");
  EXPECT_EQ(r.ruleset->FindList("u")->entries.size(), 16u) << "entries are kept as written";
}

TEST(Loader, UnknownList) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: hash, in_list: nope}\n"),
      9, 11, "unknown list 'nope'", "r1");
}

TEST(Loader, ListKindMustFitTheField) {
  FakeFiles files;
  files.files["u.txt"] = "bad.test\n";
  ExpectErrorAt(
      "pack: test\nversion: \"1\"\nduties:\n  - {id: d, deadline: 1h, actions: [remove_content]}\n"
      "lists:\n  u: {kind: url, file: u.txt}\nrules:\n"
      "  - {id: r1, duty: d, severity: low, when: {field: hash, in_list: u}}\n",
      8, 44, "holds URLs", "r1", files);
}

TEST(Loader, BadPackName) {
  ExpectErrorAt("pack: Test_Pack\nversion: \"1\"\n", 1, 7, "must match [a-z0-9.-]+");
}

TEST(Loader, BadTestExpectation) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, regex: 'a'}\n"
          "    tests: [{name: t, report: {text: a}, expect: maybe}]\n"),
      10, 50, "expect must be match or no_match", "r1");
}

TEST(Loader, TestWithoutExpectation) {
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, regex: 'a'}\n"
          "    tests: [{name: t, report: {text: a}}]\n"),
      10, 13, "needs 'expect'", "r1");
}

TEST(Loader, DeepNestingIsRefused) {
  std::string when = "{field: text, regex: 'a'}";
  for (int i = 0; i < 70; ++i) when = "{all: [" + when + "]}";
  LoadResult r =
      LoadPack(PackWithRules("  - {id: r1, duty: d, severity: low, when: " + when + "}\n"));
  EXPECT_FALSE(r.ruleset);
  EXPECT_NE(FirstError(r).message.find("nest deeper"), std::string::npos);
}

TEST(Loader, EmptyFile) { ExpectErrorAt("", 1, 1, "file is empty"); }

TEST(Loader, AccountabilityFile) {
  LoadResult r =
      rules::LoadRuleSetFromSources({{"acc.yaml",
                                      "accountability:\n  - {service_id: s, duty: \"csea.*\", "
                                      "name: A, role: Head, from: 2025-03-17}\n"
                                      "  - {service_id: s, duty: x, name: B, role: Head, from: "
                                      "2025-03-17T09:00:00+01:00, to: 2026-01-01}\n"}},
                                    FakeFiles{}.Reader());
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  ASSERT_EQ(r.ruleset->accountability().size(), 2u);
  const Accountability& a = r.ruleset->accountability()[0];
  EXPECT_EQ(a.from, *ParseDateTime("2025-03-17T00:00:00Z"));
  EXPECT_FALSE(a.to);
  EXPECT_TRUE(a.CoversDuty("csea.swift-takedown"));
  EXPECT_FALSE(a.CoversDuty("cseax.other"));
  EXPECT_EQ(r.ruleset->accountability()[1].from, *ParseDateTime("2025-03-17T08:00:00Z"));
}

TEST(Loader, DateOnlyToIncludesTheWholeDay) {
  LoadResult r = rules::LoadRuleSetFromSources(
      {{"acc.yaml",
        "accountability:\n  - {service_id: s, duty: x, name: A, role: R, from: 2025-03-17, "
        "to: 2026-01-05}\n  - {service_id: s, duty: y, name: B, role: R, from: 2025-03-17, "
        "to: 2026-01-05T12:00:00Z}\n"}},
      FakeFiles{}.Reader());
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  EXPECT_EQ(*r.ruleset->accountability()[0].to, *ParseDateTime("2026-01-06T00:00:00Z"));
  EXPECT_EQ(*r.ruleset->accountability()[1].to, *ParseDateTime("2026-01-05T12:00:00Z"))
      << "a time is taken as given";
}

TEST(Loader, TenureGapsAndOverlapsOfOneScopeAreWarned) {
  LoadResult r = rules::LoadRuleSetFromSources(
      {{"acc.yaml",
        "accountability:\n"
        "  - {service_id: s, duty: x, name: A, role: R, from: 2025-01-01, to: 2025-06-30}\n"
        "  - {service_id: s, duty: x, name: B, role: R, from: 2025-07-03, to: 2025-12-31}\n"
        "  - {service_id: s, duty: x, name: C, role: R, from: 2025-12-01}\n"
        "  - {service_id: s, duty: other, name: D, role: R, from: 2025-12-01}\n"}},
      FakeFiles{}.Reader());
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  std::vector<std::string> warnings;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.level == Diagnostic::Level::kWarning)
      warnings.push_back(std::to_string(d.pos.line) + ": " + d.message);
  }
  ASSERT_EQ(warnings.size(), 2u) << testing::Describe(r.diagnostics);
  EXPECT_NE(warnings[0].find("3: gap of 2d with nobody accountable before B"), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[1].find("4: tenure of C overlaps an earlier one for s / x"), std::string::npos)
      << warnings[1];
}

TEST(Loader, RecordGraceDefaultsToAnHourAndMayBeZero) {
  LoadResult r = LoadPack(
      "pack: p\nversion: \"1\"\nduties:\n"
      "  - {id: a, deadline: 1h, actions: [remove_content]}\n"
      "  - {id: b, deadline: 1h, record_grace: 0s, actions: [remove_content]}\n"
      "  - {id: c, deadline: 1h, record_grace: 2h, actions: [remove_content]}\n"
      "rules: []\n");
  ASSERT_TRUE(r.ruleset) << testing::Describe(r.diagnostics);
  EXPECT_EQ(r.ruleset->FindDuty("a")->record_grace_seconds, 3600);
  EXPECT_EQ(r.ruleset->FindDuty("b")->record_grace_seconds, 0);
  EXPECT_EQ(r.ruleset->FindDuty("c")->record_grace_seconds, 7200);
  ExpectErrorAt(
      "pack: p\nversion: \"1\"\nduties:\n"
      "  - {id: a, deadline: 1h, record_grace: soon, actions: [remove_content]}\nrules: []\n",
      4, 41, "bad duration 'soon'");
}

TEST(Loader, AccountabilityBadDate) {
  LoadResult r = rules::LoadRuleSetFromSources(
      {{"acc.yaml",
        "accountability:\n  - {service_id: s, duty: x, name: A, role: R, from: 17/03/2025}\n"}},
      FakeFiles{}.Reader());
  Diagnostic d = FirstError(r);
  EXPECT_EQ(d.pos.line, 2);
  EXPECT_EQ(d.pos.col, 54);
  EXPECT_NE(d.message.find("bad date"), std::string::npos);
}

// A name with a NUL would reach the ledger's text columns, which on
// PostgreSQL cannot hold one: refused where it is written.
TEST(Loader, TextWithANulIsRefusedAtItsPosition) {
  LoadResult r = rules::LoadRuleSetFromSources(
      {{"acc.yaml",
        "accountability:\n  - {service_id: s, duty: x, name: \"A\\0B\", role: R, from: "
        "2025-03-17}\n"}},
      FakeFiles{}.Reader());
  EXPECT_FALSE(r.ruleset);
  Diagnostic d = FirstError(r);
  EXPECT_EQ(d.pos.line, 2);
  EXPECT_EQ(d.pos.col, 36);  // the value
  EXPECT_NE(d.message.find("name must not contain a NUL"), std::string::npos) << d.message;
}

TEST(Duration, FormatDateIsTheDayOfFormatDateTime) {
  std::vector<int64_t> times = {0,
                                -1,
                                86399,
                                86400,
                                -86400,
                                -86401,
                                951782400,   // 2000-02-29
                                4107542399,  // 2100-02-28T23:59:59Z
                                -30610224000,
                                -30610224001,
                                253402300799,
                                253402300800,
                                INT64_MIN,
                                INT64_MAX};
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < 100000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    times.push_back(static_cast<int64_t>(x % 300000000000ULL) - 40000000000LL);
  }
  for (int64_t t : times) {
    ASSERT_EQ(FormatDate(t), FormatDateTime(t).substr(0, 10)) << t;
  }
  EXPECT_EQ(FormatDate(951782400), "2000-02-29");
}

TEST(Duration, ParsesUnitsAndSequences) {
  std::string error;
  EXPECT_EQ(ParseDuration("90s", &error), 90);
  EXPECT_EQ(ParseDuration("15m", &error), 900);
  EXPECT_EQ(ParseDuration("24h", &error), 86400);
  EXPECT_EQ(ParseDuration("30d", &error), 30 * 86400);
  EXPECT_EQ(ParseDuration("1d12h", &error), 36 * 3600);
  EXPECT_FALSE(ParseDuration("h", &error));
  EXPECT_FALSE(ParseDuration("12", &error));
  EXPECT_FALSE(ParseDuration("-1h", &error));
  EXPECT_FALSE(ParseDuration("99999999999999999999d", &error));
  EXPECT_EQ(FormatDuration(5400), "1h30m");
}

TEST(Loader, DeeplyNestedYamlIsRefusedBeforeParsing) {
  std::string flow(100000, '[');
  ExpectErrorAt(flow, 1, 1, "YAML nests deeper than");
  std::string block;
  for (int i = 0; i < 5000; ++i) block += "- ";
  block += "x\n";
  ExpectErrorAt("pack: t\nversion: \"1\"\nrules:\n" + block, 4, 1, "YAML nests deeper than");
}

TEST(Loader, AliasBombInATestReportIsRefused) {
  // Each anchor refers to the previous one ten times: 10^11 strings if
  // expanded.
  std::string report = "{k0: &a0 [\"aaaaaaaaaaaaaaaaaaaaaaaa\"]";
  for (int i = 1; i < 12; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    report += ", k" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev;
    for (int k = 0; k < 9; ++k) report += ", " + prev;
    report += "]";
  }
  report += "}";
  ExpectErrorAt(
      PackWithRules(
          "  - id: r1\n    duty: d\n    severity: low\n    when: {field: text, regex: 'a'}\n"
          "    tests:\n      - name: t\n        expect: match\n        report: " +
          report + "\n"),
      13, 17, "test report is too large", "r1");
}

TEST(Loader, HugeIdsAreRefusedBrieflyWithoutRecursion) {
  // A 200,000-character pack name, duty id and rule id: each is one precise
  // error quoting 40 bytes of it (std::regex used to overflow the stack).
  const std::string huge(200000, 'a');
  LoadResult r =
      LoadPack("pack: " + huge + "\nversion: \"1\"\nduties:\n  - {id: " + huge +
               ", deadline: 24h, actions: [remove_content]}\nrules:\n  - id: " + huge +
               "\n    duty: d\n    severity: high\n    when: {field: text, phrases: [x y]}\n");
  EXPECT_FALSE(r.ruleset);
  std::vector<std::string> errors;
  for (const auto& d : r.diagnostics) {
    EXPECT_LT(d.message.size(), 300u) << "a diagnostic echoes an excerpt, not the value";
    if (d.level == Diagnostic::Level::kError) errors.push_back(d.message);
  }
  ASSERT_GE(errors.size(), 3u) << testing::Describe(r.diagnostics);
  EXPECT_NE(errors[0].find("pack name 'aaaa"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("(200000 bytes)' is longer than 64 bytes"), std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find("duty id"), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("longer than 128 bytes"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("rule id"), std::string::npos) << errors[2];
  // At the limit an id is fine; one byte more is not.
  EXPECT_TRUE(LoadPack(PackWithRules("  - id: " + std::string(128, 'r') +
                                     "\n    duty: d\n    severity: high\n"
                                     "    when: {field: text, phrases: [x y]}\n"))
                  .ruleset);
  ExpectErrorAt(PackWithRules("  - id: " + std::string(129, 'r') +
                              "\n    duty: d\n    severity: high\n"
                              "    when: {field: text, phrases: [x y]}\n"),
                6, 9, "is longer than 128 bytes");
}

TEST(Loader, ListFilesStayInThePacksDirectory) {
  const std::string pack =
      "pack: test\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24h, actions: [remove_content]}\n"
      "lists:\n  bad: {kind: hash, file: FILE}\nrules:\n"
      "  - id: r1\n    duty: d\n    severity: high\n    when: {field: hash, in_list: bad}\n";
  auto with = [&](const std::string& file) {
    std::string p = pack;
    p.replace(p.find("FILE"), 4, file);
    return p;
  };
  FakeFiles files;
  files.files["/etc/passwd"] = "root:x:0:0:root:/root:/bin/bash\n";
  files.files["../secret.txt"] = "root:x:0:0\n";
  files.files["lists/ok.txt"] = "00ff\n";
  for (const char* outside : {"/etc/passwd", "../secret.txt", "lists/../../secret.txt"}) {
    LoadResult r = LoadPack(with(outside), files);
    EXPECT_FALSE(r.ruleset) << outside;
    Diagnostic d = FirstError(r);
    EXPECT_NE(d.message.find("outside the pack's directory"), std::string::npos) << d.ToString();
    EXPECT_EQ(d.message.find("root:x"), std::string::npos) << "its lines are never echoed";
  }
  EXPECT_TRUE(LoadPack(with("lists/ok.txt"), files).ruleset);
  LoadOptions anywhere;
  anywhere.lists_anywhere = true;
  files.files["/abs/list.txt"] = "00ff\n";
  EXPECT_TRUE(
      LoadRuleSetFromSources({{"pack.yaml", with("/abs/list.txt")}}, files.Reader(), anywhere)
          .ruleset)
      << "an option allows lists elsewhere";
}

// Paths that give no rule file are errors at that path, and the set does
// not load even when another path gives a good pack.
TEST(Loader, APathWithoutRuleFilesIsAnErrorAtThatPath) {
  const std::string dir = ::testing::TempDir() + "/loader_paths_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/empty");
  std::filesystem::create_directories(dir + "/good");
  {
    std::ofstream out(dir + "/good/pack.yaml");
    out << PackWithRules(kGoodRule);
  }
  ASSERT_TRUE(LoadRuleSet({dir + "/good"}).ruleset) << "the good pack alone loads";
  LoadResult r = LoadRuleSet({dir + "/good", dir + "/empty", dir + "/missing.yaml"});
  EXPECT_FALSE(r.ruleset);
  ASSERT_GE(r.diagnostics.size(), 2u) << testing::Describe(r.diagnostics);
  EXPECT_EQ(r.diagnostics[0].level, Diagnostic::Level::kError);
  EXPECT_EQ(r.diagnostics[0].pos.file, dir + "/empty");
  EXPECT_EQ(r.diagnostics[0].message, "no *.yaml rule files in directory");
  EXPECT_EQ(r.diagnostics[1].level, Diagnostic::Level::kError);
  EXPECT_EQ(r.diagnostics[1].pos.file, dir + "/missing.yaml");
  EXPECT_FALSE(r.diagnostics[1].message.empty());
  EXPECT_EQ(r.diagnostics[0].ToString(), dir + "/empty: error: no *.yaml rule files in directory");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::rules

namespace carewatch::rules {
namespace {

// A misspelt action or value is named with the one it most likely meant.
TEST(Loader, UnknownActionsAndValuesSuggestTheClosestKnownOne) {
  LoadResult r = LoadPack(
      "pack: test\nversion: \"1\"\nduties:\n"
      "  - {id: d, deadline: 1h, actions: [preserve_evidnce]}\n");
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].level, Diagnostic::Level::kError);
  EXPECT_NE(r.diagnostics[0].message.find(
                "unknown action 'preserve_evidnce' (did you mean 'preserve_evidence'?)"),
            std::string::npos)
      << r.diagnostics[0].message;
  r = LoadPack(PackWithRules(
      "  - id: r1\n    duty: d\n    severity: low\n    when: {field: surface, equals: "
      "direct_mesage}\n"));
  EXPECT_NE(testing::Describe(r.diagnostics)
                .find("unknown surface value 'direct_mesage' (did you mean 'direct_message'?)"),
            std::string::npos)
      << testing::Describe(r.diagnostics);
  // Nothing close: the list, not a guess.
  EXPECT_EQ(DidYouMean("hologram", KnownValues(Field::kSurface)), "");
  EXPECT_EQ(DidYouMean(std::string(100000, 'a'), KnownActions()), "");
}

// One lint run names every problem of a rule, not only the first: a regex
// error does not hide a bad at_least count beside it, and misspelt keys,
// duties, lists and fields each get the closest known name.
TEST(Loader, ReportsEveryErrorOfARuleWithSuggestions) {
  LoadResult r = LoadPack(
      "pack: test\nversion: \"1\"\n"
      "duties:\n  - {id: csea.response, deadline: 1h, actions: [remove_content]}\n"
      "lists:\n  known: {kind: hash, file: known.txt}\n"
      "rules:\n"
      "  - id: r1\n"
      "    duty: csea.respons\n"
      "    severity: high\n"
      "    tittle: misspelt\n"
      "    when:\n"
      "      at_least: 4\n"
      "      of:\n"
      "        - {field: text, regex: 'a(?<=b)'}\n"
      "        - {field: txt, phrases: [x]}\n"
      "        - {field: hash, in_list: knwn}\n"
      "    tests:\n"
      "      - name: t\n"
      "        report: {text: a}\n"
      "        expect: match\n",
      FakeFiles{{{"known.txt", "0123456789abcdef0123456789abcdef\n"}}});
  EXPECT_FALSE(r.ruleset);
  std::string all = testing::Describe(r.diagnostics);
  for (const char* expected : {
           "pack.yaml:9:11: error: rule refers to undefined duty 'csea.respons' (did you mean "
           "'csea.response'?) [r1]",
           "pack.yaml:11:5: error: unknown key 'tittle' in a rule (did you mean 'title'?) [r1]",
           "pack.yaml:13:17: error: at_least must be a whole number from 1 to 3",
           "bad regex 'a(?<=b)'",
           "unknown field 'txt' (did you mean 'text'?)",
           "unknown list 'knwn' (did you mean 'known'?)",
       }) {
    EXPECT_NE(all.find(expected), std::string::npos) << "missing: " << expected << "\n" << all;
  }
}

}  // namespace
}  // namespace carewatch::rules
