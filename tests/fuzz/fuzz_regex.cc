// libFuzzer target: a rule's regex read by both of its engines. Hyperscan
// decides whether a regex leaf matched a report; RE2, given the pattern as
// rules::Re2Pattern translates it, then finds where (the verdict's spans,
// what `extract:` takes). Where the two read a pattern differently, a rule
// flags a report and shows no span for it, or a report the RE2::Set
// variant would flag is missed. Neither would crash.
//
// Input: the first byte is the rule's flags (bit 0 case_sensitive, 1
// dotall, 2 multiline, 3 ucp; bit 4: a phrase, not a regex); then the
// pattern, up to the first NUL (at most 96 bytes of UTF-8; a phrase at
// most 32 bytes, written as a text is); then texts separated by NULs (at most 8, each
// at most 128 bytes). In a text a byte below 0x80 is itself and one above
// stands for one of the characters in kCharacters: letters with special
// case folding, white space, digits and numbers, punctuation, symbols and
// marks of many scripts, all of whose properties Hyperscan's tables and
// RE2's agree on. A pattern the loader refuses (rules::CheckPattern) is
// done with; for one it accepts, on every text:
//   - Hyperscan reports a match exactly when RE2 finds a span;
//   - the RE2::Set variant reports a match exactly when Hyperscan does;
//   - spans lie in the text, in order, without overlapping;
//   - for a phrase, the occurrences the scan reports, selected as the
//     Evaluator selects them, are FindSpans' spans.
// Differences docs/rules.md names are not checked (KnownDifference): \b
// and \B with `ucp`, which RE2 keeps to ASCII; a negated class holding a
// negated set (an intersection); and a negated class holding letters and
// a set where the case is ignored. Nor are characters that
// Hyperscan's Unicode tables (older than RE2's) read differently, which
// is why the texts hold none.
#include <re2/re2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/match/matcher.h"
#include "engine/rules/pattern.h"
#include "engine/rules/ruleset.h"

namespace {

using namespace carewatch;

[[noreturn]] void Fail(const char* what, std::string_view pattern, uint32_t flags,
                       std::string_view text) {
  std::fprintf(stderr, "fuzz_regex: %s\npattern (flags %u): ", what, flags);
  for (unsigned char c : pattern) std::fprintf(stderr, "\\x%02x", c);
  std::fprintf(stderr, "\nre2: %s\ntext: ", rules::Re2Pattern(std::string(pattern), flags).c_str());
  for (unsigned char c : text) std::fprintf(stderr, "\\x%02x", c);
  std::fprintf(stderr, "\n");
  __builtin_trap();
}

bool Matches(const match::Matcher& m, std::string_view text) {
  auto scratch = m.NewScratch();
  bool hit = false;
  Status s = m.Scan(
      match::DatabaseSlot(rules::Field::kText, false), text, *scratch,
      [](uint32_t, uint32_t, uint32_t, void* c) { *static_cast<bool*>(c) = true; }, &hit);
  if (!s.ok()) Fail("a scan failed", "", 0, text);
  return hit;
}

// Whether RE2 and Hyperscan may disagree on `pattern` by design.
bool KnownDifference(std::string_view pattern, uint32_t flags) {
  auto has = [&](std::string_view what) { return pattern.find(what) != std::string_view::npos; };
  const bool ucp = (flags & rules::kUcp) || has("(*UCP)");
  if (ucp && (has("\\b") || has("\\B"))) return true;
  if (!has("[^")) return false;
  const bool negated_set = has("\\V") || has("\\H") || has("\\P") || has("\\p{^") || has("[:^") ||
                           (ucp && (has("\\W") || has("\\S")));
  const bool caseless = !(flags & rules::kCaseSensitive) || has("(?i") || has("i)") || has("i:");
  const bool set = has("\\w") || has("\\W") || has("\\p") || has("\\P") || has("[:");
  return negated_set || (caseless && set);
}

// Whether Hyperscan may take seconds to compile `pattern`: Unicode sets
// (\p{..} always; \w, \d, \s and POSIX classes with `ucp`) compile into
// large automata, repeated ones larger still ('\w{24}' with ucp takes
// seconds, '(\w+\W+){24}' tens of seconds). Such a pattern is a load-time
// cost a rule author sees, not a difference between the engines; the
// fuzzer skips it so that inputs run in milliseconds, a few in a second or
// two (make fuzz-smoke gives this target a longer -timeout).
bool SlowToCompile(std::string_view pattern, bool ucp) {
  int sets = 0;
  int repeat = 0;  // the largest {m,n} bound
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 'p' || e == 'P' || (ucp && std::strchr("wWdDsShHvV", e) != nullptr)) ++sets;
    } else if (c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      if (ucp) ++sets;
    } else if (c == '{') {
      int bound = 0;
      for (size_t k = i + 1; k < pattern.size() && bound < 1000; ++k) {
        if (pattern[k] >= '0' && pattern[k] <= '9') {
          bound = bound * 10 + (pattern[k] - '0');
        } else if (pattern[k] == ',') {
          bound = 0;
        } else {
          break;
        }
      }
      repeat = std::max(repeat, bound == 0 ? 8 : bound);
    }
  }
  if (ucp) return sets > 2 || (sets > 0 && repeat > 0);
  return sets > 3 || repeat > 32 || (sets > 0 && repeat > 4);
}

