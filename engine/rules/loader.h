#ifndef CAREWATCH_ENGINE_RULES_LOADER_H_
#define CAREWATCH_ENGINE_RULES_LOADER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/rules/diagnostic.h"
#include "engine/rules/ruleset.h"

namespace carewatch::rules {

// One YAML file handed to the loader: a rule pack or an accountability file.
struct SourceFile {
  std::string path;
  std::string content;
};

// Reads a file a pack refers to (a list file). Returns nullopt and sets
// *error when it cannot.
using FileReader =
    std::function<std::optional<std::string>(const std::string& path, std::string* error)>;

// Reads a whole file from disk. nullopt and *error on failure.
std::optional<std::string> ReadFileToString(const std::string& path, std::string* error);

struct LoadResult {
  // Set only when no diagnostic is an error.
  std::shared_ptr<const RuleSet> ruleset;
  // Errors and warnings in file order, each with file:line:col.
  std::vector<Diagnostic> diagnostics;
};

// Limits that keep a hostile or broken pack from exhausting the loader.
inline constexpr size_t kMaxPackBytes = 16u << 20;
inline constexpr size_t kMaxListBytes = 256u << 20;
inline constexpr int kMaxConditionDepth = 64;
inline constexpr size_t kMaxConditionNodes = 200000;
inline constexpr size_t kMaxTestReportBytes = 1u << 20;

struct LoadOptions {
  // A list's `file:` must be a relative path inside the pack's directory
  // (checked on the path's text: no absolute path, no way up with '..').
  // True allows any path the process can read.
  bool lists_anywhere = false;
};

// The YAML files a path stands for: the path itself, or for a directory
// every *.yaml / *.yml directly in it, in name order.
std::vector<std::string> PackFiles(const std::string& path);

// Loads packs from files and directories (every *.yaml / *.yml directly in a
// directory, in name order). Files whose top-level key is `accountability`
// are accountability files. Never throws.
LoadResult LoadRuleSet(const std::vector<std::string>& paths, const LoadOptions& options = {});

// Loads packs given as text (for the Rules gRPC service and fuzzing); list
// files are read through `reader`, relative to each pack's path.
LoadResult LoadRuleSetFromSources(const std::vector<SourceFile>& files, const FileReader& reader,
                                  const LoadOptions& options = {});

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_LOADER_H_
