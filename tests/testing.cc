#include "tests/testing.h"

#include <gtest/gtest.h>

namespace carewatch::testing {

std::string Describe(const std::vector<rules::Diagnostic>& diagnostics) {
  std::string out;
  for (const auto& d : diagnostics) out += d.ToString() + "\n";
  return out;
}

std::unique_ptr<eval::Evaluator> MakeEvaluator(const std::string& yaml, const FakeFiles& files,
                                               const eval::EvaluatorOptions& options) {
  rules::LoadResult loaded = LoadPack(yaml, files);
  EXPECT_TRUE(loaded.ruleset) << Describe(loaded.diagnostics);
  if (!loaded.ruleset) return nullptr;
  std::unique_ptr<eval::Evaluator> e;
  Status s = eval::Evaluator::Create(loaded.ruleset, options, &e);
  EXPECT_TRUE(s.ok()) << s.message();
  return e;
}

std::vector<std::string> FlaggedRules(const eval::Evaluator& e, const v1::ContentReport& report) {
  v1::Verdict verdict;
  Status s = e.Evaluate(report, &verdict);
  EXPECT_TRUE(s.ok()) << s.message();
  std::vector<std::string> out;
  for (const auto& f : verdict.flags()) out.push_back(f.rule_id());
  return out;
}

}  // namespace carewatch::testing
