#include "engine/match/normalize.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include <atomic>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CAREWATCH_FOLD_AVX2 1
#endif

namespace carewatch::match {

namespace {

// Look-alikes and leetspeak, applied after NFKC case folding.
UChar32 FoldLookAlike(UChar32 c) {
  switch (c) {
    // Digits and symbols for letters.
    case '0':
      return 'o';
    case '1':
      return 'i';
    case '3':
      return 'e';
    case '4':
      return 'a';
    case '5':
      return 's';
    case '7':
      return 't';
    case '8':
      return 'b';
    case '@':
      return 'a';
    case '$':
      return 's';
    case '!':
      return 'i';
    case '|':
      return 'l';
    // Cyrillic.
    case 0x0430:
      return 'a';
    case 0x0432:
      return 'b';
    case 0x0435:
      return 'e';
    case 0x0451:
      return 'e';
    case 0x043A:
      return 'k';
    case 0x043C:
      return 'm';
    case 0x043D:
      return 'h';
    case 0x043E:
      return 'o';
    case 0x0440:
      return 'p';
    case 0x0441:
      return 'c';
    case 0x0442:
      return 't';
    case 0x0443:
      return 'y';
    case 0x0445:
      return 'x';
    case 0x0456:
      return 'i';
    case 0x0457:
      return 'i';
    case 0x0458:
      return 'j';
    case 0x0455:
      return 's';
    case 0x04CF:
      return 'l';
    case 0x0501:
      return 'd';
    case 0x051B:
      return 'q';
    case 0x051D:
      return 'w';
    // Greek.
    case 0x03B1:
      return 'a';
    case 0x03B2:
      return 'b';
    case 0x03B5:
      return 'e';
    case 0x03B9:
      return 'i';
    case 0x03BA:
      return 'k';
    case 0x03BD:
      return 'v';
    case 0x03BF:
      return 'o';
    case 0x03C1:
      return 'p';
    case 0x03C4:
      return 't';
    case 0x03C5:
      return 'u';
    case 0x03C7:
      return 'x';
    case 0x03C9:
      return 'w';
    default:
      return c;
  }
}

bool IsSeparatorPunct(UChar32 c) {
  switch (c) {
    case '.':
    case '-':
    case '_':
    case '*':
    case '+':
    case '~':
    case '/':
    case '\\':
    case ',':
    case '\'':
    case '"':
    case '`':
    case '^':
    case '=':
    case ':':
    case ';':
    case 0x00B7:  // middle dot
    case 0x2022:  // bullet
    case 0x2010:
    case 0x2011:
    case 0x2012:
    case 0x2013:
    case 0x2014:  // dashes
      return true;
    default:
      return false;
  }
}

bool IsInvisible(UChar32 c) {
  if (c == 0x200B || c == 0x200C || c == 0x200D || c == 0x2060 || c == 0xFEFF || c == 0x00AD ||
      c == 0x034F || c == 0x180E) {
    return true;
  }
  return u_charType(c) == U_FORMAT_CHAR;
}

const icu::Normalizer2* NfkcCaseFold() {
  static const icu::Normalizer2* n = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* inst = icu::Normalizer2::getNFKCCasefoldInstance(status);
    return U_SUCCESS(status) ? inst : nullptr;
  }();
  return n;
}

const icu::Normalizer2* Nfd() {
  static const icu::Normalizer2* n = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* inst = icu::Normalizer2::getNFDInstance(status);
    return U_SUCCESS(status) ? inst : nullptr;
  }();
  return n;
}

