#include "engine/duty/rule_tests.h"

#include "engine/duty/obligation.h"
#include "engine/eval/report_json.h"
#include "engine/rules/duration.h"

namespace carewatch::duty {

std::string RuleTestFailure::ToString() const {
  return pos.file + ":" + std::to_string(pos.line) + ": " + rule_id + ": " + test_name + ": " +
         reason;
}

namespace {

// Returns an empty string when the test passes, else why it failed.
std::string RunOne(const eval::Evaluator& evaluator, eval::Evaluator::Context& ctx,
                   const rules::Rule& rule, const rules::RuleTest& test) {
  v1::ContentReport report;
  Status s = eval::ParseReportJson(test.report_json, &report);
  if (!s.ok()) return "report: " + s.message();
  if (report.report_id().empty()) report.set_report_id("test-" + rule.id);
  if (report.service_id().empty()) report.set_service_id("test-service");
  if (!report.has_received_at()) {
    report.mutable_received_at()->set_seconds(*rules::ParseDateTime(kDefaultTestReceivedAt));
  }
  v1::Verdict verdict;
  s = evaluator.Evaluate(report, ctx, &verdict);
  if (!s.ok()) return "evaluation failed: " + s.message();
  const v1::Obligation* obligation = nullptr;
  for (const v1::Obligation& ob : verdict.obligations()) {
    if (ob.rule_id() == rule.id) obligation = &ob;
  }
  bool matched = obligation != nullptr;
  if (test.expect_match && *test.expect_match != matched) {
    return *test.expect_match ? "expected match, but the rule did not match"
                              : "expected no_match, but the rule matched";
  }
  if (test.expect_obligation.empty()) return "";
  if (!matched)
    return "expected obligation " + test.expect_obligation + ", but the rule did not match";
  int64_t received = report.received_at().seconds();
  int64_t deadline = obligation->deadline().seconds();
  std::vector<ActionRecord> actions;
  for (const rules::RuleTest::Action& a : test.actions) {
    actions.push_back({a.action, received + a.after_seconds});
  }
  int64_t now = test.at_seconds ? received + *test.at_seconds : deadline + 1;
  std::vector<std::string> required(obligation->required_actions().begin(),
                                    obligation->required_actions().end());
  ObligationOutcome outcome = ResolveObligation(deadline, required, actions, now);
  std::string got = ObligationStateName(outcome.state);
  if (got != test.expect_obligation) {
    std::string detail = got;
    if (outcome.state == ObligationState::kBreached)
      detail += std::string(" (") + BreachKindName(outcome.breach) + ")";
    return "expected obligation " + test.expect_obligation + ", got " + detail + " at +" +
           rules::FormatDuration(now - received) + " (deadline +" +
           rules::FormatDuration(deadline - received) + ")";
  }
  return "";
}

}  // namespace

RuleTestSummary RunRuleTests(const eval::Evaluator& evaluator) {
  RuleTestSummary summary;
  auto ctx = evaluator.NewContext();
  for (const rules::Rule& rule : evaluator.ruleset().rules()) {
    for (const rules::RuleTest& test : rule.tests) {
      std::string why = RunOne(evaluator, *ctx, rule, test);
      if (why.empty()) {
        ++summary.passed;
      } else {
        ++summary.failed;
        summary.failures.push_back({test.pos, rule.id, test.name, why});
      }
    }
  }
  return summary;
}

}  // namespace carewatch::duty
