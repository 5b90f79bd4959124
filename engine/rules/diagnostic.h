#ifndef CAREWATCH_ENGINE_RULES_DIAGNOSTIC_H_
#define CAREWATCH_ENGINE_RULES_DIAGNOSTIC_H_

#include <string>
#include <vector>

namespace carewatch::rules {

// A position in a source file, 1-based. line == 0 means "the whole file".
struct SourcePos {
  std::string file;
  int line = 0;
  int col = 0;
};

// One finding of the loader or linter about a rule pack. Errors stop a
// RuleSet from being built; warnings do not.
struct Diagnostic {
  enum class Level { kError, kWarning };

  Level level = Level::kError;
  SourcePos pos;
  std::string message;
  std::string rule_id;  // empty when the problem is not inside a rule

  // "file:line:col: error: message [rule_id]", the format editors and CI
  // annotators understand.
  std::string ToString() const;
};

// What a diagnostic shows of a value: at most 40 bytes of it (cut on a
// character boundary) and its length when longer, with control characters
// escaped (\n, \t, \x1B), so that a diagnostic stays one line and a pack
// cannot write to the terminal of whoever lints it.
std::string Excerpt(const std::string& s);

// True when any diagnostic is an error.
bool HasErrors(const std::vector<Diagnostic>& diagnostics);

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_DIAGNOSTIC_H_
