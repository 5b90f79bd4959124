// libFuzzer target: arbitrary bytes as one JSON ContentReport line, as
// `carewatch scan` and the gRPC JSON paths read them; parsed reports are
// evaluated against a small pack that uses every kind of condition.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/eval/evaluator.h"
#include "engine/eval/report_json.h"
#include "engine/rules/loader.h"

namespace {

const carewatch::eval::Evaluator& SharedEvaluator() {
  using namespace carewatch;
  static std::unique_ptr<eval::Evaluator> evaluator = [] {
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
)";
    rules::FileReader reader = [](const std::string& path,
                                  std::string*) -> std::optional<std::string> {
      return path == "u.txt" ? std::string("listed.test\n") : std::string("abcdef\n");
    };
    auto loaded = rules::LoadRuleSetFromSources({{"fuzz.yaml", pack}}, reader);
    std::unique_ptr<eval::Evaluator> e;
    if (loaded.ruleset) (void)eval::Evaluator::Create(loaded.ruleset, {}, &e);
    if (!e) __builtin_trap();
    return e;
  }();
  return *evaluator;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carewatch;
  const eval::Evaluator& e = SharedEvaluator();
  v1::ContentReport report;
  Status s =
      eval::ParseReportJson(std::string_view(reinterpret_cast<const char*>(data), size), &report);
  if (!s.ok()) return 0;
  v1::Verdict verdict;
  (void)e.Evaluate(report, &verdict);
  (void)eval::ToJson(verdict);
  return 0;
}
