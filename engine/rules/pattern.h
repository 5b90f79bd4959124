#ifndef CAREWATCH_ENGINE_RULES_PATTERN_H_
#define CAREWATCH_ENGINE_RULES_PATTERN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/rules/ruleset.h"

namespace carewatch::rules {

// How a regex or phrase leaf is handed to the pattern engines. Hyperscan and
// RE2 see the same pattern text: Hyperscan decides whether a leaf matched,
// RE2 then locates the span. Both run in UTF-8 mode.

// The pattern for one phrase, to be matched case-sensitively: each ASCII
// letter as the class of its two cases ([sS]), every other character as
// written (a letter beyond ASCII matches in its own case only: `normalize`
// folds case in every script), ASCII punctuation as \xHH, and at each end
// that is a word character (IsWordCodePoint: a letter, mark or number in
// any script) a boundary: the text's end or a character that is not one,
// so "snap" matches "add me on SNAP!" but not "snapshot" or "snapé". The
// boundary takes its character: for matching only, not for spans. With
// PhraseEdges::kAsciiPrefilter the boundary is ASCII \b, at an edge that is
// an ASCII word character only: it matches wherever the exact pattern does,
// and sometimes where it does not (the Matcher's RE2::Set variant uses it
// and then checks the boundaries as the scan does: an exact boundary is a
// class of thousands of RE2 instructions, too many for thousands of
// phrases in one set). What the Matcher's literal path matches, exactly: RE2's
// (?i) would also take the long s for s and the Kelvin sign for k, and
// fold letters beyond ASCII.
enum class PhraseEdges { kWords, kAsciiPrefilter };
std::string PhrasePattern(const std::string& phrase, PhraseEdges edges = PhraseEdges::kWords);

// Hyperscan compile flags for a leaf's pattern (HS_FLAG_*).
unsigned HyperscanFlags(uint32_t regex_flags);

// The same pattern as RE2 syntax with the flags inlined, e.g. "(?i)abc",
// and translated where the two engines read the same text differently
// (TranslateForRe2).
std::string Re2Pattern(const std::string& pattern, uint32_t regex_flags);
// Alternatives as one RE2 pattern, each translated on its own, so that an
// option or a comment in one does not reach the next.
std::string Re2Pattern(const std::vector<std::string>& alternatives, uint32_t regex_flags);

// `pattern` rewritten so that RE2 matches what Hyperscan (which follows
// PCRE) matches, where their syntax agrees but their meaning does not:
//  - \s and \S: PCRE's white space includes the vertical tab, RE2's does
//    not; both become RE2's [[:space:]] ([:space:] in a class), which is
//    PCRE's set;
//  - \v: PCRE's is any vertical white space (line feed to carriage
//    return, U+0085, U+2028, U+2029), RE2's the vertical tab alone; it
//    becomes that set;
//  - $ without `multiline`: PCRE's also matches before a newline that ends
//    the value, RE2's only at the end; it becomes (?:\n?\z), so that RE2
//    finds the same matches (a span then also covers that newline).
//    `multiline` is read as PCRE scopes it: the rule's flag, then what an
//    option group sets ("(?m)", "(?-m)", "(?m:...)") until its group ends;
//  - where the case is ignored (the rule's flag, (?i), (?-i)), PCRE folds
//    letters but not \w, \W, \p{..} or POSIX classes, which RE2 folds (\w
//    would take U+017F and U+212A, \p{Lu} every cased letter): they are
//    given under (?-i:...), a class's sets apart from its other members;
//    [:upper:] and [:lower:] become [:alpha:], which is what PCRE reads;
//  - with `ucp` (the flag or a leading (*UCP)), \d, \w and \s: PCRE's
//    are Unicode's decimal digits, its letters, numbers and '_', and its
//    separators with \h and \v; RE2's are ASCII; they become those sets
//    and so do the POSIX classes; \b, which RE2 keeps to ASCII, stays as
//    it is;
//  - a negated set inside a class (\W with ucp, \V, \H, [:^word:]),
//    which RE2 cannot write there, becomes an alternative: [a\W] is
//    (?:[a]|[^\W's members]), [^\W] is [\W's members]; a negated class
//    holding one and anything else (an intersection) stays as written.
// And PCRE syntax RE2 lacks, which it would refuse, written as RE2 reads
// it: \h (horizontal white space) and \V, \H, \Z (as
// (?:\n?\z)), \e (escape), \cX (a control character), \o{...} (octal),
// \b in a class (backspace), an \E that ends nothing (ignored), the
// properties L&, Xan, Xwd, Xsp and Xps,
// named groups (?<name>...) and (?'name'...), comments (?#...), the `x`
// option (white space and #-comments outside a class dropped here), and
// the leading verbs (*UTF8), (*UTF) and (*UCP).
// Escapes, classes and \Q...\E quoting are read, so that "\$", "[$]" and
// "\Q\s\E" keep their meaning.
std::string TranslateForRe2(const std::string& pattern, uint32_t regex_flags);

// The pattern as Hyperscan is given it: as written, and a line feed after
// it when it ends inside a #-comment of the `x` option. PCRE ends such a
// comment at the pattern's end; Hyperscan refuses it ("Unterminated
// comment"). Under `x` the line feed is white space, so the pattern means
// what PCRE reads.
std::string HyperscanPattern(const std::string& pattern, uint32_t regex_flags);

// Checks that both engines accept `pattern` with `regex_flags`. Returns an
// empty string when they do, else the engine's own message.
std::string CheckPattern(const std::string& pattern, uint32_t regex_flags);

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_PATTERN_H_
