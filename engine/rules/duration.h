#ifndef CAREWATCH_ENGINE_RULES_DURATION_H_
#define CAREWATCH_ENGINE_RULES_DURATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace carewatch::rules {

// Parses "90s", "15m", "24h", "30d" or a sequence such as "1d12h" into
// seconds. Returns nullopt (and sets *error) on anything else, including a
// zero or overflowing total.
std::optional<int64_t> ParseDuration(std::string_view text, std::string* error);

// The inverse, for messages: 86400 -> "1d", 5400 -> "1h30m".
std::string FormatDuration(int64_t seconds);

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_DURATION_H_

namespace carewatch::rules {

// Parses a date ("2025-03-17", midnight UTC) or an RFC 3339 time
// ("2025-03-17T09:30:00Z", "2025-03-17T09:30:00+01:00") into unix seconds.
std::optional<int64_t> ParseDateTime(std::string_view text);

// Formats unix seconds as RFC 3339 UTC ("2025-03-17T09:30:00Z").
std::string FormatDateTime(int64_t unix_seconds);
// The UTC day of unix seconds ("2025-03-17"): FormatDateTime's first ten
// characters, without the C library's time conversion for years 1000 to
// 9999 (every report's statistics are counted by it).
std::string FormatDate(int64_t unix_seconds);

}  // namespace carewatch::rules