// What an ASCII byte folds to: itself lower-cased, a letter it stands for,
// ' ' for white space, or 0 when it is dropped (separator punctuation).
struct AsciiTable {
  char to[128];
  AsciiTable() {
    for (int c = 0; c < 128; ++c) {
      UChar32 x = (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
      x = FoldLookAlike(x);
      if (IsSeparatorPunct(x)) x = 0;
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') x = ' ';
      if (c < 0x20 && x != ' ') x = 0;  // other control characters
      to[c] = static_cast<char>(x);
    }
  }
};
const AsciiTable kAscii;

// The state the fold carries from one byte to the next.
struct FoldState {
  bool last_space;  // the last byte written was a space
  int token_cps;    // word characters in the token being written
  int singles_run;  // one-letter tokens in a row before it
  bool need_join;   // a run of three was seen: JoinSingles must run
};

// Keeps the count of one-letter tokens over `k` bytes just written, all of
// them word characters except the spaces in `spaces` (bit j: byte j), of
// which no two are adjacent. Only the first token (which began before the
// block) and the last (which goes on after it) cross the block's edges; the
// tokens between the first and the last space are found with bit
// operations: a one-letter one is a letter with a space on each side, and
// one-letter tokens in a row are such letters two bytes apart.
inline void CountTokens(uint64_t spaces, uint64_t letters, int k, FoldState* st) {
  if (spaces == 0) {
    st->token_cps += k;
    return;
  }
  const int first = __builtin_ctzll(spaces);
  const int last = 63 - __builtin_clzll(spaces);
  const int token = st->token_cps + first;
  int run = st->singles_run;
  if (token == 1) {
    if (++run >= 3) st->need_join = true;
  } else if (token > 0) {
    run = 0;
  }
  if (first != last) {
    const uint64_t inner = letters & (spaces << 1) & (spaces >> 1);
    if (inner == 0) {
      run = 0;  // the tokens between are longer
    } else {
      // One-letter tokens right after the first space: bits first + 1,
      // first + 3, ... (bit 63 of `inner` is never set, so neither mask
      // below is empty).
      const uint64_t even = 0x5555555555555555ull;
      const int lead = __builtin_ctzll(~(inner >> (first + 1)) & even) / 2;
      if (run + lead >= 3 || (inner & (inner >> 2) & (inner >> 4)) != 0) st->need_join = true;
      if (2 * lead == last - first) {
        run += lead;  // every token between is one letter
      } else {
        // Those right before the last space: bits last - 1, last - 3, ...
        run = __builtin_clzll(~(inner << (64 - last)) & ~even) / 2;
      }
    }
  }
  st->singles_run = run;
  st->token_cps = k - last - 1;
}

#if defined(CAREWATCH_FOLD_AVX2)
// The whole-block path (AVX2 and BMI2, chosen at run time): 32 bytes at a
// time, each block of ASCII letters, digits, white space and separator
// punctuation (nearly all of ordinary text) is folded without a branch on
// its bytes: mapped by the table's rules (capitals lowered, digits to the
// letters they stand for, white space to ' '), separators and the second of
// two spaces dropped, and the rest packed together. A block holding any
// other byte (non-ASCII, '?', '@', ...) is left to the paths below.
struct BlockTables {
  // pshufb tables by low nibble, both lanes alike: bit h of entry l is set
  // when the byte (h << 4 | l) is in the set.
  alignas(32) uint8_t fast[32];
  alignas(32) uint8_t drop[32];
  alignas(32) uint8_t space[32];
  alignas(32) uint8_t high_bit[32];  // entry h: 1 << h (ASCII: h < 8)
  alignas(32) uint8_t digit[32];     // entry d: what digit d folds to
  // Entry m: the positions of m's set bits, in order (0x80: none); in
  // pack_high, each plus 8 (the second eight bytes of a 16-byte half).
  alignas(8) uint8_t pack[256][8];
  alignas(8) uint8_t pack_high[256][8];
};

BlockTables MakeBlockTables(const char (&to)[128]) {
  BlockTables t{};
  for (int c = 0; c < 128; ++c) {
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    const uint8_t bit = static_cast<uint8_t>(1u << (c >> 4));
    auto add = [&](uint8_t* table) {
      table[c & 15] |= bit;
      table[16 + (c & 15)] |= bit;
    };
    if (letter || digit || to[c] == 0 || to[c] == ' ') add(t.fast);
    if (to[c] == 0) add(t.drop);
    if (to[c] == ' ') add(t.space);
    if (digit) t.digit[c - '0'] = t.digit[16 + c - '0'] = static_cast<uint8_t>(to[c]);
  }
  for (int h = 0; h < 8; ++h) t.high_bit[h] = t.high_bit[16 + h] = static_cast<uint8_t>(1u << h);
  for (int m = 0; m < 256; ++m) {
    int j = 0;
    for (int b = 0; b < 8; ++b) {
      if (m & (1 << b)) t.pack[m][j++] = static_cast<uint8_t>(b);
    }
    for (; j < 8; ++j) t.pack[m][j] = 0x80;
    for (j = 0; j < 8; ++j) {
      t.pack_high[m][j] = t.pack[m][j] == 0x80 ? 0x80 : static_cast<uint8_t>(t.pack[m][j] + 8);
    }
  }
  return t;
}

// One 32-byte block classified: its bytes mapped (capitals lowered, digits
// to the letters they stand for, white space to ' '), and which of them the
// fold keeps and which are spaces. False when the block holds a byte the
// block path does not fold (non-ASCII, '?', '@', ...).
struct Block {
  __m256i mapped;
  uint32_t kept;
  uint32_t spaces;
};

__attribute__((target("avx2,bmi2,popcnt"), always_inline)) inline bool ClassifyBlock(
    const BlockTables& t, const __m256i v, Block* b) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i zero = _mm256_setzero_si256();
  if (_mm256_movemask_epi8(v) != 0) return false;  // non-ASCII
  const __m256i fast_table = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.fast));
  const __m256i drop_table = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.drop));
  const __m256i space_table = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.space));
  const __m256i high_table = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.high_bit));
  const __m256i digit_table = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.digit));
  const __m256i low = _mm256_and_si256(v, nibble);
  const __m256i high =
      _mm256_shuffle_epi8(high_table, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
  // Each: the lanes whose byte is not in the table's set.
  const __m256i not_fast =
      _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(fast_table, low), high), zero);
  if (_mm256_movemask_epi8(not_fast) != 0) return false;
  const __m256i not_drop =
      _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(drop_table, low), high), zero);
  const __m256i not_space =
      _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(space_table, low), high), zero);
  b->kept = static_cast<uint32_t>(_mm256_movemask_epi8(not_drop));
  b->spaces = ~static_cast<uint32_t>(_mm256_movemask_epi8(not_space));
  const __m256i upper = _mm256_and_si256(_mm256_cmpgt_epi8(v, _mm256_set1_epi8('A' - 1)),
                                         _mm256_cmpgt_epi8(_mm256_set1_epi8('Z' + 1), v));
  __m256i mapped = _mm256_or_si256(v, _mm256_and_si256(upper, _mm256_set1_epi8(0x20)));
  const __m256i digit = _mm256_and_si256(_mm256_cmpgt_epi8(v, _mm256_set1_epi8('0' - 1)),
                                         _mm256_cmpgt_epi8(_mm256_set1_epi8('9' + 1), v));
  mapped = _mm256_blendv_epi8(mapped, _mm256_shuffle_epi8(digit_table, low), digit);
  b->mapped = _mm256_blendv_epi8(_mm256_set1_epi8(' '), mapped, not_space);
  return true;
}