// What a text's bytes from 0x80 stand for (UTF-8).
constexpr const char* kCharacters[] = {
    "\xC5\xBF",          // long s: folds to s
    "\xE2\x84\xAA",      // Kelvin sign: folds to k
    "\xC3\x9F",          // sharp s
    "\xE1\xBA\x9E",      // capital sharp s
    "\xC4\xB0",          // capital I with a dot
    "\xC4\xB1",          // dotless i
    "\xCE\xA3",          // capital sigma
    "\xCF\x83",          // small sigma
    "\xCF\x82",          // final sigma
    "\xC2\xB5",          // micro sign
    "\xCE\xBC",          // small mu
    "\xE2\x84\xAB",      // Angstrom sign
    "\xC3\xA5",          // a with a ring
    "\xC3\xA9",          // e with an acute accent
    "\xC3\x89",          // E with an acute accent
    "\xD0\x96",          // Cyrillic capital zhe
    "\xD0\xB6",          // Cyrillic small zhe
    "\xC7\x85",          // a title-case digraph
    "\xE4\xB8\xAD",      // a CJK ideograph
    "\xE3\x81\x82",      // Hiragana a
    "\xED\x95\x9C",      // a Hangul syllable
    "\xD8\xB9",          // Arabic ain
    "\xD7\x90",          // Hebrew alef
    "\xE0\xA4\x95",      // Devanagari ka
    "\xCC\x81",          // combining acute accent
    "\xE0\xA4\xBF",      // a Devanagari vowel sign
    "\xD9\xA3",          // Arabic-Indic digit three
    "\xE0\xA5\xA7",      // Devanagari digit one
    "\xEF\xBC\x91",      // fullwidth digit one
    "\xE2\x85\xAB",      // Roman numeral twelve
    "\xC2\xBD",          // one half
    "\xC2\xB2",          // superscript two
    "\xC2\xA0",          // no-break space
    "\xE2\x80\x83",      // em space
    "\xE3\x80\x80",      // ideographic space
    "\xE1\x9A\x80",      // Ogham space mark
    "\xE2\x80\xA8",      // line separator
    "\xE2\x80\xA9",      // paragraph separator
    "\xC2\x85",          // next line
    "\xE2\x80\xAF",      // narrow no-break space
    "\xE2\x80\x8B",      // zero-width space
    "\xE2\x80\x8D",      // zero-width joiner
    "\xEF\xBB\xBF",      // byte order mark
    "\xC2\xAD",          // soft hyphen
    "\xC2\x80",          // a C1 control
    "\xC2\xA1",          // inverted exclamation mark
    "\xC2\xBF",          // inverted question mark
    "\xC2\xAB",          // left guillemet
    "\xC2\xB7",          // middle dot
    "\xC2\xA7",          // section sign
    "\xE2\x80\x94",      // em dash
    "\xE2\x80\xA6",      // ellipsis
    "\xE2\x80\x9C",      // left double quotation mark
    "\xE3\x80\x82",      // ideographic full stop
    "\xE2\x82\xAC",      // euro sign
    "\xC2\xA3",          // pound sign
    "\xC2\xA9",          // copyright sign
    "\xC3\x97",          // multiplication sign
    "\xE2\x88\x9E",      // infinity
    "\xE2\x98\x83",      // a snowman
    "\xF0\x9F\x98\x80",  // an emoji
    "\xF0\x90\x90\x80",  // Deseret capital long i
    "\xEF\xBC\xA1",      // fullwidth A
    "\xEF\xBD\x81",      // fullwidth a
};

