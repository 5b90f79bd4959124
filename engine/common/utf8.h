#ifndef CAREWATCH_ENGINE_COMMON_UTF8_H_
#define CAREWATCH_ENGINE_COMMON_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace carewatch {

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms,
// surrogates and code points above U+10FFFF are invalid), or npos.
size_t FindInvalidUtf8(std::string_view s);

inline bool IsValidUtf8(std::string_view s) { return FindInvalidUtf8(s) == std::string_view::npos; }

// Word characters, for the edges of phrases (docs/rules.md): a letter, a
// mark or a number in any script, or connector punctuation such as '_'
// (Unicode's L, M, N and Pc; in RE2, [\p{L}\p{M}\p{N}\p{Pc}]).
bool IsWordCodePoint(int32_t c);

// Whether the character that starts at byte `at` of `s`, or the one that
// ends just before it, is a word character. Bytes that are not valid UTF-8
// there are not; `at` at the end (or the start) of `s` has none.
bool WordCharAt(std::string_view s, size_t at);
bool WordCharBefore(std::string_view s, size_t at);

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_UTF8_H_
