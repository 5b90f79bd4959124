#include "engine/eval/evaluator.h"

#include <gtest/gtest.h>

#include <optional>
#include <random>

#include "engine/eval/report_json.h"
#include "tests/testing.h"

namespace carewatch::eval {
namespace {

using testing::FlaggedRules;
using testing::MakeEvaluator;
using testing::PackWithRules;
using Ids = std::vector<std::string>;

v1::ContentReport Report(const std::string& json) {
  v1::ContentReport r;
  Status s = ParseReportJson(json, &r);
  EXPECT_TRUE(s.ok()) << s.message();
  return r;
}

std::string Rule(const std::string& id, const std::string& when) {
  return "  - {id: " + id + ", duty: d, severity: high, when: " + when + "}\n";
}

const char* kA = "{field: text, phrases: [alpha]}";
const char* kB = "{field: text, phrases: [bravo]}";
const char* kC = "{field: text, phrases: [charlie]}";

TEST(Evaluator, AllNeedsEveryChild) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", std::string("{all: [") + kA + ", " + kB + "]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"alpha bravo"})")), Ids{"r"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"alpha"})")), Ids{});
}

TEST(Evaluator, AnyNeedsOneChild) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", std::string("{any: [") + kA + ", " + kB + "]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"bravo"})")), Ids{"r"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"delta"})")), Ids{});
}

TEST(Evaluator, NoneNeedsNoChild) {
  auto e = MakeEvaluator(
      PackWithRules(Rule("r", std::string("{all: [{field: surface, equals: comment}, {none: [") +
                                  kA + ", " + kB + "]}]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"surface":"comment","text":"delta"})")), Ids{"r"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"surface":"comment","text":"bravo"})")), Ids{});
}

TEST(Evaluator, NoneAloneMatchesReportsWithoutTheSignal) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", std::string("{none: [") + kA + "]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"delta"})")), Ids{"r"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"alpha"})")), Ids{});
}

TEST(Evaluator, AtLeastCountsTrueChildren) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("r", std::string("{at_least: 2, of: [") + kA + ", " + kB + ", " + kC + "]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"alpha"})")), Ids{});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"alpha charlie"})")), Ids{"r"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"alpha bravo charlie"})")), Ids{"r"});
}

TEST(Evaluator, AtLeastWithCategoricalChildren) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("r",
           "{at_least: 2, of: [{field: surface, equals: comment}, {field: reason, equals: spam}, "
           "{field: subject_age_band, equals: under_13}]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"surface":"comment","reason":"spam"})")), Ids{"r"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"surface":"comment"})")), Ids{});
}

TEST(Evaluator, EqualsInAndExists) {
  auto e = MakeEvaluator(
      PackWithRules(Rule("eq", "{field: surface, equals: direct_message}") +
                    Rule("in", "{field: reporter_type, in: [hotline, trusted_flagger]}") +
                    Rule("attr", "{field: attributes.sender_is_connection, equals: \"false\"}") +
                    Rule("has-url", "{field: url, exists: true}") +
                    Rule("no-bio", "{field: profile_bio, exists: false}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"surface":"direct_message","profile_bio":"x"})")),
            Ids{"eq"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"reporter_type":"hotline","profile_bio":"x"})")),
            Ids{"in"});
  EXPECT_EQ(FlaggedRules(
                *e, Report(R"({"attributes":{"sender_is_connection":"false"},"profile_bio":"x"})")),
            Ids{"attr"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"urls":["https://a.test"],"profile_bio":"x"})")),
            Ids{"has-url"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({})")), Ids{"no-bio"});
}

