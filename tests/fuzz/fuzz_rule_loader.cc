// libFuzzer target: arbitrary bytes as a rule pack. The loader must return
// diagnostics or a RuleSet, never crash, hang or leak; a RuleSet that loads
// must also compile and evaluate.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/eval/evaluator.h"
#include "engine/rules/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carewatch;
  std::string yaml(reinterpret_cast<const char*>(data), size);
  rules::FileReader reader = [](const std::string& path,
                                std::string* error) -> std::optional<std::string> {
    if (path.find("missing") != std::string::npos) {
      *error = "not found";
      return std::nullopt;
    }
    return std::string("# synthetic\nabc123\nlisted.test\n");
  };
  rules::LoadResult r = rules::LoadRuleSetFromSources({{"fuzz.yaml", yaml}}, reader);
  for (const auto& d : r.diagnostics) (void)d.ToString();
  if (!r.ruleset || r.ruleset->rules().size() > 50) return 0;
  std::unique_ptr<eval::Evaluator> e;
  if (!eval::Evaluator::Create(r.ruleset, {}, &e).ok()) return 0;
  v1::ContentReport report;
  report.set_text("add me on snap 4 our little secret");
  report.set_surface("direct_message");
  report.add_urls("https://listed.test/a");
  v1::Verdict verdict;
  (void)e->Evaluate(report, &verdict);
  return 0;
}
