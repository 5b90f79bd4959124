#include "engine/rules/pattern.h"

#include <hs/hs.h>
#include <re2/re2.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "engine/common/utf8.h"

namespace carewatch::rules {

namespace {
bool IsWordByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
}  // namespace

std::string PhrasePattern(const std::string& phrase, PhraseEdges edges) {
  // The boundary of a phrase that starts or ends with a word character: a
  // character that is not one (IsWordCodePoint), or the text's end. RE2 has
  // no Unicode \b; the boundary takes its character. The prefilter's is
  // ASCII \b, and only at an edge that is an ASCII word character: it holds
  // wherever the exact boundary does.
  constexpr const char* kNotWord = "[^\\p{L}\\p{M}\\p{N}\\p{Pc}]";
  const bool exact = edges == PhraseEdges::kWords;
  std::string out;
  if (exact ? WordCharAt(phrase, 0) : !phrase.empty() && IsWordByte(phrase.front()))
    out += exact ? std::string("(?:\\A|") + kNotWord + ")" : "\\b";
  for (unsigned char c : phrase) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      out += '[';
      out += static_cast<char>(c | 0x20);
      out += static_cast<char>(c & ~0x20);
      out += ']';
    } else if (c >= 0x80 || IsWordByte(c)) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (exact ? WordCharBefore(phrase, phrase.size()) : !phrase.empty() && IsWordByte(phrase.back()))
    out += exact ? std::string("(?:") + kNotWord + "|\\z)" : "\\b";
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
  return Re2Pattern(std::vector<std::string>{pattern}, regex_flags);
}

