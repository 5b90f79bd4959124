#ifndef CAREWATCH_TOOLS_BENCH_BENCH_ARGS_H_
#define CAREWATCH_TOOLS_BENCH_BENCH_ARGS_H_

// Numeric flags of the benchmark programs: a value that is not a whole
// number in [min, max] is refused with the flag's name, and the program
// exits with status 2 (usage), instead of an uncaught exception.

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace carewatch::bench {

inline int64_t IntArg(const char* flag, const char* value, int64_t min, int64_t max) {
  int64_t v = 0;
  const char* end = value + std::strlen(value);
  auto [ptr, ec] = std::from_chars(value, end, v);
  if (ec != std::errc() || ptr != end || v < min || v > max) {
    std::fprintf(stderr, "error: %s must be a whole number from %lld to %lld, not '%s'\n", flag,
                 static_cast<long long>(min), static_cast<long long>(max), value);
    std::exit(2);
  }
  return v;
}

}  // namespace carewatch::bench

#endif  // CAREWATCH_TOOLS_BENCH_BENCH_ARGS_H_
