#include "engine/common/utf8.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace carewatch {

namespace {
constexpr uint64_t kHighBits = 0x8080808080808080ull;

uint64_t Load8(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// Whether every byte is ASCII: the high bits of all of them ORed, without a
// branch a block (the last bytes read overlapping).
bool AllAscii(const unsigned char* p, size_t n) {
#if defined(__SSE2__)
  if (n >= 16) {
    // 64 bytes a step, then 16, then the last 16 (overlapping).
    __m128i any = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + n - 16));
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
      const auto* q = reinterpret_cast<const __m128i*>(p + i);
      any = _mm_or_si128(
          any, _mm_or_si128(_mm_or_si128(_mm_loadu_si128(q), _mm_loadu_si128(q + 1)),
                            _mm_or_si128(_mm_loadu_si128(q + 2), _mm_loadu_si128(q + 3))));
    }
    for (; i + 16 <= n; i += 16)
      any = _mm_or_si128(any, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)));
    return _mm_movemask_epi8(any) == 0;
  }
#endif
  if (n < 8) {
    unsigned char any = 0;
    for (size_t i = 0; i < n; ++i) any |= p[i];
    return any < 0x80;
  }
  uint64_t any = Load8(p + n - 8);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    any |= Load8(p + i) | Load8(p + i + 8) | Load8(p + i + 16) | Load8(p + i + 24);
  }
  for (; i + 8 <= n; i += 8) any |= Load8(p + i);
  return (any & kHighBits) == 0;
}
}  // namespace

size_t FindInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  // Nearly every value is ASCII, and so valid.
  if (AllAscii(p, s.size())) return std::string_view::npos;
  size_t i = 0;
  while (i < s.size()) {
    // Fast path: 32 ASCII bytes at a time, then eight.
    while (i + 32 <= s.size()) {
      uint64_t w[4];
      std::memcpy(w, p + i, 32);
      if ((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ull) break;
      i += 32;
    }
    while (i + 8 <= s.size()) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if (word & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

namespace {
bool IsAsciiWord(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
}  // namespace

bool IsWordCodePoint(int32_t c) {
  if (c < 0) return false;
  if (c < 0x80) return IsAsciiWord(static_cast<unsigned char>(c));
  return (U_GET_GC_MASK(c) & (U_GC_L_MASK | U_GC_M_MASK | U_GC_N_MASK | U_GC_PC_MASK)) != 0;
}

bool WordCharAt(std::string_view s, size_t at) {
  if (at >= s.size()) return false;
  const auto c0 = static_cast<unsigned char>(s[at]);
  if (c0 < 0x80) return IsAsciiWord(c0);
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t length = static_cast<int32_t>(std::min<size_t>(s.size(), at + 4));
  int32_t i = static_cast<int32_t>(at);
  UChar32 c;
  U8_NEXT(p, i, length, c);
  return IsWordCodePoint(c);
}

bool WordCharBefore(std::string_view s, size_t at) {
  if (at == 0 || at > s.size()) return false;
  const auto c0 = static_cast<unsigned char>(s[at - 1]);
  if (c0 < 0x80) return IsAsciiWord(c0);
  // Only the last four bytes before `at` can hold its character.
  const size_t from = at > 4 ? at - 4 : 0;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + from);
  int32_t i = static_cast<int32_t>(at - from);
  UChar32 c;
  U8_PREV(p, 0, i, c);
  return IsWordCodePoint(c);
}

}  // namespace carewatch
