#ifndef CAREWATCH_ENGINE_DUTY_RULE_TESTS_H_
#define CAREWATCH_ENGINE_DUTY_RULE_TESTS_H_

#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/rules/diagnostic.h"

namespace carewatch::duty {

struct RuleTestFailure {
  rules::SourcePos pos;  // the test's position in its pack
  std::string rule_id;
  std::string test_name;
  std::string reason;  // what was expected and what happened

  // "file:line: rule_id: test name: reason"
  std::string ToString() const;
};

struct RuleTestSummary {
  int passed = 0;
  int failed = 0;
  std::vector<RuleTestFailure> failures;
};

// When a test report has no received_at, it was received at this time.
inline constexpr const char* kDefaultTestReceivedAt = "2026-01-05T10:00:00Z";

// Runs every embedded test of every rule of the evaluator's RuleSet:
// `expect` checks whether the test's own rule flags the report; with
// `actions` and `at`, `expect_obligation` checks that rule's obligation state
// at received_at + at (default: one second past its deadline).
RuleTestSummary RunRuleTests(const eval::Evaluator& evaluator);

}  // namespace carewatch::duty

#endif  // CAREWATCH_ENGINE_DUTY_RULE_TESTS_H_
