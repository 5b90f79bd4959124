#include "engine/rules/duration.h"

#include <limits>

namespace carewatch::rules {

std::optional<int64_t> ParseDuration(std::string_view text, std::string* error) {
  constexpr int64_t kMax = int64_t{100} * 365 * 86400;  // a century is plenty
  if (text.empty()) {
    *error = "empty duration";
    return std::nullopt;
  }
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > kMax) break;
      n = n * 10 + (text[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0 || i >= text.size()) {
      *error = "bad duration '" + std::string(text) +
               "': expected a number followed by a unit s, m, h or d (e.g. 24h)";
      return std::nullopt;
    }
    int64_t unit = 0;
    switch (text[i]) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86400;
        break;
      default:
        *error = "bad duration '" + std::string(text) + "': unknown unit '" +
                 std::string(1, text[i]) + "' (use s, m, h or d)";
        return std::nullopt;
    }
    ++i;
    if (n > kMax / unit || total > kMax - n * unit) {
      *error = "duration '" + std::string(text) + "' is too long";
      return std::nullopt;
    }
    total += n * unit;
  }
  if (total == 0) {
    *error = "duration '" + std::string(text) + "' must be greater than zero";
    return std::nullopt;
  }
  return total;
}

std::string FormatDuration(int64_t seconds) {
  if (seconds == 0) return "0s";
  std::string out;
  const struct {
    int64_t size;
    char unit;
  } kUnits[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  for (const auto& u : kUnits) {
    if (seconds >= u.size) {
      out += std::to_string(seconds / u.size) + u.unit;
      seconds %= u.size;
    }
  }
  return out;
}

}  // namespace carewatch::rules

#include <cstdio>
#include <ctime>

namespace carewatch::rules {

std::optional<int64_t> ParseDateTime(std::string_view text) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  std::string str(text);
  int consumed = 0;
  if (std::sscanf(str.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &consumed) != 3 || consumed != 10) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || y < 1970 || y > 9999) return std::nullopt;
  int64_t offset = 0;
  size_t i = 10;
  if (i < str.size()) {
    if (str[i] != 'T' && str[i] != 't' && str[i] != ' ') return std::nullopt;
    ++i;
    int n = 0;
    if (std::sscanf(str.c_str() + i, "%2d:%2d:%2d%n", &h, &mi, &s, &n) != 3 || n != 8) {
      return std::nullopt;
    }
    i += n;
    if (i < str.size() && str[i] == '.') {  // fractional seconds are dropped
      ++i;
      while (i < str.size() && str[i] >= '0' && str[i] <= '9') ++i;
    }
    if (i >= str.size()) return std::nullopt;  // RFC 3339 requires a zone
    if (str[i] == 'Z' || str[i] == 'z') {
      ++i;
    } else if (str[i] == '+' || str[i] == '-') {
      int oh = 0, om = 0;
      if (std::sscanf(str.c_str() + i + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5) {
        return std::nullopt;
      }
      offset = (oh * 3600 + om * 60) * (str[i] == '+' ? 1 : -1);
      i += 1 + n;
    } else {
      return std::nullopt;
    }
    if (i != str.size() || h > 23 || mi > 59 || s > 60) return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  time_t t = timegm(&tm);
  std::tm check{};
  gmtime_r(&t, &check);
  if (check.tm_mday != d) return std::nullopt;  // 2025-02-30 and the like
  return static_cast<int64_t>(t) - offset;
}

std::string FormatDateTime(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace carewatch::rules

namespace carewatch::rules {

std::string FormatDate(int64_t unix_seconds) {
  // Days since 1970-01-01 to a civil date (H. Hinnant's civil_from_days),
  // for 1000-01-01 (-30610224000) to 9999-12-31 (253402300799); the rest as
  // FormatDateTime gives them.
  if (unix_seconds < -30610224000LL || unix_seconds > 253402300799LL)
    return FormatDateTime(unix_seconds).substr(0, 10);
  const int64_t days = (unix_seconds >= 0 ? unix_seconds : unix_seconds - 86399) / 86400;
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  std::string out(10, '-');
  auto put = [&out](size_t at, int64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i, v /= 10) out[at + i] = static_cast<char>('0' + v % 10);
  };
  put(0, y, 4);
  put(5, m, 2);
  put(8, d, 2);
  return out;
}

}  // namespace carewatch::rules