// Stores the bytes of `mapped` whose bits are set in `keep`, packed, at
// `o` (writing up to 32 bytes from it); returns how many. Each 16-byte half
// is packed by one shuffle: its first eight bytes' kept ones to the front
// of the low eight, its last eight's to the front of the high eight; each
// eight is then stored after the last.
__attribute__((target("avx2,bmi2,popcnt"), always_inline)) inline int StorePacked(
    const BlockTables& t, const __m256i mapped, uint32_t keep, char* o) {
  const uint32_t m0 = keep & 0xFF, m1 = (keep >> 8) & 0xFF, m2 = (keep >> 16) & 0xFF,
                 m3 = keep >> 24;
  const __m128i low_half = _mm_shuffle_epi8(
      _mm256_castsi256_si128(mapped),
      _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.pack[m0])),
                         _mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.pack_high[m1]))));
  const __m128i high_half = _mm_shuffle_epi8(
      _mm256_extracti128_si256(mapped, 1),
      _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.pack[m2])),
                         _mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.pack_high[m3]))));
  const int c0 = __builtin_popcount(m0), c1 = __builtin_popcount(m1), c2 = __builtin_popcount(m2);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(o), low_half);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(o + c0), _mm_unpackhi_epi64(low_half, low_half));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(o + c0 + c1), high_half);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(o + c0 + c1 + c2),
                   _mm_unpackhi_epi64(high_half, high_half));
  return __builtin_popcount(keep);
}

