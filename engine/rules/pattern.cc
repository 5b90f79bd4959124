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
  if (inline_flags.empty()) return pattern;
  return "(?" + inline_flags + ")" + pattern;
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
