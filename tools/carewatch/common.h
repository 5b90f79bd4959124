#ifndef CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
#define CAREWATCH_TOOLS_CAREWATCH_COMMON_H_

#include <memory>
#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/rules/loader.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace carewatch::cli {

// Loads and compiles rules, printing diagnostics to stderr (warnings only
// when `show_warnings`). Returns nullptr when the rules cannot be used.
std::unique_ptr<eval::Evaluator> LoadEvaluator(const std::vector<std::string>& paths,
                                               bool show_warnings);

// Exit codes shared by the subcommands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // lint errors, failing tests, unusable input
inline constexpr int kExitUsage = 2;    // bad command line
inline constexpr int kExitSkipped = 3;  // scan/diff: some input lines were skipped

int RunLint(const std::vector<std::string>& paths, bool warnings_as_errors);
int RunTest(const std::vector<std::string>& paths);
int RunScan(const std::vector<std::string>& rules, const std::string& input,
            const std::string& output, int threads, bool progress);
int RunExplain(const std::vector<std::string>& rules, const std::string& report_file);
int RunDiff(const std::string& old_rules, const std::string& new_rules, const std::string& input,
            bool json);
struct AuditFilters {
  std::string service_id, duty_id, rule_id, from, to, finding_id;
  std::string server, token, ca_file;  // query a carewatchd instead of a ledger file
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

struct LoadOptions {
  std::string server = "127.0.0.1:50051";
  std::string token, service, ca_file;
  std::string run_id = "load";
  bool stream = false, noop = false;
  int concurrency = 32;
  int window = 64;  // reports in flight per stream
  double rate = 0;  // reports/s in all, 0 = unbounded
  int64_t duration_ms = 10000;
  uint64_t seed = 1;
};
std::shared_ptr<grpc::Channel> Connect(const std::string& server, const std::string& ca_file);
void Authorize(grpc::ClientContext* ctx, const std::string& token);
int RunTokenNew(const std::string& principal, const std::string& role, const std::string& service);
int RunVerifyServer(const std::string& server, const std::string& token,
                    const std::string& pubkey_file, const std::string& state_file,
                    const std::string& ca_file);
int RunLoad(const LoadOptions& options);
int RunEvaluateClient(const std::string& server, const std::string& token,
                      const std::string& report_file, const std::string& ca_file);
int RunActionClient(const std::string& server, const std::string& token,
                    const v1::RecordActionRequest& req, const std::string& ca_file);

int RunGenCorpus(uint64_t count, uint64_t seed, double signal_fraction, size_t text_bytes,
                 const std::string& output);

}  // namespace carewatch::cli

#endif  // CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