// equals/in leaves look a report's value up once among every constant of
// its field (or attribute) and test a bit; a field with more than 64
// constants compares value by value. Both answer as comparing the value
// with each of the leaf's own constants does, whatever constants other
// leaves and fields share: checked on random reports against that
// comparison written out here.
TEST(Evaluator, EqualsAndInAnswerAsComparingEveryValue) {
  std::string many;  // 70 constants of reporter_type: compared value by value
  for (int i = 0; i < 70; ++i) many += (i ? ", v" : "v") + std::to_string(i);
  auto e = MakeEvaluator(PackWithRules(
      Rule("r1", "{field: surface, equals: a}") + Rule("r2", "{field: reason, in: [a, b, c]}") +
      Rule("r3", "{all: [{field: surface, in: [b, c]}, {field: attributes.k1, equals: a}]}") +
      Rule("r4", "{none: [{field: attributes.k2, in: [a, d]}]}") +
      Rule("r5", "{field: reporter_type, in: [" + many + "]}") +
      Rule("r6", "{all: [{field: reporter_type, equals: v3}, {field: username, equals: a}]}") +
      Rule("r7",
           "{at_least: 2, of: [{field: surface, equals: a}, {field: reason, equals: a}, "
           "{field: attributes.k1, equals: a}]}") +
      Rule("r8", "{any: [{field: surface, in: [d, A]}, {field: reason, equals: d}]}")));
  const std::vector<std::string> pool = {"a",   "b",   "c",   "d",  "A", "v3",
                                         "v67", "v69", "v70", "ab", ""};
  std::mt19937 rng(14);
  auto pick = [&] { return pool[rng() % pool.size()]; };
  for (int i = 0; i < 3000; ++i) {
    v1::ContentReport r;
    r.set_surface(pick());
    r.set_reason(pick());
    r.set_reporter_type(pick());
    r.set_username(pick());
    if (rng() % 3) (*r.mutable_attributes())["k1"] = pick();
    if (rng() % 3) (*r.mutable_attributes())["k2"] = pick();
    auto attr = [&](const char* k) -> std::optional<std::string> {
      auto it = r.attributes().find(k);
      if (it == r.attributes().end()) return std::nullopt;
      return it->second;
    };
    auto in = [](const std::optional<std::string>& v, std::initializer_list<const char*> set) {
      if (!v) return false;
      for (const char* x : set)
        if (*v == x) return true;
      return false;
    };
    const std::string& s = r.surface();
    const std::string& rt = r.reporter_type();
    const bool many_in = rt.size() > 1 && rt[0] == 'v' && rt != "v70";
    const int r7 = (s == "a") + (r.reason() == "a") + in(attr("k1"), {"a"});
    Ids want;
    if (s == "a") want.push_back("r1");
    if (in(r.reason(), {"a", "b", "c"})) want.push_back("r2");
    if (in(s, {"b", "c"}) && in(attr("k1"), {"a"})) want.push_back("r3");
    if (!in(attr("k2"), {"a", "d"})) want.push_back("r4");
    if (many_in) want.push_back("r5");
    if (rt == "v3" && r.username() == "a") want.push_back("r6");
    if (r7 >= 2) want.push_back("r7");
    if (in(s, {"d", "A"}) || r.reason() == "d") want.push_back("r8");
    ASSERT_EQ(FlaggedRules(*e, r), want) << r.ShortDebugString();
  }
}

TEST(Evaluator, InListOverUrlsAndHashes) {
  testing::FakeFiles files;
  files.files["u.txt"] = "listed.test\n";
  files.files["h.txt"] = "00ff00ff\n";
  std::string pack =
      "pack: t\nversion: \"1\"\nduties: [{id: d, deadline: 1h, actions: [remove_content]}]\n"
      "lists:\n  u: {kind: url, file: u.txt}\n  h: {kind: hash, file: h.txt}\nrules:\n" +
      Rule("url", "{field: url, in_list: u}") + Rule("hash", "{field: hash, in_list: h}");
  auto e = MakeEvaluator(pack, files);
  v1::Verdict verdict;
  ASSERT_TRUE(e->Evaluate(Report(R"({"urls":["https://ok.test","http://www.listed.test/x"],
                                     "hashes":[{"algorithm":"md5","value":"00FF00FF"}]})"),
                          &verdict)
                  .ok());
  ASSERT_EQ(verdict.flags_size(), 2);
  EXPECT_EQ(verdict.flags(0).rule_id(), "url");
  ASSERT_EQ(verdict.flags(0).matches_size(), 1);
  EXPECT_EQ(verdict.flags(0).matches(0).field(), "urls[1]");
  EXPECT_EQ(verdict.flags(1).matches(0).field(), "hashes[0]");
}

