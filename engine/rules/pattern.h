#ifndef CAREWATCH_ENGINE_RULES_PATTERN_H_
#define CAREWATCH_ENGINE_RULES_PATTERN_H_

#include <string>

#include "engine/rules/ruleset.h"

namespace carewatch::rules {

// How a regex or phrase leaf is handed to the pattern engines. Hyperscan and
// RE2 see the same pattern text: Hyperscan decides whether a leaf matched,
// RE2 then locates the span. Both run in UTF-8 mode.

// The pattern for one phrase: a literal (ASCII punctuation escaped as \xHH,
// UTF-8 left as is) with \b at each end that is a word character, so
// "snap" matches "add me on snap!" but not "snapshot".
std::string PhrasePattern(const std::string& phrase);

// Hyperscan compile flags for a leaf's pattern (HS_FLAG_*).
unsigned HyperscanFlags(uint32_t regex_flags);

// The same pattern as RE2 syntax with the flags inlined, e.g. "(?i)abc".
std::string Re2Pattern(const std::string& pattern, uint32_t regex_flags);

// Checks that both engines accept `pattern` with `regex_flags`. Returns an
// empty string when they do, else the engine's own message.
std::string CheckPattern(const std::string& pattern, uint32_t regex_flags);

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_PATTERN_H_