// Of the bytes in `kept` (bit j: byte j of a block, or of a pair of
// blocks), the ones written: a space is written unless the byte written
// before it (separators in between being dropped) is a space, which is
// found among the kept bytes. Counts the tokens they make and carries
// whether the last is a space.
__attribute__((target("bmi2,popcnt"), always_inline)) inline uint64_t KeepAndCount(uint64_t kept,
                                                                                   uint64_t spaces,
                                                                                   FoldState* st) {
  const uint64_t packed_spaces = _pext_u64(spaces, kept);
  const uint64_t doubled = packed_spaces & ((packed_spaces << 1) | (st->last_space ? 1u : 0u));
  const uint64_t keep = kept & ~_pdep_u64(doubled, kept);
  const int k = __builtin_popcountll(keep);
  if (k > 0) {
    const uint64_t out_spaces = _pext_u64(spaces, keep);
    const uint64_t all = k == 64 ? ~uint64_t{0} : (uint64_t{1} << k) - 1;
    CountTokens(out_spaces, all & ~out_spaces, k, st);
    st->last_space = (out_spaces >> (k - 1)) & 1u;
  }
  return keep;
}

// Folds whole blocks from the start of `s` into `out` while they are of the
// kinds above; returns the bytes read and sets `*written`. Two blocks are
// folded together while both are whole and of those kinds (one pass over
// their 64 bits of masks and token counts); the last block is padded with
// '.', which the fold drops. `out` must have room for `length` + 32 bytes.
__attribute__((target("avx2,bmi2,popcnt"))) size_t FoldBlocks(const BlockTables& t,
                                                              const uint8_t* s, size_t length,
                                                              char* out, size_t* written,
                                                              FoldState* state) {
  // A local copy: stores through `out` could otherwise alias it.
  FoldState local = *state;
  FoldState* const st = &local;
  size_t i = 0;
  size_t n = 0;
  // Two blocks at a time.
  while (length - i >= 64) {
    Block a, b;
    if (!ClassifyBlock(t, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)), &a) ||
        !ClassifyBlock(t, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 32)), &b)) {
      break;  // the loop below takes the first block alone, if it can
    }
    const uint64_t keep =
        KeepAndCount(a.kept | uint64_t{b.kept} << 32, a.spaces | uint64_t{b.spaces} << 32, st);
    const int ka = StorePacked(t, a.mapped, static_cast<uint32_t>(keep), out + n);
    const int k = ka + StorePacked(t, b.mapped, static_cast<uint32_t>(keep >> 32), out + n + ka);
    n += static_cast<size_t>(k);
    i += 64;
  }
  while (i < length) {
    alignas(32) uint8_t tail[32];
    const uint8_t* src = s + i;
    size_t take = 32;
    if (length - i < 32) {
      take = length - i;
      std::memcpy(tail, src, take);
      std::memset(tail + take, '.', 32 - take);
      src = tail;
    }
    Block a;
    if (!ClassifyBlock(t, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)), &a)) break;
    const int k = StorePacked(t, a.mapped,
                              static_cast<uint32_t>(KeepAndCount(a.kept, a.spaces, st)), out + n);
    n += static_cast<size_t>(k);
    i += take;
    if (take < 32) break;
  }
  *state = local;
  *written = n;
  return i;
}

