#ifndef CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
#define CAREWATCH_TOOLS_CAREWATCH_COMMON_H_

#include <memory>
#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/rules/loader.h"

namespace carewatch::cli {

// Loads and compiles rules, printing diagnostics to stderr (warnings only
// when `show_warnings`). Returns nullptr when the rules cannot be used.
std::unique_ptr<eval::Evaluator> LoadEvaluator(const std::vector<std::string>& paths,
                                               bool show_warnings);

// Exit codes shared by the subcommands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;    // lint errors, failing tests, unusable input
inline constexpr int kExitUsage = 2;      // bad command line
inline constexpr int kExitSkipped = 3;    // scan/diff: some input lines were skipped

int RunLint(const std::vector<std::string>& paths, bool warnings_as_errors);
int RunTest(const std::vector<std::string>& paths);
int RunScan(const std::vector<std::string>& rules, const std::string& input,
            const std::string& output, int threads, bool progress);
int RunExplain(const std::vector<std::string>& rules, const std::string& report_file);
int RunDiff(const std::string& old_rules, const std::string& new_rules, const std::string& input,
            bool json);
int RunGenCorpus(uint64_t count, uint64_t seed, double signal_fraction, size_t text_bytes,
                 const std::string& output);

}  // namespace carewatch::cli

#endif  // CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