TEST(Evaluator, SpansPointIntoTheOriginalField) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", "{field: caption, regex: 'b[a-z]+o'}")));
  v1::Verdict verdict;
  ASSERT_TRUE(e->Evaluate(Report(R"({"caption":"héllo bravo"})"), &verdict).ok());
  ASSERT_EQ(verdict.flags_size(), 1);
  ASSERT_EQ(verdict.flags(0).matches_size(), 1);
  EXPECT_EQ(verdict.flags(0).matches(0).field(), "caption");
  EXPECT_EQ(verdict.flags(0).matches(0).start(), 7u);
  EXPECT_EQ(verdict.flags(0).matches(0).end(), 12u);
}

TEST(Evaluator, UrlMatchesNameTheIndex) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", "{field: url, regex: 'invite'}")));
  v1::Verdict verdict;
  ASSERT_TRUE(
      e->Evaluate(Report(R"({"urls":["https://a.test","https://b.test/invite/1"]})"), &verdict)
          .ok());
  ASSERT_EQ(verdict.flags_size(), 1);
  ASSERT_EQ(verdict.flags(0).matches_size(), 1);
  EXPECT_EQ(verdict.flags(0).matches(0).field(), "urls[1]");
  EXPECT_EQ(verdict.flags(0).matches(0).start(), 15u);
}

TEST(Evaluator, NormalizedPhraseSpansMapBack) {
  auto e = MakeEvaluator(
      PackWithRules(Rule("r", "{field: text, normalize: true, phrases: [add me on snap]}")));
  std::string text = "pls 4DD m3 on s n a p";
  v1::Verdict verdict;
  ASSERT_TRUE(e->Evaluate(Report(R"({"text":")" + text + R"("})"), &verdict).ok());
  ASSERT_EQ(verdict.flags_size(), 1);
  const v1::Match& m = verdict.flags(0).matches(0);
  EXPECT_EQ(text.substr(m.start(), m.end() - m.start()), "4DD m3 on s n a p");
}

TEST(Evaluator, NormalizeIsOptIn) {
  auto e = MakeEvaluator(
      PackWithRules(Rule("plain", "{field: text, phrases: [snap]}") +
                    Rule("folded", "{field: text, normalize: true, phrases: [snap]}")));
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"s.n.a.p"})")), Ids{"folded"});
  EXPECT_EQ(FlaggedRules(*e, Report(R"({"text":"snap"})")), (Ids{"plain", "folded"}));
}

TEST(Evaluator, ObligationsFollowTheRuleOrTheDuty) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("duty-default", kA) + "  - {id: override, duty: d, severity: low, when: " + kA +
      ", obligation: {deadline: 2h, actions: [escalate_to_specialist, preserve_evidence]}}\n"));
  v1::Verdict verdict;
  ASSERT_TRUE(e->Evaluate(Report(R"({"report_id":"r1","service_id":"s","text":"alpha",
                                     "received_at":"2026-01-01T00:00:00Z"})"),
                          &verdict)
                  .ok());
  ASSERT_EQ(verdict.obligations_size(), 2);
  const v1::Obligation& a = verdict.obligations(0);
  EXPECT_EQ(a.rule_id(), "duty-default");
  EXPECT_EQ(a.duty_id(), "d");
  EXPECT_EQ(a.deadline().seconds(), 1767225600 + 86400);
  EXPECT_EQ(a.status(), v1::OBLIGATION_STATUS_OPEN);
  ASSERT_EQ(a.required_actions_size(), 1);
  const v1::Obligation& b = verdict.obligations(1);
  EXPECT_EQ(b.deadline().seconds(), 1767225600 + 7200);
  EXPECT_EQ(b.required_actions_size(), 2);
  EXPECT_EQ(b.obligation_id(), Evaluator::ObligationId("s", "r1", "override"));
  EXPECT_NE(a.obligation_id(), b.obligation_id());
  EXPECT_EQ(verdict.ruleset_version(), e->ruleset().version());
  EXPECT_EQ(verdict.report_id(), "r1");
}