// The 64-byte path (AVX-512 with VBMI and VBMI2, chosen at run time): each
// byte is mapped by one lookup in the 128-byte table, and the dropped bytes
// and second spaces are removed by one compress. A block holding a
// non-ASCII byte, or a byte the fold keeps as punctuation ('?', '(', ...),
// stops it. Same contract as FoldBlocks but `out` must have room for
// `length` + 64 bytes.
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,bmi2,popcnt"))) size_t FoldBlocks64(
    const char (&to)[128], const uint8_t* s, size_t length, char* out, size_t* written,
    FoldState* state) {
  FoldState local = *state;
  FoldState* const st = &local;
  const __m512i table_low = _mm512_loadu_si512(to);
  const __m512i table_high = _mm512_loadu_si512(to + 64);
  const __m512i space = _mm512_set1_epi8(' ');
  const __m512i letter_a = _mm512_set1_epi8('a');
  const __m512i digit_0 = _mm512_set1_epi8('0');
  size_t i = 0;
  size_t n = 0;
  while (i < length) {
    const size_t take = length - i < 64 ? length - i : 64;
    const __mmask64 valid = take == 64 ? ~__mmask64{0} : (__mmask64{1} << take) - 1;
    // Bytes past the end are not read; they load as 0, which the fold drops.
    const __m512i v = _mm512_maskz_loadu_epi8(valid, s + i);
    if (_mm512_movepi8_mask(v) != 0) break;  // non-ASCII
    const __m512i mapped = _mm512_permutex2var_epi8(table_low, v, table_high);
    const uint64_t kept = _mm512_test_epi8_mask(mapped, mapped);
    const uint64_t spaces = _mm512_cmpeq_epi8_mask(mapped, space);
    const uint64_t word =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(mapped, letter_a), _mm512_set1_epi8(25)) |
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(mapped, digit_0), _mm512_set1_epi8(9));
    if ((kept & ~spaces & ~word) != 0) break;  // punctuation the fold keeps
    // A space is written unless the byte written before it is a space,
    // which is so exactly when the kept byte before it is one.
    const uint64_t packed_spaces = _pext_u64(spaces, kept);
    const uint64_t doubled = packed_spaces & ((packed_spaces << 1) | (st->last_space ? 1u : 0u));
    const uint64_t keep = kept & ~_pdep_u64(doubled, kept);
    if (kept != 0) st->last_space = (spaces >> (63 - __builtin_clzll(kept))) & 1u;
    _mm512_storeu_si512(out + n, _mm512_maskz_compress_epi8(keep, mapped));
    const int k = __builtin_popcountll(keep);
    if (k > 0) {
      const uint64_t out_spaces = _pext_u64(spaces, keep);
      const uint64_t all = k == 64 ? ~uint64_t{0} : (uint64_t{1} << k) - 1;
      CountTokens(out_spaces, all & ~out_spaces, k, st);
    }
    n += static_cast<size_t>(k);
    i += take;
  }
  *state = local;
  *written = n;
  return i;
}

FoldBlockPath WidestBlockPath() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("bmi2") ||
      !__builtin_cpu_supports("popcnt"))
    return FoldBlockPath::kNone;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2"))
    return FoldBlockPath::kAvx512;
  return FoldBlockPath::kAvx2;
}
const BlockTables kBlocks = MakeBlockTables(kAscii.to);
const FoldBlockPath kWidestBlockPath = WidestBlockPath();
#else
constexpr FoldBlockPath kWidestBlockPath = FoldBlockPath::kNone;
#endif
// Relaxed: set once at start-up, and by tests before they fold.
std::atomic<FoldBlockPath> g_block_path{kWidestBlockPath};

