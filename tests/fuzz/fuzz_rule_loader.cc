// libFuzzer target: arbitrary bytes as a rule pack. The loader must return
// diagnostics or a RuleSet, never crash, hang or leak; a RuleSet that loads
// must also compile (but for a pattern too large for Hyperscan, named where
// it is written), evaluate, and run its embedded tests as `carewatch test`
// runs them (duty::RunRuleTests: each test's report parsed, evaluated and
// its obligation resolved at the test's times), every failure named at a
// line of the pack.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/duty/rule_tests.h"
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
  std::vector<rules::Diagnostic> refused;
  Status s = eval::Evaluator::Create(r.ruleset, {}, &e, &refused);
  if (!s.ok()) {
    // What the loader accepts must build, but for the limits of size that
    // Hyperscan finds only when it builds a database (each then named at
    // its pattern). Anything else is a check the loader lacks.
    bool sized = !refused.empty();
    for (const rules::Diagnostic& d : refused) {
      if (d.pos.line <= 0 || (d.message.find("too large") == std::string::npos &&
                              d.message.find("Resource limit exceeded") == std::string::npos))
        sized = false;
    }
    if (!sized) {
      std::fprintf(stderr, "the loader accepted a pack that does not compile: %s\n",
                   s.message().c_str());
      std::abort();
    }
    return 0;
  }
  v1::ContentReport report;
  report.set_text("add me on snap 4 our little secret");
  report.set_surface("direct_message");
  report.add_urls("https://listed.test/a");
  v1::Verdict verdict;
  (void)e->Evaluate(report, &verdict);
  const duty::RuleTestSummary tests = duty::RunRuleTests(*e);
  for (const duty::RuleTestFailure& f : tests.failures) {
    if (f.pos.line <= 0 || f.reason.empty()) {
      std::fprintf(stderr, "a rule test failed without a line or a reason: %s\n",
                   f.ToString().c_str());
      std::abort();
    }
  }
  if (tests.failed != static_cast<int>(tests.failures.size())) std::abort();
  return 0;
}