TEST(Evaluator, InvalidUtf8IsRejectedNamingTheField) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", kA)));
  v1::ContentReport r;
  r.set_caption("bad \xff byte");
  v1::Verdict verdict;
  Status s = e->Evaluate(r, &verdict);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("caption"), std::string::npos);
}

// Hyperscan accepts some patterns when the loader asks about each alone
// but cannot build them ("Resource limit exceeded"): a literal run of
// 16,000 bytes here, 128 bytes as written. Each is named where it is
// written, with its rule, as the loader names what it refuses; the
// patterns beside it in its database still compile.
TEST(Evaluator, APatternHyperscanCannotBuildIsNamedWhereItIsWritten) {
  std::string big;
  for (int i = 0; i < 16; ++i) big += "a{1000}b";
  const std::string pack = PackWithRules(
      Rule("fine", "{field: text, regex: 'fine'}") +                          // line 6
      "  - id: r1\n    duty: d\n    severity: high\n    when:\n      all:\n"  // 7..11
      "        - {field: caption, exists: true}\n"                            // 12
      "        - field: text\n          regex: '" +
      big + "'\n" +                                                                      // 13, 14
      Rule("r2", "{field: username, regex: 'x" + big + "', flags: [case_sensitive]}") +  // 15
      Rule("r3", "{field: text, phrases: [fine]}"));                                     // 16
  rules::LoadResult loaded = testing::LoadPack(pack);
  ASSERT_TRUE(loaded.ruleset) << testing::Describe(loaded.diagnostics);

  std::unique_ptr<Evaluator> e;
  Status s = Evaluator::Create(loaded.ruleset, {}, &e);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(e, nullptr);
  EXPECT_EQ(s.message().rfind("pack.yaml:14:18: error: Hyperscan cannot build regex 'a{1000}b", 0),
            0u)
      << s.message();
  EXPECT_NE(s.message().find("Resource limit exceeded"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("[r1]"), std::string::npos) << s.message();

  // Every refused pattern, each at its own position and rule.
  std::vector<rules::Diagnostic> refused;
  s = Evaluator::Create(loaded.ruleset, {}, &e, &refused);
  ASSERT_FALSE(s.ok());
  ASSERT_EQ(refused.size(), 2u) << testing::Describe(refused);
  EXPECT_EQ(refused[0].pos.line, 14);
  EXPECT_EQ(refused[0].pos.col, 18);
  EXPECT_EQ(refused[0].rule_id, "r1");
  EXPECT_EQ(refused[1].pos.line, 15);
  EXPECT_EQ(refused[1].pos.col, 70);
  EXPECT_EQ(refused[1].rule_id, "r2");
  for (const rules::Diagnostic& d : refused) {
    EXPECT_EQ(d.level, rules::Diagnostic::Level::kError);
    EXPECT_EQ(d.pos.file, "pack.yaml");
  }

  // Without them the same pack builds.
  rules::LoadResult good = testing::LoadPack(PackWithRules(
      Rule("fine", "{field: text, regex: 'fine'}") + Rule("r3", "{field: text, phrases: [fine]}")));
  ASSERT_TRUE(good.ruleset);
  refused.clear();
  EXPECT_TRUE(Evaluator::Create(good.ruleset, {}, &e, &refused).ok());
  EXPECT_TRUE(refused.empty());
}

TEST(Evaluator, ExplainShowsEveryNode) {
  auto e = MakeEvaluator(PackWithRules(Rule("r", std::string("{all: [") + kA + ", " + kB + "]}")));
  auto ctx = e->NewContext();
  std::vector<RuleTrace> traces;
  ASSERT_TRUE(e->Explain(Report(R"({"text":"alpha"})"), *ctx, &traces).ok());
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_FALSE(traces[0].matched);
  ASSERT_EQ(traces[0].nodes.size(), 3u);
  EXPECT_FALSE(traces[0].nodes[0].value);
  EXPECT_TRUE(traces[0].nodes[1].value);
  EXPECT_EQ(traces[0].nodes[1].matches.size(), 1u);
  EXPECT_FALSE(traces[0].nodes[2].value);
}

// A rule for minors is not scanned for on a report about an adult (its
// verdict cannot change), but Explain still shows what its leaves match.
TEST(Evaluator, FieldsNoRuleCanUseAreNotScannedButAreExplained) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("r", std::string("{all: [{field: subject_age_band, in: [under_13]}, ") + kA + "]}")));
  auto ctx = e->NewContext();
  v1::Verdict verdict;
  ASSERT_TRUE(
      e->Evaluate(Report(R"({"subject_age_band":"adult","text":"alpha"})"), *ctx, &verdict).ok());
  EXPECT_EQ(verdict.flags_size(), 0);
  EXPECT_EQ(ctx->bytes_scanned(), 0u);
  ASSERT_TRUE(
      e->Evaluate(Report(R"({"subject_age_band":"under_13","text":"alpha"})"), *ctx, &verdict)
          .ok());
  EXPECT_EQ(verdict.flags_size(), 1);
  EXPECT_EQ(ctx->bytes_scanned(), 5u);
  std::vector<RuleTrace> traces;
  ASSERT_TRUE(
      e->Explain(Report(R"({"subject_age_band":"adult","text":"alpha"})"), *ctx, &traces).ok());
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_FALSE(traces[0].matched);
  ASSERT_EQ(traces[0].nodes.size(), 3u);
  EXPECT_FALSE(traces[0].nodes[1].value);  // the age band
  EXPECT_TRUE(traces[0].nodes[2].value);   // the phrase, scanned for the trace
}

