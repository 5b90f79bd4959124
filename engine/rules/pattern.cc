#include "engine/rules/pattern.h"

#include <hs/hs.h>
#include <re2/re2.h>

#include <cstdio>
#include <cstdlib>

namespace carewatch::rules {

namespace {
bool IsWordByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
}  // namespace

std::string PhrasePattern(const std::string& phrase) {
  std::string out;
  if (!phrase.empty() && IsWordByte(phrase.front())) out += "\\b";
  for (unsigned char c : phrase) {
    if (c >= 0x80 || IsWordByte(c)) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (!phrase.empty() && IsWordByte(phrase.back())) out += "\\b";
  return out;
}

unsigned HyperscanFlags(uint32_t regex_flags) {
  unsigned flags = HS_FLAG_UTF8 | HS_FLAG_SINGLEMATCH;
  if (!(regex_flags & kCaseSensitive)) flags |= HS_FLAG_CASELESS;
  if (regex_flags & kDotAll) flags |= HS_FLAG_DOTALL;
  if (regex_flags & kMultiline) flags |= HS_FLAG_MULTILINE;
  if (regex_flags & kUcp) flags |= HS_FLAG_UCP;
  return flags;
}

std::string Re2Pattern(const std::string& pattern, uint32_t regex_flags) {
  std::string inline_flags;
  if (!(regex_flags & kCaseSensitive)) inline_flags += 'i';
  if (regex_flags & kDotAll) inline_flags += 's';
  if (regex_flags & kMultiline) inline_flags += 'm';
  std::string translated = TranslateForRe2(pattern, regex_flags);
  if (inline_flags.empty()) return translated;
  return "(?" + inline_flags + ")" + translated;
}

namespace {
// PCRE's \v and \h in UTF-8 (with or without ucp), as RE2 class members.
constexpr const char* kVerticalSpace = "\\n\\x0B\\f\\r\\x{85}\\x{2028}\\x{2029}";
constexpr const char* kHorizontalSpace =
    "\\t \\x{A0}\\x{1680}\\x{180E}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}";
// With `ucp`, PCRE's \w (letters, numbers, '_') and \s (separators, \h
// and \v), as RE2 class members.
constexpr const char* kUcpWord = "\\p{L}\\p{N}_";
constexpr const char* kUcpSpace = "\\p{Z}\\t\\n\\x0B\\f\\r\\x{85}\\x{180E}";
}  // namespace

std::string TranslateForRe2(const std::string& pattern, uint32_t regex_flags) {
  bool multiline = regex_flags & kMultiline;
  const bool ucp = regex_flags & kUcp;
  // A pattern that sets `m` itself ("(?m)", "(?im:...)") keeps its '$'s.
  for (size_t at = pattern.find("(?"); at != std::string::npos && !multiline;
       at = pattern.find("(?", at + 2)) {
    for (size_t k = at + 2; k < pattern.size(); ++k) {
      const char f = pattern[k];
      if (f == 'm') multiline = true;
      if (!((f >= 'a' && f <= 'z') || (f >= 'A' && f <= 'Z') || f == '-')) break;
    }
  }
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false;  // inside [...]
  bool quoted = false;    // inside \Q...\E
  // A set of class members: as they are inside a class, bracketed outside.
  auto append_set = [&](const char* members) {
    if (!in_class) out += '[';
    out += members;
    if (!in_class) out += ']';
  };
  auto append_negated = [&](const char* members) {  // outside a class only
    out += "[^";
    out += members;
    out += ']';
  };
  const size_t n = pattern.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = pattern[i];
    if (quoted) {
      if (c == '\\' && i + 1 < n && pattern[i + 1] == 'E') {
        quoted = false;
        out += "\\E";
        ++i;
      } else {
        out += c;
      }
      continue;
    }
    if (c == '\\' && i + 1 < n) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 'Q') {
        quoted = true;
        out += "\\Q";
      } else if (ucp && (e == 'd' || e == 'D')) {
        out += e == 'd' ? "\\p{Nd}" : "\\P{Nd}";
      } else if (ucp && (e == 'w' || e == 's')) {
        append_set(e == 'w' ? kUcpWord : kUcpSpace);
      } else if (ucp && (e == 'W' || e == 'S') && !in_class) {
        append_negated(e == 'W' ? kUcpWord : kUcpSpace);
      } else if (e == 's') {
        out += in_class ? "[:space:]" : "[[:space:]]";
      } else if (e == 'S') {
        out += in_class ? "[:^space:]" : "[[:^space:]]";
      } else if (e == 'v' || e == 'h') {
        append_set(e == 'v' ? kVerticalSpace : kHorizontalSpace);
      } else if ((e == 'V' || e == 'H') && !in_class) {
        append_negated(e == 'V' ? kVerticalSpace : kHorizontalSpace);
      } else if (e == 'Z' && !in_class) {
        out += "(?:\\n?\\z)";
      } else if (e == 'e') {
        out += "\\x1B";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < n && pattern[i + 1] == ':') {
        // A POSIX class ("[:alpha:]") is copied whole: its ']' ends nothing.
        const size_t end = pattern.find(":]", i + 2);
        if (end != std::string::npos) {
          out.append(pattern, i, end + 2 - i);
          i = end + 1;
          continue;
        }
      }
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      // A ']' first in a class (after any '^') is a member, not its end.
      in_class = true;
      out += c;
      if (i + 1 < n && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < n && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == '$' && !multiline) {
      out += "(?:\\n?\\z)";
      continue;
    }
    out += c;
  }
  return out;
}

std::string CheckPattern(const std::string& pattern, uint32_t regex_flags) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  if (hs_expression_info(pattern.c_str(), HyperscanFlags(regex_flags), &info, &error) !=
      HS_SUCCESS) {
    std::string message = "Hyperscan rejects the pattern: ";
    message += error && error->message ? error->message : "unknown error";
    hs_free_compile_error(error);
    return message;
  }
  bool empty = info->min_width == 0;
  std::free(info);
  if (empty) return "the pattern can match an empty string; it would match every report";
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(Re2Pattern(pattern, regex_flags), options);
  if (!re.ok()) return "RE2, which locates match spans, rejects the pattern: " + re.error();
  return "";
}

}  // namespace carewatch::rules