// The text the input's bytes stand for.
std::string Text(std::string_view bytes) {
  std::string text;
  for (unsigned char b : bytes) {
    if (b < 0x80) {
      text += static_cast<char>(b);
    } else {
      text += kCharacters[(b - 0x80) % std::size(kCharacters)];
    }
  }
  return text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool phrase = data[0] & 0x10;
  const uint32_t flags = phrase ? rules::kCaseSensitive : data[0] & 0x0F;  // the four flags
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t end = rest.find('\0');
  match::PatternLeaf leaf;
  leaf.field = rules::Field::kText;
  leaf.regex_flags = flags;
  std::string pattern;
  if (phrase) {
    // A phrases leaf as the Evaluator builds one: its pattern for RE2, its
    // literal (ASCII letters lower-case) for the scan.
    std::string literal = Text(rest.substr(0, std::min<size_t>(end, 32)));
    if (literal.empty()) return 0;
    pattern = rules::PhrasePattern(literal);
    for (char& c : literal) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    leaf.literals = {literal};
  } else {
    pattern = std::string(rest.substr(0, end));
    if (pattern.empty() || pattern.size() > 96) return 0;
    const bool ucp = (flags & rules::kUcp) || pattern.find("(*UCP)") != std::string::npos;
    if (SlowToCompile(pattern, ucp)) return 0;
    if (!rules::CheckPattern(pattern, flags).empty()) return 0;  // refused at load
  }
  leaf.expressions = {pattern};
  std::unique_ptr<match::Matcher> hs, set;
  // Hyperscan may still refuse a database past its limits: an error at
  // load, not a difference.
  if (!match::Matcher::Build({leaf}, "", "", &hs).ok()) return 0;
  if (!match::Matcher::BuildWithRe2Set({leaf}, &set).ok()) {
    Fail("RE2::Set refuses a pattern the loader accepted", pattern, flags, "");
  }
  const bool check_spans = phrase || !KnownDifference(pattern, flags);
  // A phrase's pattern with its boundaries, as one RE2: the boundaries'
  // Unicode classes checked against the scan's (the RE2::Set variant checks
  // boundaries as the scan does).
  std::unique_ptr<RE2> phrase_re;
  if (phrase) {
    phrase_re = std::make_unique<RE2>(rules::Re2Pattern(pattern, flags));
    if (!phrase_re->ok()) Fail("RE2 refuses a phrase's pattern", pattern, flags, "");
  }

  std::string_view texts = end == std::string_view::npos ? "" : rest.substr(end + 1);
  for (int t = 0; t < 8; ++t) {
    const size_t next = texts.find('\0');
    const std::string_view bytes = texts.substr(0, next);
    if (bytes.size() <= 128) {
      const std::string text = Text(bytes);
      const bool hit = Matches(*hs, text);
      std::vector<std::pair<uint32_t, uint32_t>> spans;
      hs->FindSpans(0, text, 16, &spans);
      uint32_t last = 0;
      for (const auto& [from, to] : spans) {
        if (from < last || to < from || to > text.size()) {
          Fail("a span out of order or outside the text", pattern, flags, text);
        }
        last = to;
      }
      if (check_spans && hit != !spans.empty()) {
        Fail(hit ? "Hyperscan matched and RE2 found no span"
                 : "RE2 found a span and Hyperscan did not match",
             pattern, flags, text);
      }
      if (check_spans && Matches(*set, text) != hit) {
        Fail("the RE2::Set variant and Hyperscan disagree", pattern, flags, text);
      }
      if (phrase && RE2::PartialMatch(text, *phrase_re) != hit) {
        Fail("the phrase's pattern in RE2 and the scan disagree", pattern, flags, text);
      }
      if (phrase) {  // the scan's occurrences, selected, are FindSpans' spans
        std::vector<std::pair<uint32_t, uint32_t>> found, selected, searched;
        auto scratch = hs->NewScratch();
        (void)hs->Scan(
            match::DatabaseSlot(rules::Field::kText, false), text, *scratch,
            [](uint32_t, uint32_t from, uint32_t to, void* f) {
              static_cast<std::vector<std::pair<uint32_t, uint32_t>>*>(f)->emplace_back(from, to);
            },
            &found);
        match::Matcher::SelectSpans(&found, 16, &selected);
        if (selected != spans)
          Fail("the scan's phrase spans are not FindSpans'", pattern, flags, text);
      }
    }
    if (next == std::string_view::npos) break;
    texts.remove_prefix(next + 1);
  }
  return 0;
}