// With a rule that reads the field on every report, it is scanned.
TEST(Evaluator, AFieldOneRuleAlwaysReadsIsScannedForEveryReport) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("r", std::string("{all: [{field: subject_age_band, in: [under_13]}, ") + kA + "]}") +
      Rule("s", std::string("{none: [") + kB + "]}")));
  auto ctx = e->NewContext();
  v1::Verdict verdict;
  ASSERT_TRUE(
      e->Evaluate(Report(R"({"subject_age_band":"adult","text":"bravo"})"), *ctx, &verdict).ok());
  EXPECT_EQ(verdict.flags_size(), 0);  // "s" sees bravo
  EXPECT_EQ(ctx->bytes_scanned(), 5u);
}

// A field is scanned only for the rules whose categorical conditions do
// not already make them false: the equals/in tests a rule's `all`
// requires, and then whatever else can make it false (a nested
// condition, `exists`). Each rule here reads its own field, so the bytes
// scanned say which gates opened.
TEST(Evaluator, GatesOpenOnlyForRulesTheCategoricalFieldsLeavePossible) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("t", "{all: [{field: surface, equals: a}, {field: text, phrases: [alpha]}]}") +
      Rule("c",
           "{all: [{any: [{field: surface, equals: b}, {field: reason, equals: b}]}, "
           "{field: caption, phrases: [alpha]}]}") +
      Rule("d",
           "{all: [{field: attributes.k, in: [x, y]}, {field: reason, in: [b, c]}, "
           "{field: display_name, phrases: [alpha]}]}") +
      Rule("p",
           "{all: [{field: reason, exists: false}, {field: profile_bio, phrases: [alpha]}]}")));
  // text 1 byte, caption 10, display_name 100, profile_bio 1000.
  auto scanned = [&](const std::string& surface, const std::string& reason, const char* k) {
    v1::ContentReport r;
    r.set_surface(surface);
    r.set_reason(reason);
    if (k) (*r.mutable_attributes())["k"] = k;
    r.set_text("z");
    r.set_caption(std::string(10, 'z'));
    r.set_display_name(std::string(100, 'z'));
    r.set_profile_bio(std::string(1000, 'z'));
    auto ctx = e->NewContext();
    v1::Verdict v;
    EXPECT_TRUE(e->Evaluate(r, *ctx, &v).ok());
    return ctx->bytes_scanned();
  };
  EXPECT_EQ(scanned("a", "", nullptr), 1u + 1000u);
  EXPECT_EQ(scanned("b", "q", nullptr), 10u);
  EXPECT_EQ(scanned("q", "b", "y"), 10u + 100u);
  EXPECT_EQ(scanned("q", "c", "y"), 100u);
  EXPECT_EQ(scanned("q", "c", "z"), 0u);
  EXPECT_EQ(scanned("q", "", "x"), 1000u);
}

