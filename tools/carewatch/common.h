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
struct AuditFilters {
  std::string service_id, duty_id, rule_id, from, to, finding_id;
  std::string period = "month";
};

int RunReplay(const std::vector<std::string>& rules, const std::string& input,
              const std::string& ledger_url, const std::string& until, int64_t sweep_interval,
              bool json);
int RunVerify(const std::string& ledger_url, const std::string& pubkey_file);
int RunAuditOffline(const std::string& what, const std::string& ledger_url, const AuditFilters& f,
                    bool json);
struct ScenarioOptions {
  uint64_t events = 1000;
  uint64_t seed = 1;
  double signal_fraction = 0.2;
  int services = 2;
  std::string miss_service;  // this service misses deadlines...
  double miss_rate = 0.0;    // ...on this share of its obligations
  int64_t start_time = 1767607200;
  std::string output;
};
int RunGenScenario(const std::vector<std::string>& rules, const ScenarioOptions& options);

int RunGenCorpus(uint64_t count, uint64_t seed, double signal_fraction, size_t text_bytes,
                 const std::string& output);

}  // namespace carewatch::cli

#endif  // CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
