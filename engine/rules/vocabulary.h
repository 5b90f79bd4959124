#ifndef CAREWATCH_ENGINE_RULES_VOCABULARY_H_
#define CAREWATCH_ENGINE_RULES_VOCABULARY_H_

#include <string>
#include <vector>

#include "engine/rules/ruleset.h"

namespace carewatch::rules {

// The documented values of a categorical field (docs/design.md "Vocabulary").
// Platforms may use others; the linter warns on them. Empty for fields
// without a fixed vocabulary (service_id, reason, attributes).
const std::vector<std::string>& KnownValues(Field field);

// The documented moderation actions (remove_content, report_to_nca, ...).
const std::vector<std::string>& KnownActions();
bool IsKnownAction(const std::string& action);

// " (did you mean 'X'?)" for the known value closest to `value` in edits,
// when one is close (at most 2 edits, or a quarter of its length); "" when
// none is, or `value` is longer than 64 bytes.
std::string DidYouMean(const std::string& value, const std::vector<std::string>& known);

// The action that discharges an obligation (a human found it not illegal).
inline constexpr const char* kReviewedNotIllegal = "reviewed_not_illegal";
// carewatch records it on a linkage alert's review obligation when the
// other services' signals were withdrawn (docs/signals.md): it discharges.
inline constexpr const char* kLinkWithdrawn = "link_withdrawn";
// Actions that discharge an obligation instead of meeting it; never required.
inline bool IsDischargeAction(const std::string& a) {
  return a == kReviewedNotIllegal || a == kLinkWithdrawn;
}

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_VOCABULARY_H_