TEST(Evaluator, ExtractLeavesNameTheAccountsOfFlaggedRulesOnly) {
  auto e = MakeEvaluator(PackWithRules(
      Rule("handle",
           "{field: text, regex: 'my snap is @?([a-z0-9_.]{3,20})', "
           "extract: {kind: handle, platform: snapchat}}") +
      Rule("email", "{field: text, regex: '[a-z0-9.]+@[a-z0-9.]+\\.test', extract: email}") +
      Rule("plain", "{field: text, phrases: [alpha]}")));
  ASSERT_TRUE(e->extracts());
  v1::ContentReport r =
      Report(R"({"text":"My snap is @Kid_One, or my snap is kid.two; mail a.b@example.test"})");
  v1::Verdict v;
  ASSERT_TRUE(e->Evaluate(r, &v).ok());
  using Ids2 = std::vector<std::pair<std::string, std::string>>;
  // The capture group, each match once, per kind; a handle names its platform.
  EXPECT_EQ(e->ExtractIdentifiers(r, v, 16), (Ids2{{"handle", "snapchat:Kid_One"},
                                                   {"handle", "snapchat:kid.two"},
                                                   {"email", "a.b@example.test"}}));
  EXPECT_EQ(e->ExtractIdentifiers(r, v, 1).size(), 1u);
  // Only the rules in the verdict: a verdict without them extracts nothing.
  v1::Verdict other;
  other.add_flags()->set_rule_id("plain");
  EXPECT_TRUE(e->ExtractIdentifiers(r, other, 16).empty());
}

