// libFuzzer target: arbitrary bytes as one JSON ContentReport line, as
// `carewatch scan` and the gRPC JSON paths read them; parsed reports are
// evaluated against a small pack that uses every kind of condition, by the
// Hyperscan Evaluator and by the RE2::Set one, which must give the same
// verdict (the same rules, the same spans, the same status).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/eval/evaluator.h"
#include "engine/eval/report_json.h"
#include "engine/rules/loader.h"

namespace {

// The pack below compiled with Hyperscan (re2 false) or with RE2::Set.
const carewatch::eval::Evaluator& SharedEvaluator(bool re2) {
  using namespace carewatch;
  static std::unique_ptr<eval::Evaluator> evaluators[2];
  std::unique_ptr<eval::Evaluator>& evaluator = evaluators[re2];
  if (!evaluator)
    evaluator = [re2] {
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
  - {id: e, duty: d, severity: low, when: {none: [{field: profile_bio, regex: 'ok', flags: [ucp]}]}}
  - {id: f, duty: d, severity: low, when: {field: caption, phrases: [ab, ab cd, b c]}}
  - {id: g, duty: d, severity: low, when: {field: text, regex: '[a-c]{2,}\s?\d|\bzz$|\S\s$'}}
  - {id: h, duty: d, severity: low, when: {field: url, normalize: true, phrases: [ef]}}
)";
      rules::FileReader reader = [](const std::string& path,
                                    std::string*) -> std::optional<std::string> {
        return path == "u.txt" ? std::string("listed.test\n") : std::string("abcdef\n");
      };
      auto loaded = rules::LoadRuleSetFromSources({{"fuzz.yaml", pack}}, reader);
      std::unique_ptr<eval::Evaluator> e;
      eval::EvaluatorOptions options;
      options.use_re2_set = re2;
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
  v1::Verdict hs, re2;
  const Status hs_status = SharedEvaluator(false).Evaluate(report, &hs);
  const Status re2_status = SharedEvaluator(true).Evaluate(report, &re2);
  const std::string hs_json = eval::ToJson(hs), re2_json = eval::ToJson(re2);
  if (hs_status.ok() != re2_status.ok() || hs_json != re2_json) {
    std::fprintf(stderr,
                 "Hyperscan and RE2::Set disagree on %s\nHyperscan (%s): %s\nRE2 (%s): %s\n",
                 eval::ToJson(report).c_str(), hs_status.message().c_str(), hs_json.c_str(),
                 re2_status.message().c_str(), re2_json.c_str());
    __builtin_trap();
  }
  return 0;
}