std::string Re2Pattern(const std::vector<std::string>& alternatives, uint32_t regex_flags) {
  std::string out;
  if (!(regex_flags & kCaseSensitive)) out += 'i';
  if (regex_flags & kDotAll) out += 's';
  if (regex_flags & kMultiline) out += 'm';
  if (!out.empty()) out = "(?" + out + ")";
  if (alternatives.size() == 1) return out + TranslateForRe2(alternatives[0], regex_flags);
  for (size_t i = 0; i < alternatives.size(); ++i) {
    // Each translated alone: an option or comment in one ends with it.
    out += i == 0 ? "(?:" : "|(?:";
    out += TranslateForRe2(alternatives[i], regex_flags);
    out += ')';
  }
  return out;
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

// The verbs Hyperscan accepts at the start of a pattern: (*UTF8) and (*UTF)
// (carewatch always matches UTF-8) and (*UCP). Returns how many bytes they
// take; sets *ucp for (*UCP).
size_t LeadingVerbs(const std::string& pattern, bool* ucp) {
  size_t at = 0;
  for (;;) {
    if (pattern.compare(at, 7, "(*UTF8)") == 0) {
      at += 7;
    } else if (pattern.compare(at, 6, "(*UTF)") == 0) {
      at += 6;
    } else if (pattern.compare(at, 6, "(*UCP)") == 0) {
      *ucp = true;
      at += 6;
    } else {
      return at;
    }
  }
}

bool IsPatternSpace(char c) {  // what `x` ignores outside a class
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

void AppendCodePoint(uint32_t value, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\x{%X}", value);
  *out += buf;
}

// PCRE's own Unicode properties, which RE2 lacks, as RE2 class members.
const char* PcreProperty(std::string_view name) {
  if (name == "L&") return "\\p{Lu}\\p{Ll}\\p{Lt}";
  if (name == "Xan") return "\\p{L}\\p{N}";
  if (name == "Xwd") return "\\p{L}\\p{N}_";
  if (name == "Xsp" || name == "Xps") return kUcpSpace;  // as Hyperscan reads them
  return nullptr;
}

// PCRE's [:graph:] with `ucp`: letters, marks, numbers, punctuation,
// symbols and format characters but U+061C, U+180E and U+2066-U+2069 (the
// format characters written out: RE2 cannot take some out of \p{Cf}), and
// [:print:]: those and the space separators (U+180E was one).
constexpr const char* kUcpGraph =
    "\\p{L}\\p{M}\\p{N}\\p{P}\\p{S}\\x{AD}\\x{600}-\\x{605}\\x{6DD}\\x{70F}\\x{890}-\\x{891}"
    "\\x{8E2}\\x{200B}-\\x{200F}\\x{202A}-\\x{202E}\\x{2060}-\\x{2064}\\x{206A}-\\x{206F}"
    "\\x{FEFF}\\x{FFF9}-\\x{FFFB}\\x{110BD}\\x{110CD}\\x{13430}-\\x{13438}\\x{1BCA0}-\\x{1BCA3}"
    "\\x{1D173}-\\x{1D17A}\\x{E0001}\\x{E0020}-\\x{E007F}";
constexpr const char* kUcpPrintExtra = "\\p{Zs}\\x{180E}";

// With `ucp`, a POSIX class ("alpha", or "^alpha" from "[:^alpha:]") as
// PCRE reads it, as RE2 class members; *negated when they are the members
// of what it does not match (RE2 cannot negate several members inside a
// class). Empty where RE2's ASCII class is PCRE's.
std::string UcpPosixClass(std::string_view name, bool caseless, bool* negated) {
  const bool not_in = !name.empty() && name.front() == '^';
  if (not_in) name.remove_prefix(1);
  if (caseless && (name == "lower" || name == "upper")) name = "alpha";  // either case
  *negated = false;
  // A single property is negated as itself.
  if (name == "alpha") return not_in ? "\\P{L}" : "\\p{L}";
  if (name == "digit") return not_in ? "\\P{Nd}" : "\\p{Nd}";
  if (name == "lower") return not_in ? "\\P{Ll}" : "\\p{Ll}";
  if (name == "upper") return not_in ? "\\P{Lu}" : "\\p{Lu}";
  std::string members;
  if (name == "alnum") members = "\\p{L}\\p{N}";
  if (name == "word") members = kUcpWord;
  if (name == "blank") members = kHorizontalSpace;
  if (name == "space") members = kUcpSpace;
  if (name == "punct") members = "\\p{P}$+<=>^`|~";
  if (name == "graph") members = kUcpGraph;
  if (name == "print") members = std::string(kUcpGraph) + kUcpPrintExtra;
  *negated = not_in && !members.empty();
  return members;
}

// TranslateForRe2's work; `open_comment` (may be null) is set when the
// pattern ends inside a #-comment of the `x` option.
std::string Translate(const std::string& pattern, uint32_t regex_flags, bool* open_comment) {
  bool ucp = regex_flags & kUcp;
  // The options in force: the rule's, then what a group sets ("(?m)",
  // "(?x:...)", "(?-i)") until the group ends, as PCRE and RE2 scope them.
  struct Options {
    bool multiline;
    bool caseless;
    bool extended;  // `x`: white space and #-comments outside a class ignored
  };
  Options options{(regex_flags & kMultiline) != 0, (regex_flags & kCaseSensitive) == 0, false};
  std::vector<Options> groups;
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false;  // inside [...]
  bool quoted = false;    // inside \Q...\E
  // PCRE does not fold the case of \w, \W, \p{..} and POSIX classes (\w
  // caseless is [A-Za-z0-9_]); RE2 does (it adds U+017F and U+212A, and
  // \p{Lu} caseless is any cased letter). Such a set is given to RE2 under
  // (?-i:...); in a class, the class's sets are kept apart until it ends
  // and then given so, the class's other members folded as before.
  size_t class_start = 0;  // where the class began in `out`
  std::string class_sets;  // its sets, given at its end
  // Its negated sets (\W with ucp: [^\p{L}\p{N}_]), each the members of what
  // it does not match, which RE2 cannot write inside a class; and, for a
  // class that cannot be written without them, the pattern's own text.
  std::vector<std::string> class_negated;
  std::string class_negated_text;
  bool class_letters = false;       // it holds a letter, or any non-ASCII or escaped character
  bool class_negated_open = false;  // it began "[^"
  auto append_unfolded = [&](std::string_view piece) {
    if (in_class) {
      class_sets += piece;
    } else if (options.caseless) {
      out += "(?-i:";
      out += piece;
      out += ')';
    } else {
      out += piece;
    }
  };
  // A set of class members: as they are inside a class, bracketed outside.
  auto append_set = [&](std::string_view members, bool unfolded = false) {
    std::string piece;
    if (!in_class) piece += '[';
    piece += members;
    if (!in_class) piece += ']';
    if (unfolded) {
      append_unfolded(piece);
    } else {
      out += piece;
    }
  };
  // A negated set; `text` is how the pattern wrote it.
  auto append_negated = [&](std::string_view members, bool unfolded, std::string_view text) {
    if (in_class) {
      class_negated.emplace_back(members);
      class_negated_text += text;
    } else {
      append_set("^" + std::string(members), unfolded);
    }
  };
  const size_t n = pattern.size();
  for (size_t i = LeadingVerbs(pattern, &ucp); i < n; ++i) {
    const char c = pattern[i];
    if (quoted) {
      if (c == '\\' && i + 1 < n && pattern[i + 1] == 'E') {
        quoted = false;
        out += "\\E";
        ++i;
      } else {
        if (in_class && (IsWordByte(c) || static_cast<unsigned char>(c) >= 0x80)) {
          class_letters = true;
        }
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
      } else if (e == 'E') {
        // An \E that ends no \Q...\E: PCRE ignores it.
      } else if (ucp && (e == 'd' || e == 'D')) {
        out += e == 'd' ? "\\p{Nd}" : "\\P{Nd}";
      } else if (ucp && (e == 'w' || e == 's')) {
        append_set(e == 'w' ? kUcpWord : kUcpSpace, e == 'w');
      } else if (ucp && (e == 'W' || e == 'S')) {
        append_negated(e == 'W' ? kUcpWord : kUcpSpace, e == 'W', e == 'W' ? "\\W" : "[:^space:]");
      } else if (e == 'w' || e == 'W') {
        append_unfolded(e == 'w' ? "\\w" : "\\W");
      } else if (e == 's') {
        out += in_class ? "[:space:]" : "[[:space:]]";
      } else if (e == 'S') {
        out += in_class ? "[:^space:]" : "[[:^space:]]";
      } else if (e == 'v' || e == 'h') {
        append_set(e == 'v' ? kVerticalSpace : kHorizontalSpace);
      } else if (e == 'V' || e == 'H') {
        append_negated(e == 'V' ? kVerticalSpace : kHorizontalSpace, false,
                       e == 'V' ? "\\V" : "\\H");
      } else if (e == 'Z' && !in_class) {
        out += "(?:\\n?\\z)";
      } else if (e == 'e') {
        out += "\\x1B";
      } else if (e == 'b' && in_class) {
        out += "\\x08";  // in a class, PCRE's \b is the backspace
      } else if (e == 'c' && i + 1 < n && static_cast<unsigned char>(pattern[i + 1]) < 0x80) {
        // \cX: the control character of X (lower case as upper case).
        char x = pattern[++i];
        if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
        AppendCodePoint(static_cast<unsigned char>(x) ^ 0x40u, &out);
      } else if (e == 'o' && i + 1 < n && pattern[i + 1] == '{') {
        // \o{...}: a code point in octal.
        const size_t close = pattern.find('}', i + 2);
        uint32_t value = 0;
        bool octal = close != std::string::npos && close > i + 2;
        for (size_t k = i + 2; octal && k < close; ++k) {
          octal = pattern[k] >= '0' && pattern[k] <= '7' && value < 0x110000;
          value = value * 8 + static_cast<uint32_t>(pattern[k] - '0');
        }
        if (octal) {
          class_letters = true;
          AppendCodePoint(value, &out);
          i = close;
        } else {
          out += c;
          out += e;
        }
      } else if ((e == 'p' || e == 'P') && i + 1 < n) {
        // A property: PCRE's L&, Xan, Xwd, Xsp and Xps written as RE2's;
        // RE2's as they are ("\pL", "\p{Greek}", "\p{^L}").
        size_t close = i + 1;
        std::string_view name = std::string_view(pattern).substr(i + 1, 1);
        if (pattern[i + 1] == '{') {
          close = pattern.find('}', i + 2);
          if (close == std::string::npos) close = n - 1;
          name = std::string_view(pattern).substr(i + 2, close - i - 2);
        }
        bool negated = e == 'P';
        if (!name.empty() && name.front() == '^') {
          negated = !negated;
          name.remove_prefix(1);
        }
        const char* members = PcreProperty(name);
        const std::string_view text = std::string_view(pattern).substr(i - 1, close - i + 2);
        if (members) {
          if (negated) {
            append_negated(members, true, text);
          } else {
            append_set(members, true);
          }
        } else {
          append_unfolded(text);
        }
        i = close;
      } else {
        if (in_class && (e == 'x' || e == 'N' || (e >= '0' && e <= '9') ||
                         static_cast<unsigned char>(e) >= 0x80)) {
          class_letters = true;  // a character written by its code
        }
        out += c;
        out += e;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < n && pattern[i + 1] == ':') {
        // A POSIX class ("[:alpha:]") is read whole: its ']' ends nothing.
        const size_t end = pattern.find(":]", i + 2);
        if (end != std::string::npos) {
          const std::string_view name = std::string_view(pattern).substr(i + 2, end - i - 2);
          const std::string_view text = std::string_view(pattern).substr(i, end + 2 - i);
          bool negated = false;
          const std::string members =
              ucp ? UcpPosixClass(name, options.caseless, &negated) : std::string();
          if (negated) {
            append_negated(members, true, text);
          } else if (!members.empty()) {
            class_sets += members;
          } else if (options.caseless && (name == "upper" || name == "lower")) {
            class_sets += "[:alpha:]";  // caseless: either case
          } else if (options.caseless && (name == "^upper" || name == "^lower")) {
            class_sets += "[:^alpha:]";
          } else {
            class_sets += text;
          }
          i = end + 1;
          continue;
        }
      }
      if (c == ']') {
        in_class = false;
        const bool negated = class_negated_open;
        const bool others = out.size() > class_start + (negated ? 2 : 1);
        auto unfold = [&](const std::string& piece) {
          return options.caseless ? "(?-i:" + piece + ")" : piece;
        };
        if (!class_negated.empty() && !negated) {
          // [a\W] is [a] or [^\W's members]: each part as the rest are.
          std::string parts;
          if (others) parts = out.substr(class_start) + "]";
          if (!class_sets.empty()) {
            parts += (parts.empty() ? "" : "|") + unfold("[" + class_sets + "]");
          }
          for (const std::string& members : class_negated) {
            parts += (parts.empty() ? "" : "|") + unfold("[^" + members + "]");
          }
          out.resize(class_start);
          out += "(?:" + parts + ")";
        } else if (!class_negated.empty() && !others && class_sets.empty() &&
                   class_negated.size() == 1) {
          out.resize(class_start);  // [^\W] is \W's members
          out += unfold("[" + class_negated[0] + "]");
        } else if (!class_negated.empty()) {
          // [^a\W] would be an intersection, which RE2 has not: as written.
          out += class_sets;
          out += class_negated_text;
          out += ']';
        } else if (!options.caseless || class_sets.empty() || (negated && class_letters)) {
          // Nothing to keep from folding, or a negated class whose letters
          // RE2 must fold: as it was written (the sets then folded too).
          out += class_sets;
          out += ']';
        } else if (!class_letters) {  // no member has a case: none is folded
          out.insert(class_start, "(?-i:");
          out += class_sets;
          out += "])";
        } else {  // [\p{Lu}a] is (?-i:[\p{Lu}]) or [a], folded
          std::string folded = out.substr(class_start);
          out.resize(class_start);
          out += "(?:(?-i:[";
          out += class_sets;
          out += "])";
          if (others) {
            out += '|';
            out += folded;
            out += ']';
          }
          out += ')';
        }
        class_sets.clear();
        class_negated.clear();
        class_negated_text.clear();
        continue;
      }
      if (IsWordByte(c) || static_cast<unsigned char>(c) >= 0x80) class_letters = true;
      // A '^' here is a member; with the class's sets moved to its end it
      // could come first, where RE2 would read it as negating the class.
      out += c == '^' ? "\\^" : std::string(1, c);
      continue;
    }
    if (options.extended && IsPatternSpace(c)) continue;
    if (options.extended && c == '#') {  // a comment to the end of the line
      const size_t eol = pattern.find('\n', i);
      if (eol == std::string::npos && open_comment) *open_comment = true;
      i = eol == std::string::npos ? n : eol;
      continue;
    }
    if (c == '[') {
      // A ']' first in a class (after any '^') is a member, not its end.
      in_class = true;
      class_start = out.size();
      class_letters = false;
      class_negated_open = i + 1 < n && pattern[i + 1] == '^';
      out += c;
      if (class_negated_open) out += pattern[++i];
      if (i + 1 < n && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == '$' && !options.multiline) {
      out += "(?:\\n?\\z)";
      continue;
    }
    if (c == ')') {
      if (!groups.empty()) {
        options = groups.back();
        groups.pop_back();
      }
      out += c;
      continue;
    }
    if (c != '(') {
      out += c;
      continue;
    }
    // A group. Its options are the enclosing ones until it sets its own.
    if (pattern.compare(i, 3, "(?#") == 0) {  // a comment, to the first ')'
      const size_t close = pattern.find(')', i);
      i = close == std::string::npos ? n : close;
      continue;
    }
    groups.push_back(options);
    if (pattern.compare(i, 3, "(?<") == 0 && i + 3 < n && pattern[i + 3] != '=' &&
        pattern[i + 3] != '!') {
      out += "(?P<";  // a named group, as RE2 writes it
      i += 2;
      continue;
    }
    if (pattern.compare(i, 3, "(?'") == 0) {
      const size_t close = pattern.find('\'', i + 3);
      if (close != std::string::npos) {
        out += "(?P<";
        out.append(pattern, i + 3, close - i - 3);
        out += '>';
        i = close;
        continue;
      }
    }
    // Options: "(?im-sx)" for the rest of the enclosing group, "(?x:...)"
    // for a group of its own. RE2 has no `x`: it is applied here and dropped.
    size_t k = i + 2;
    std::string on, off;
    bool negate = false;
    if (pattern.compare(i, 2, "(?") == 0) {
      for (; k < n && ((pattern[k] >= 'a' && pattern[k] <= 'z') ||
                       (pattern[k] >= 'A' && pattern[k] <= 'Z') || pattern[k] == '-');
           ++k) {
        if (pattern[k] == '-') {
          negate = true;
          continue;
        }
        if (pattern[k] != 'x') (negate ? off : on) += pattern[k];
      }
    }
    if (k == i + 2 || k >= n || (pattern[k] != ')' && pattern[k] != ':')) {
      out += c;  // a plain group, or one RE2 reads as it is
      continue;
    }
    Options set = options;
    for (size_t f = i + 2, minus = 0; f < k; ++f) {
      if (pattern[f] == '-') minus = 1;
      if (pattern[f] == 'm') set.multiline = !minus;
      if (pattern[f] == 'i') set.caseless = !minus;
      if (pattern[f] == 'x') set.extended = !minus;
    }
    if (pattern[k] == ')') {  // applies to the enclosing group: no group of its own
      groups.pop_back();
      options = set;
      if (!on.empty() || !off.empty()) out += "(?" + on + (off.empty() ? "" : "-" + off) + ")";
    } else {
      options = set;
      out += "(?" + on + (off.empty() ? "" : "-" + off) + ":";
    }
    i = k;
  }
  return out;
}

}  // namespace

std::string TranslateForRe2(const std::string& pattern, uint32_t regex_flags) {
  return Translate(pattern, regex_flags, nullptr);
}

std::string HyperscanPattern(const std::string& pattern, uint32_t regex_flags) {
  if (pattern.find('#') == std::string::npos) return pattern;
  bool open_comment = false;
  Translate(pattern, regex_flags, &open_comment);
  return open_comment ? pattern + "\n" : pattern;
}

std::string CheckPattern(const std::string& pattern, uint32_t regex_flags) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  if (hs_expression_info(HyperscanPattern(pattern, regex_flags).c_str(),
                         HyperscanFlags(regex_flags), &info, &error) != HS_SUCCESS) {
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