// Whether a folded code point is part of a word: a letter, a digit or any
// non-ASCII character (punctuation left after folding, such as '?' or '(',
// does not make a one-letter token longer).
inline bool IsWordChar(UChar32 c) {
  return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

class Folder {
 public:
  Folder(FoldedText* out, bool with_map) : out_(out), with_map_(with_map) {}

  void Emit(UChar32 c, uint32_t start, uint32_t end) {
    if (c == ' ') {
      if (last_space_) return;
      EndToken();
      last_space_ = true;
    } else {
      last_space_ = false;
      token_cps_ += IsWordChar(c);
    }
    if (n_ + 4 > out_->text.size()) Grow();
    char* text = out_->text.data();
    int32_t len = 0;
    if (c < 0x80) {
      text[n_] = static_cast<char>(c);
      len = 1;
    } else {
      UBool error = false;
      U8_APPEND(reinterpret_cast<uint8_t*>(text + n_), len, 4, c, error);
      if (error) return;
    }
    if (with_map_) {
      for (int32_t k = 0; k < len; ++k) {
        out_->orig_start[n_ + k] = start;
        out_->orig_end[n_ + k] = end;
      }
    }
    n_ += len;
  }

  // Folds one non-ASCII code point through NFKC case folding, mark removal
  // and look-alikes.
  void EmitNonAscii(UChar32 c, uint32_t start, uint32_t end) {
    if (IsInvisible(c)) return;
    const icu::Normalizer2* fold = NfkcCaseFold();
    const icu::Normalizer2* nfd = Nfd();
    auto emit = [&](UChar32 x) {
      x = FoldLookAlike(x);
      if (x < 0x80) {
        char m = kAscii.to[x];
        if (m) Emit(static_cast<unsigned char>(m), start, end);
        return;
      }
      if (IsSeparatorPunct(x)) return;
      if (u_isUWhiteSpace(x)) x = ' ';
      Emit(x, start, end);
    };
    if (fold == nullptr || nfd == nullptr) {
      emit(c);
      return;
    }
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString folded = fold->normalize(icu::UnicodeString(c), status);
    if (U_FAILURE(status)) {
      emit(c);
      return;
    }
    icu::UnicodeString decomposed = nfd->normalize(folded, status);
    if (U_FAILURE(status)) decomposed = folded;
    for (int32_t i = 0; i < decomposed.length();) {
      UChar32 x = decomposed.char32At(i);
      i += U16_LENGTH(x);
      int8_t type = u_charType(x);
      if (type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK || IsInvisible(x)) continue;
      emit(x);
    }
  }

  template <bool kWithMap>
  void Fold(std::string_view input) {
    const auto* s = reinterpret_cast<const uint8_t*>(input.data());
    const int32_t length = static_cast<int32_t>(input.size());
    // Invariant: the buffers hold at least n_ + (length - i) + kSlack bytes,
    // so the ASCII loop (one byte out per byte in, at most) never checks.
    constexpr size_t kSlack = 96;  // > the longest expansion of one code point
    Resize(input.size() + kSlack);
    int32_t i = 0;
    [[maybe_unused]] int32_t blocks_from = 0;  // where the block path may be tried next
    [[maybe_unused]] const FoldBlockPath path = g_block_path.load(std::memory_order_relaxed);
    while (i < length) {
      char* text = out_->text.data();
      uint32_t* starts = kWithMap ? out_->orig_start.data() : nullptr;
      uint32_t* ends = kWithMap ? out_->orig_end.data() : nullptr;
      // Locals, not members: stores through `text` would otherwise force
      // the compiler to reload them on every byte.
      size_t n = n_;
      FoldState st{last_space_, token_cps_, singles_run_, need_join_};
      while (i < length) {
#if defined(CAREWATCH_FOLD_AVX2)
        if constexpr (!kWithMap) {
          if (path != FoldBlockPath::kNone && i >= blocks_from) {
            size_t written = 0;
            if (path == FoldBlockPath::kAvx512) {
              // The buffers hold n + (length - i) + kSlack >= n + 64 bytes.
              i += static_cast<int32_t>(FoldBlocks64(
                  kAscii.to, s + i, static_cast<size_t>(length - i), text + n, &written, &st));
              n += written;
              if (i >= length) break;
            }
            // Also where the 64-byte path stopped: its first 32 bytes may
            // still be a whole block.
            const size_t read = FoldBlocks(kBlocks, s + i, static_cast<size_t>(length - i),
                                           text + n, &written, &st);
            i += static_cast<int32_t>(read);
            n += written;
            if (i >= length) break;
            // Not again before the block that stopped it has been passed.
            blocks_from = i + 32;
          }
        }
#endif
#if defined(__SSE2__)
        // Fast path, 32 bytes at a time: the longest prefix made of
        // letters and single spaces is copied with capitals lower-cased
        // (which is all the table does to those bytes), and the token
        // counts are kept over its spaces. The byte that ends the prefix
        // (punctuation, a digit, a second space, non-ASCII) goes through
        // the table below.
        {
          // The last bytes of the input are read from a copy padded with
          // bytes that end any run (0x80), so short fields and tails take
          // this path too.
          const uint8_t* src = s + i;
          alignas(16) uint8_t tail[32];
          if (i + 32 > length) {
            const size_t left = static_cast<size_t>(length - i);
            std::memcpy(tail, s + i, left);
            std::memset(tail + left, 0x80, sizeof tail - left);
            src = tail;
          }
          const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
          const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
          // A letter is a byte that, with bit 5 set, is in 'a'..'z' (signed
          // compares: bytes >= 0x80 are negative and in no range).
          const __m128i bit5 = _mm_set1_epi8(0x20);
          const __m128i below_a = _mm_set1_epi8('a' - 1);
          const __m128i above_z = _mm_set1_epi8('z' + 1);
          const __m128i t0 = _mm_or_si128(v0, bit5), t1 = _mm_or_si128(v1, bit5);
          const __m128i l0 =
              _mm_and_si128(_mm_cmpgt_epi8(t0, below_a), _mm_cmplt_epi8(t0, above_z));
          const __m128i l1 =
              _mm_and_si128(_mm_cmpgt_epi8(t1, below_a), _mm_cmplt_epi8(t1, above_z));
          const __m128i space = _mm_set1_epi8(' ');
          const uint64_t spaces =
              static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v0, space))) |
              static_cast<uint64_t>(
                  static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v1, space))))
                  << 16;
          const uint64_t letters =
              static_cast<uint32_t>(_mm_movemask_epi8(l0)) |
              static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(l1))) << 16;
          const uint64_t after_space = (spaces << 1) | (st.last_space ? 1u : 0u);
          const uint64_t simple = letters | (spaces & ~after_space);
          const int k = __builtin_ctzll(~simple | (uint64_t{1} << 32));  // 0..32
          if (k > 0) {
            // Capitals lower-cased: bit 5 set on letters.
            // The buffers hold n + (length - i) + kSlack >= n + 32 bytes.
            _mm_storeu_si128(reinterpret_cast<__m128i*>(text + n),
                             _mm_or_si128(v0, _mm_and_si128(l0, bit5)));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(text + n + 16),
                             _mm_or_si128(v1, _mm_and_si128(l1, bit5)));
            if constexpr (kWithMap) {
              for (int j = 0; j < k; ++j) {
                starts[n + j] = static_cast<uint32_t>(i + j);
                ends[n + j] = static_cast<uint32_t>(i + j + 1);
              }
            }
            // Spaces in the prefix end tokens.
            const uint64_t in_prefix = spaces & ((uint64_t{1} << k) - 1);
            CountTokens(in_prefix, letters, k, &st);
            st.last_space = (spaces >> (k - 1)) & 1u;
            n += static_cast<size_t>(k);
            i += k;
            if (k == 32) continue;
            if (i >= length) break;
          }
        }
