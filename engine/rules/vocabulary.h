#ifndef CAREWATCH_ENGINE_RULES_VOCABULARY_H_
#define CAREWATCH_ENGINE_RULES_VOCABULARY_H_

#include <string>
#include <vector>

#include "engine/rules/ruleset.h"

namespace carewatch::rules {

// The documented values of a categorical field (DESIGN.md "Vocabulary").
// Platforms may use others; the linter warns on them. Empty for fields
// without a fixed vocabulary (service_id, reason, attributes).
const std::vector<std::string>& KnownValues(Field field);

// The documented moderation actions (remove_content, report_to_nca, ...).
const std::vector<std::string>& KnownActions();
bool IsKnownAction(const std::string& action);

// The action that discharges an obligation (a human found it not illegal).
inline constexpr const char* kReviewedNotIllegal = "reviewed_not_illegal";

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_VOCABULARY_H_
