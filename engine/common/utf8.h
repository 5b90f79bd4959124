#ifndef CAREWATCH_ENGINE_COMMON_UTF8_H_
#define CAREWATCH_ENGINE_COMMON_UTF8_H_

#include <cstddef>
#include <string_view>

namespace carewatch {

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms,
// surrogates and code points above U+10FFFF are invalid), or npos.
size_t FindInvalidUtf8(std::string_view s);

inline bool IsValidUtf8(std::string_view s) { return FindInvalidUtf8(s) == std::string_view::npos; }

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_UTF8_H_