TEST(ReportJson, RejectsUnknownFieldsAndBadTypes) {
  v1::ContentReport r;
  EXPECT_FALSE(ParseReportJson(R"({"txt":"x"})", &r).ok());
  EXPECT_FALSE(ParseReportJson(R"({"hashes":[{"value":1.5}]})", &r).ok());
  EXPECT_FALSE(ParseReportJson(R"({"received_at":"yesterday"})", &r).ok());
  EXPECT_FALSE(ParseReportJson("{\"text\":\"\xff\"}", &r).ok());
  EXPECT_FALSE(ParseReportJson("not json", &r).ok());
  Status s = ParseReportJson(R"({"text": 5})", &r);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("text"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace carewatch::eval

#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/common/digest.h"
#include "engine/match/lists.h"
#include "tools/corpus/corpus.h"

namespace carewatch::eval {
namespace {

// On a sample of the realistic pack (phrase rules across the text fields,
// folded and not, regex rules, URL and hash lists), Hyperscan and RE2::Set
// give the same verdicts: the same rules, the same spans.
TEST(Evaluator, HyperscanAndRe2AgreeOnTheRealisticPack) {
  corpus::RealisticOptions ro;
  ro.phrase_rules = 400;
  ro.regex_rules = 40;
  ro.list_entries = 5000;
  corpus::RealisticPack pack = corpus::GenerateRealisticPack(ro);
  testing::FakeFiles files;
  files.files["lists/urls.txt"] = pack.url_list;
  files.files["lists/md5.txt"] = pack.hash_list;
  rules::LoadResult loaded =
      rules::LoadRuleSetFromSources({{"pack.yaml", pack.yaml}}, files.Reader());
  ASSERT_TRUE(loaded.ruleset) << testing::Describe(loaded.diagnostics);
  EvaluatorOptions re2_options;
  re2_options.use_re2_set = true;
  std::unique_ptr<Evaluator> hs, re2;
  ASSERT_TRUE(Evaluator::Create(loaded.ruleset, {}, &hs).ok());
  ASSERT_TRUE(Evaluator::Create(loaded.ruleset, re2_options, &re2).ok());
  corpus::CorpusOptions co;
  co.signal_fraction = 0.3;
  co.plants = pack.plants;
  corpus::CorpusGenerator gen(co);
  auto hs_ctx = hs->NewContext();
  auto re2_ctx = re2->NewContext();
  int flagged = 0;
  for (int i = 0; i < 3000; ++i) {
    v1::ContentReport report;
    gen.Next(&report);
    v1::Verdict a, b;
    ASSERT_TRUE(hs->Evaluate(report, *hs_ctx, &a).ok());
    ASSERT_TRUE(re2->Evaluate(report, *re2_ctx, &b).ok());
    ASSERT_EQ(ToJson(a), ToJson(b)) << ToJson(report);
    flagged += a.flags_size() > 0;
  }
  EXPECT_GT(flagged, 600) << "the sample must exercise the rules";
  // Hyperscan's phrase spans came from the scan; RE2::Set's were searched.
  EXPECT_EQ(hs_ctx->spans_searched(), 0u);
  EXPECT_GT(re2_ctx->spans_searched(), 0u);
}

// A flagged phrase leaf's spans are the occurrences its scan found, not a
// second search of the value: the same spans as the search finds
// (overlapping phrases, word boundaries, folded text, each URL), and a
// search again only when one report holds more occurrences than the scan
// keeps.
TEST(Evaluator, PhraseSpansComeFromTheScanAndAgreeWithASearch) {
  const std::string rules = Rule("plain", "{field: text, phrases: [ab, ab cd, b cd, cd ab cd]}") +
                            Rule("folded", "{field: text, normalize: true, phrases: [cd ef, ab]}") +
                            Rule("caption", "{field: caption, phrases: [ef, ef ef]}") +
                            Rule("url", "{field: url, phrases: [ab, cd]}") +
                            Rule("url_folded", "{field: url, normalize: true, phrases: [ef]}");
  auto hs = MakeEvaluator(PackWithRules(rules));
  EvaluatorOptions re2_options;
  re2_options.use_re2_set = true;
  auto re2 = MakeEvaluator(PackWithRules(rules), {}, re2_options);
  auto hs_ctx = hs->NewContext();
  auto re2_ctx = re2->NewContext();
  std::mt19937 rng(5);
  const char* words[] = {"ab", "AB", "cd", "ef", "E.F", "abcd", "b", "xab", "c\u200bd", "3F"};
  const char* separators[] = {" ", " ", "  ", ", ", "-", "/", "\u00e9"};
  auto sentence = [&](size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      out += words[rng() % std::size(words)];
      out += separators[rng() % std::size(separators)];
    }
    return out;
  };
  int flagged = 0;
  for (int round = 0; round < 2000; ++round) {
    const std::string json = R"({"text":")" + sentence(rng() % 24) + R"(","caption":")" +
                             sentence(rng() % 6) + R"(","urls":["https://a.test/)" +
                             sentence(rng() % 4) + R"(","https://b.test/)" + sentence(rng() % 4) +
                             R"("]})";
    v1::ContentReport report = Report(json);
    v1::Verdict a, b;
    ASSERT_TRUE(hs->Evaluate(report, *hs_ctx, &a).ok());
    ASSERT_TRUE(re2->Evaluate(report, *re2_ctx, &b).ok());
    ASSERT_EQ(ToJson(a), ToJson(b)) << json;
    flagged += a.flags_size() > 0;
  }
  EXPECT_GT(flagged, 1500);
  EXPECT_EQ(hs_ctx->spans_searched(), 0u);
  EXPECT_GT(re2_ctx->spans_searched(), 0u);

  // More occurrences than one scan keeps: the spans are searched for.
  std::string many;
  for (size_t i = 0; i < Evaluator::Context::kMaxScanSpans; ++i) many += "ab ";
  many += "ab cd";
  v1::ContentReport report = Report(R"({"text":")" + many + R"("})");
  v1::Verdict a, b;
  ASSERT_TRUE(hs->Evaluate(report, *hs_ctx, &a).ok());
  ASSERT_TRUE(re2->Evaluate(report, *re2_ctx, &b).ok());
  EXPECT_EQ(ToJson(a), ToJson(b));
  EXPECT_GT(hs_ctx->spans_searched(), 0u);
  ASSERT_GE(a.flags_size(), 1);
  EXPECT_EQ(a.flags(0).matches_size(), 8) << "max_spans_per_leaf";
}