#else
        // Fast path: eight lower-case ASCII letters, copied as they are.
        if (i + 8 <= length) {
          uint64_t word;
          std::memcpy(&word, s + i, 8);
          constexpr uint64_t kHigh = 0x8080808080808080ull;
          uint64_t at_least_a = word + 0x1F1F1F1F1F1F1F1Full;  // byte >= 'a'
          uint64_t above_z = word + 0x0505050505050505ull;     // byte > 'z'
          if ((word & kHigh) == 0 && (at_least_a & ~above_z & kHigh) == kHigh) {
            std::memcpy(text + n, &word, 8);
            if constexpr (kWithMap) {
              for (int k = 0; k < 8; ++k) {
                starts[n + k] = static_cast<uint32_t>(i + k);
                ends[n + k] = static_cast<uint32_t>(i + k + 1);
              }
            }
            n += 8;
            i += 8;
            st.token_cps += 8;
            st.last_space = false;
            continue;
          }
        }
#endif
        uint8_t b = s[i];
        if (b >= 0x80) break;
        char m = kAscii.to[b];
        if (m == 0) {
          ++i;
          continue;
        }
        if (m == ' ') {
          if (st.last_space) {
            ++i;
            continue;
          }
          st.last_space = true;
          if (st.token_cps == 1) {
            if (++st.singles_run >= 3) st.need_join = true;
          } else if (st.token_cps > 0) {
            st.singles_run = 0;
          }
          st.token_cps = 0;
        } else {
          st.last_space = false;
          st.token_cps += IsWordChar(static_cast<unsigned char>(m));
        }
        text[n] = m;
        if constexpr (kWithMap) {
          starts[n] = static_cast<uint32_t>(i);
          ends[n] = static_cast<uint32_t>(i + 1);
        }
        ++n;
        ++i;
      }
      n_ = n;
      last_space_ = st.last_space;
      token_cps_ = st.token_cps;
      singles_run_ = st.singles_run;
      need_join_ = st.need_join;
      if (i >= length) break;
      if (out_->text.size() < n_ + (length - i) + kSlack) Resize(n_ + (length - i) + 2 * kSlack);
      int32_t start = i;
      UChar32 c;
      U8_NEXT(s, i, length, c);
      if (c < 0) c = 0xFFFD;
      EmitNonAscii(c, static_cast<uint32_t>(start), static_cast<uint32_t>(i));
    }
    Finish();
  }

  // Trims the trailing space and joins runs of single characters.
  void Finish() {
    EndToken();
    if (n_ > 0 && out_->text[n_ - 1] == ' ') --n_;
    Resize(n_);
    if (need_join_) JoinSingles();
  }

 private:
  void Grow() { Resize(out_->text.size() * 2 + 16); }
  void Resize(size_t size) {
    out_->text.resize(size);
    if (with_map_) {
      out_->orig_start.resize(size);
      out_->orig_end.resize(size);
    }
  }

  void EndToken() {
    if (token_cps_ == 1) {
      if (++singles_run_ >= 3) need_join_ = true;
    } else if (token_cps_ > 0) {
      singles_run_ = 0;
    }
    token_cps_ = 0;
  }

  // Removes the spaces inside runs of >= 3 one-letter tokens ("s n a p" ->
  // "snap"). Punctuation beside a letter ("e?", "(s") does not stop it
  // being one letter, but a run does not continue across it: "a l o n e?
  // x y z" -> "alone? xyz".
  void JoinSingles() {
    std::string& t = out_->text;
    struct Token {
      size_t start, end;
      bool single, punct_before, punct_after;
    };
    auto punct = [](char c) {
      return static_cast<unsigned char>(c) < 0x80 && !IsWordChar(static_cast<unsigned char>(c));
    };
    std::vector<Token> tokens;
    for (size_t i = 0; i < t.size();) {
      size_t j = t.find(' ', i);
      if (j == std::string::npos) j = t.size();
      size_t letters = 0;
      for (size_t k = i; k < j; ++k) {
        unsigned char b = static_cast<unsigned char>(t[k]);
        letters += (b & 0xC0) != 0x80 && IsWordChar(b);
      }
      tokens.push_back({i, j, letters == 1, j > i && punct(t[i]), j > i && punct(t[j - 1])});
      i = j + 1;
    }
    std::vector<bool> drop_space_after(tokens.size(), false);
    for (size_t i = 0; i < tokens.size();) {
      size_t j = i;
      if (tokens[j].single) {
        ++j;
        while (j < tokens.size() && tokens[j].single && !tokens[j - 1].punct_after &&
               !tokens[j].punct_before) {
          ++j;
        }
      }
      if (j - i >= 3) {
        for (size_t k = i; k + 1 < j; ++k) drop_space_after[k] = true;
      }
      i = j == i ? i + 1 : j;
    }
    size_t w = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
      size_t end = tokens[i].end + (i + 1 < tokens.size() && !drop_space_after[i] ? 1 : 0);
      for (size_t k = tokens[i].start; k < end; ++k, ++w) {
        t[w] = t[k];
        if (with_map_) {
          out_->orig_start[w] = out_->orig_start[k];
          out_->orig_end[w] = out_->orig_end[k];
        }
      }
    }
    Resize(w);
  }

  FoldedText* out_;
  const bool with_map_;
  size_t n_ = 0;            // bytes of output written
  bool last_space_ = true;  // drops leading white space
  int token_cps_ = 0;
  int singles_run_ = 0;
  bool need_join_ = false;
};

}  // namespace

void FoldForMatching(std::string_view input, FoldedText* out, bool with_map) {
  Folder folder(out, with_map);
  if (with_map) {
    folder.Fold<true>(input);
  } else {
    folder.Fold<false>(input);
  }
}

FoldBlockPath FoldBlockPathInUse() { return g_block_path.load(std::memory_order_relaxed); }

bool SetFoldBlockPathForTesting(FoldBlockPath path) {
  if (static_cast<int>(path) > static_cast<int>(kWidestBlockPath)) return false;
  g_block_path.store(path, std::memory_order_relaxed);
  return true;
}

std::string FoldForMatching(std::string_view input) {
  FoldedText out;
  FoldForMatching(input, &out);
  return std::move(out.text);
}

}  // namespace carewatch::match
