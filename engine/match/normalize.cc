#include "engine/match/normalize.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

namespace carewatch::match {

namespace {

struct Unit {
  UChar32 cp;
  uint32_t start;
  uint32_t end;
};

// Look-alikes and leetspeak, applied after NFKC case folding.
UChar32 FoldLookAlike(UChar32 c) {
  switch (c) {
    // Digits and symbols for letters.
    case '0': return 'o';
    case '1': return 'i';
    case '3': return 'e';
    case '4': return 'a';
    case '5': return 's';
    case '7': return 't';
    case '8': return 'b';
    case '@': return 'a';
    case '$': return 's';
    case '!': return 'i';
    case '|': return 'l';
    // Cyrillic.
    case 0x0430: return 'a';
    case 0x0432: return 'b';
    case 0x0435: return 'e';
    case 0x0451: return 'e';
    case 0x043A: return 'k';
    case 0x043C: return 'm';
    case 0x043D: return 'h';
    case 0x043E: return 'o';
    case 0x0440: return 'p';
    case 0x0441: return 'c';
    case 0x0442: return 't';
    case 0x0443: return 'y';
    case 0x0445: return 'x';
    case 0x0456: return 'i';
    case 0x0457: return 'i';
    case 0x0458: return 'j';
    case 0x0455: return 's';
    case 0x04CF: return 'l';
    case 0x0501: return 'd';
    case 0x051B: return 'q';
    case 0x051D: return 'w';
    // Greek.
    case 0x03B1: return 'a';
    case 0x03B2: return 'b';
    case 0x03B5: return 'e';
    case 0x03B9: return 'i';
    case 0x03BA: return 'k';
    case 0x03BD: return 'v';
    case 0x03BF: return 'o';
    case 0x03C1: return 'p';
    case 0x03C4: return 't';
    case 0x03C5: return 'u';
    case 0x03C7: return 'x';
    case 0x03C9: return 'w';
    default: return c;
  }
}

bool IsSeparatorPunct(UChar32 c) {
  switch (c) {
    case '.': case '-': case '_': case '*': case '+': case '~': case '/': case '\\':
    case ',': case '\'': case '"': case '`': case '^': case '=': case ':': case ';':
    case 0x00B7:  // middle dot
    case 0x2022:  // bullet
    case 0x2010: case 0x2011: case 0x2012: case 0x2013: case 0x2014:  // dashes
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

// Appends the folded code points of `c` (from [start, end) of the input).
void FoldCodePoint(UChar32 c, uint32_t start, uint32_t end, std::vector<Unit>* units) {
  auto push = [&](UChar32 x) {
    x = FoldLookAlike(x);
    if (IsSeparatorPunct(x)) return;
    if (u_isUWhiteSpace(x)) x = ' ';
    units->push_back({x, start, end});
  };
  if (c < 0x80) {
    if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    push(c);
    return;
  }
  if (IsInvisible(c)) return;
  const icu::Normalizer2* fold = NfkcCaseFold();
  const icu::Normalizer2* nfd = Nfd();
  if (fold == nullptr || nfd == nullptr) {
    push(c);
    return;
  }
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString folded = fold->normalize(icu::UnicodeString(c), status);
  if (U_FAILURE(status)) {
    push(c);
    return;
  }
  icu::UnicodeString decomposed = nfd->normalize(folded, status);
  if (U_FAILURE(status)) decomposed = folded;
  for (int32_t i = 0; i < decomposed.length();) {
    UChar32 x = decomposed.char32At(i);
    i += U16_LENGTH(x);
    int8_t type = u_charType(x);
    if (type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK || IsInvisible(x)) continue;
    push(x);
  }
}

}  // namespace

void FoldForMatching(std::string_view input, FoldedText* out) {
  out->Clear();
  thread_local std::vector<Unit> units;
  thread_local std::vector<Unit> joined;
  units.clear();
  joined.clear();

  const auto* s = reinterpret_cast<const uint8_t*>(input.data());
  int32_t length = static_cast<int32_t>(input.size());
  for (int32_t i = 0; i < length;) {
    int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, length, c);
    if (c < 0) c = 0xFFFD;
    FoldCodePoint(c, static_cast<uint32_t>(start), static_cast<uint32_t>(i), &units);
  }

  // Collapse white space runs and trim the ends.
  size_t w = 0;
  for (size_t r = 0; r < units.size(); ++r) {
    if (units[r].cp == ' ' && (w == 0 || units[w - 1].cp == ' ')) continue;
    units[w++] = units[r];
  }
  units.resize(w);
  if (!units.empty() && units.back().cp == ' ') units.pop_back();

  // Join runs of >= 3 single characters separated by single spaces.
  size_t i = 0;
  while (i < units.size()) {
    // A single-character token starts at i when the unit after it is a space
    // or the end, and the unit before it (if any) is a space.
    size_t j = i;
    size_t singles = 0;
    while (j < units.size() && units[j].cp != ' ' &&
           (j + 1 == units.size() || units[j + 1].cp == ' ') &&
           (j == 0 || units[j - 1].cp == ' ')) {
      ++singles;
      j += 2;  // skip the character and its following space
    }
    if (singles >= 3) {
      for (size_t k = i; k < units.size() && k < j; k += 2) joined.push_back(units[k]);
      // Keep the space after the run, if any.
      if (j - 1 < units.size()) joined.push_back(units[j - 1]);
      i = j;
    } else {
      joined.push_back(units[i]);
      ++i;
    }
  }

  out->text.reserve(joined.size());
  for (const Unit& u : joined) {
    char buf[4];
    int32_t n = 0;
    UBool error = false;
    U8_APPEND(reinterpret_cast<uint8_t*>(buf), n, 4, u.cp, error);
    if (error) continue;
    out->text.append(buf, n);
    for (int32_t k = 0; k < n; ++k) {
      out->orig_start.push_back(u.start);
      out->orig_end.push_back(u.end);
    }
  }
}

std::string FoldForMatching(std::string_view input) {
  FoldedText out;
  FoldForMatching(input, &out);
  return std::move(out.text);
}

}  // namespace carewatch::match