// A list's index is read back from the cache, equal to the one built; a
// damaged cache file, or one of other entries, is rebuilt, not trusted.
TEST(Evaluator, ListIndexesAreCachedAndADamagedCacheIsRebuilt) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("cw-list-cache-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  rules::ListDef def;
  def.kind = rules::ListDef::Kind::kUrl;
  std::vector<std::string> entries;
  for (int i = 0; i < 3000; ++i) entries.push_back("h" + std::to_string(i) + ".list.test/p");
  entries.push_back("HTTPS://Upper.TEST/Path/");  // changed by normalising
  def.entries = entries;
  std::string path = (dir / "list.idx").string();
  match::CompiledList built(def, path);
  ASSERT_TRUE(fs::exists(path));
  auto agrees = [&](const match::CompiledList& list) {
    for (const char* probe : {"https://h17.list.test/p/x", "http://upper.test/path/y",
                              "https://h3000.list.test/p", "https://other.test/"}) {
      if (list.Contains(probe) != built.Contains(probe)) return false;
    }
    return list.size() == built.size() && list.Contains("https://h2999.list.test/p");
  };
  match::CompiledList cached(def, path);
  EXPECT_TRUE(agrees(cached));
  // Damage one slot: the digest no longer matches, so the index is rebuilt.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 4 * 100);
    uint32_t junk = 0x7fffffff;
    f.write(reinterpret_cast<const char*>(&junk), 4);
  }
  match::CompiledList rebuilt(def, path);
  EXPECT_TRUE(agrees(rebuilt));
  // A slot out of bounds under a digest that matches (SHA-256 is no key:
  // anyone who can write the file can compute it) is refused too, and the
  // file is written again from the index built.
  auto read_file = [&] {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string good = read_file();
  {
    std::string forged = good;
    const uint32_t out_of_bounds = 0xFFFFFFFF;
    std::memcpy(forged.data() + 64 + 4 * 100, &out_of_bounds, 4);
    std::string input = forged.substr(0, forged.size() - 32);
    // What the digest covers past the file: each entry's offset and
    // length, then the entries end to end.
    rules::ListEntries joined(entries);
    input.append(reinterpret_cast<const char*>(joined.spans().data()), joined.spans().size() * 8);
    input.append(joined.joined());
    std::string digest;
    ASSERT_TRUE(HexDecode(Sha256Hex(input), &digest));
    forged.replace(forged.size() - 32, 32, digest);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << forged;
  }
  match::CompiledList not_forged(def, path);
  EXPECT_TRUE(agrees(not_forged));
  EXPECT_EQ(read_file(), good) << "the forged index was trusted, not rebuilt";
  // Other entries under the same file name: rebuilt for them.
  rules::ListDef other = def;
  other.entries = std::vector<std::string>{"only.test"};
  match::CompiledList for_other(other, path);
  EXPECT_EQ(for_other.size(), 1u);
  EXPECT_TRUE(for_other.Contains("https://only.test/a"));
  EXPECT_FALSE(for_other.Contains("https://h17.list.test/p"));
  // A list of as many entries, `change` made to def's, under the file that
  // holds def's index: rebuilt for it, so it holds `now` and not `gone`.
  auto rebuilt_for = [&](const std::function<void(std::vector<std::string>*)>& change,
                         const char* now, const char* gone) {
    match::CompiledList refill(def, path);  // the file holds def's index again
    std::vector<std::string> changed = entries;
    change(&changed);
    rules::ListDef other_def = def;
    other_def.entries = changed;
    match::CompiledList list(other_def, path);
    return list.Contains(now) && !list.Contains(gone);
  };
  // The same bytes end to end, one boundary moved.
  EXPECT_TRUE(rebuilt_for(
      [](std::vector<std::string>* e) {
        (*e)[0] = "h0.list.test/ph1";
        (*e)[1] = ".list.test/p";
      },
      "https://h0.list.test/ph1", "https://h1.list.test/p"));
  // One entry changed in place, lengths kept.
  EXPECT_TRUE(rebuilt_for([](std::vector<std::string>* e) { (*e)[7] = "x7.list.test/p"; },
                          "https://x7.list.test/p", "https://h7.list.test/p"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::eval
