#ifndef CAREWATCH_TESTS_TESTING_H_
#define CAREWATCH_TESTS_TESTING_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/rules/loader.h"

namespace carewatch::testing {

// An in-memory file system for list files.
struct FakeFiles {
  std::map<std::string, std::string> files;
  rules::FileReader Reader() const {
    return [this](const std::string& path, std::string* error) -> std::optional<std::string> {
      auto it = files.find(path);
      if (it == files.end()) {
        *error = "No such file or directory";
        return std::nullopt;
      }
      return it->second;
    };
  }
};

// Loads one pack given as text, named "pack.yaml".
inline rules::LoadResult LoadPack(const std::string& yaml, const FakeFiles& files = {}) {
  return rules::LoadRuleSetFromSources({{"pack.yaml", yaml}}, files.Reader());
}

// A minimal pack header with one duty, for rules under test.
inline std::string PackWithRules(const std::string& rules_yaml) {
  return "pack: test\nversion: \"1\"\nduties:\n"
         "  - {id: d, deadline: 24h, actions: [remove_content]}\nrules:\n" +
         rules_yaml;
}

// Builds an Evaluator from pack text; fails the test if it does not load.
std::unique_ptr<eval::Evaluator> MakeEvaluator(const std::string& yaml, const FakeFiles& files = {},
                                               const eval::EvaluatorOptions& options = {});

// The ids of the rules that flag `report`.
std::vector<std::string> FlaggedRules(const eval::Evaluator& e, const v1::ContentReport& report);

// Joins diagnostics for failure messages.
std::string Describe(const std::vector<rules::Diagnostic>& diagnostics);

}  // namespace carewatch::testing

#endif  // CAREWATCH_TESTS_TESTING_H_
