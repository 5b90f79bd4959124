#ifndef CAREWATCH_ENGINE_EVAL_EXPLAIN_H_
#define CAREWATCH_ENGINE_EVAL_EXPLAIN_H_

#include <string>
#include <vector>

#include "engine/eval/evaluator.h"

namespace carewatch::eval {

// A one-line description of a condition node: "any", "at_least 2 of 3",
// "text phrases [add me on, ...] (normalize)", "surface in [...]".
std::string DescribeCondition(const rules::Condition& c);

// Human-readable explanation of every rule for one report: which conditions
// held (+) or failed (-), with matched spans quoted from `report`.
std::string FormatExplanation(const v1::ContentReport& report,
                              const std::vector<RuleTrace>& traces);

}  // namespace carewatch::eval

#endif  // CAREWATCH_ENGINE_EVAL_EXPLAIN_H_
