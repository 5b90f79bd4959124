// libFuzzer target: arbitrary bytes as one JSON ContentReport line, as
// `carewatch scan` and the gRPC JSON paths read them; parsed reports are
// evaluated against a small pack that uses every kind of condition, by the
// Hyperscan Evaluator, by the same with every field scanned (no gate) and
// by the RE2::Set one, which must give the same verdict (the same rules,
// the same spans, the same status, the same identifiers extracted);
// `Explain` must show the rules matched that the verdict flags. A parsed report printed as JSON
// must parse back to the same report.
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/eval/report_json.h"
#include "engine/rules/loader.h"

namespace {

enum Variant { kHyperscan, kUngated, kRe2Set, kVariants };
const char* const kVariantNames[kVariants] = {"Hyperscan", "Hyperscan without the gate",
                                              "RE2::Set"};

// The pack below compiled as `variant` says.
const carewatch::eval::Evaluator& SharedEvaluator(Variant variant) {
  using namespace carewatch;
  static std::unique_ptr<eval::Evaluator> evaluators[kVariants];
  std::unique_ptr<eval::Evaluator>& evaluator = evaluators[variant];
  if (!evaluator)
    evaluator = [variant] {
      const char* pack = R"(pack: fuzz
version: "1"
duties: [{id: d, deadline: 1h, actions: [remove_content]}]
lists:
  u: {kind: url, file: u.txt}
  h: {kind: hash, file: h.txt}
rules:
  - {id: a, duty: d, severity: low, when: {field: text, normalize: true, phrases: [add me on snap]}}
  - {id: b, duty: d, severity: low, when: {at_least: 2, of: [{field: caption, regex: 'x\d+'}, {field: surface, in: [comment]}, {field: attributes.k, exists: true}]}}
  - {id: c, duty: d, severity: low, when: {any: [{field: url, in_list: u}, {field: hash, in_list: h}, {field: username, regex: '^adm', flags: [case_sensitive]}]}}
  - {id: e, duty: d, severity: low, when: {none: [{field: profile_bio, regex: 'ok|\d\w\s\W\D', flags: [ucp]}]}}
  - {id: f, duty: d, severity: low, when: {field: caption, phrases: [ab, ab cd, b c]}}
  - {id: g, duty: d, severity: low, when: {field: text, regex: '[a-c]{2,}\s?\d|\bzz$|\S\s$|x\vy|q\h+r\Z'}}
  - {id: h, duty: d, severity: low, when: {field: url, normalize: true, phrases: [ef]}}
  - {id: i, duty: d, severity: low, when: {all: [{field: surface, equals: dm}, {field: text, normalize: true, phrases: [meet up]}]}}
  - {id: j, duty: d, severity: low, when: {any: [{field: content_type, in: [image]}, {all: [{field: reason, equals: x}, {field: username, regex: 'q\d'}]}]}}
  - {id: k, duty: d, severity: low, when: {all: [{field: subject_age_band, in: [13_to_15]}, {field: profile_bio, normalize: true, phrases: [ab c]}]}}
  - {id: x, duty: d, severity: low, when: {field: text, regex: '([a-z0-9._]+@[a-z0-9.-]+)\s*$', extract: email}}
  - {id: y, duty: d, severity: low, when: {field: text, normalize: true, regex: '\bsnap ([a-z0-9]{3,})', extract: {kind: handle, platform: snapchat}}}
)";
      rules::FileReader reader = [](const std::string& path,
                                    std::string*) -> std::optional<std::string> {
        return path == "u.txt" ? std::string("listed.test\n") : std::string("abcdef\n");
      };
      auto loaded = rules::LoadRuleSetFromSources({{"fuzz.yaml", pack}}, reader);
      std::unique_ptr<eval::Evaluator> e;
      eval::EvaluatorOptions options;
      options.use_re2_set = variant == kRe2Set;
      options.gate_scans = variant != kUngated;
      if (loaded.ruleset) (void)eval::Evaluator::Create(loaded.ruleset, options, &e);
      if (!e) __builtin_trap();
      return e;
    }();
  return *evaluator;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carewatch;
  v1::ContentReport report;
  Status s =
      eval::ParseReportJson(std::string_view(reinterpret_cast<const char*>(data), size), &report);
  if (!s.ok()) return 0;
  const std::string report_json = eval::ToJson(report);
  v1::ContentReport again;
  if (!eval::ParseReportJson(report_json, &again).ok() ||
      !google::protobuf::util::MessageDifferencer::Equals(again, report)) {
    std::fprintf(stderr, "a report printed as JSON does not parse back to itself: %s\n",
                 report_json.c_str());
    __builtin_trap();
  }
  v1::Verdict verdicts[kVariants];
  Status statuses[kVariants];
  for (int v = 0; v < kVariants; ++v)
    statuses[v] = SharedEvaluator(static_cast<Variant>(v)).Evaluate(report, &verdicts[v]);
  const std::string first = eval::ToJson(verdicts[0]);
  for (int v = 1; v < kVariants; ++v) {
    const std::string json = eval::ToJson(verdicts[v]);
    if (statuses[v].ok() == statuses[0].ok() && json == first) continue;
    std::fprintf(stderr, "%s and %s disagree on %s\n%s (%s): %s\n%s (%s): %s\n", kVariantNames[0],
                 kVariantNames[v], report_json.c_str(), kVariantNames[0],
                 statuses[0].message().c_str(), first.c_str(), kVariantNames[v],
                 statuses[v].message().c_str(), json.c_str());
    __builtin_trap();
  }
  // The identifiers the `extract:` leaves take are the same for each.
  const auto identifiers = SharedEvaluator(kHyperscan).ExtractIdentifiers(report, verdicts[0], 16);
  for (int v = 1; v < kVariants; ++v) {
    if (SharedEvaluator(static_cast<Variant>(v)).ExtractIdentifiers(report, verdicts[v], 16) !=
        identifiers) {
      std::fprintf(stderr, "%s and %s extract different identifiers from %s\n", kVariantNames[0],
                   kVariantNames[v], report_json.c_str());
      __builtin_trap();
    }
  }
  if (identifiers.size() > 16) {
    std::fprintf(stderr, "more than 16 identifiers from %s\n", report_json.c_str());
    __builtin_trap();
  }

  // `carewatch explain` shows a rule author the same rules as matched.
  if (statuses[0].ok()) {
    static auto context = SharedEvaluator(kHyperscan).NewContext();
    std::vector<eval::RuleTrace> traces;
    if (!SharedEvaluator(kHyperscan).Explain(report, *context, &traces).ok()) {
      std::fprintf(stderr, "Explain fails where Evaluate did not on %s\n", report_json.c_str());
      __builtin_trap();
    }
    std::set<std::string> explained, flagged;
    for (const eval::RuleTrace& t : traces) {
      if (t.matched) explained.insert(t.rule->id);
      if (!t.nodes.empty() && t.nodes[0].value != t.matched) {
        std::fprintf(stderr, "rule %s: Explain's root node disagrees with its rule on %s\n",
                     t.rule->id.c_str(), report_json.c_str());
        __builtin_trap();
      }
    }
    for (const v1::Flag& f : verdicts[0].flags()) flagged.insert(f.rule_id());
    if (explained != flagged) {
      std::fprintf(stderr, "Explain matched %zu rules where Evaluate flagged %zu on %s\n",
                   explained.size(), flagged.size(), report_json.c_str());
      __builtin_trap();
    }
  }
  return 0;
}
