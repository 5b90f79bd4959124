#ifndef CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
#define CAREWATCH_TOOLS_CAREWATCH_COMMON_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/eval/evaluator.h"
#include "engine/ledger/audit.h"
#include "engine/rules/loader.h"

namespace CLI {
class App;
}  // namespace CLI

namespace grpc {
class Channel;
class ClientContext;
class Status;
}  // namespace grpc

namespace carewatch::cli {

// The command line is a table of commands. Each command file registers its
// own (Register*Commands): name, help, options and what runs once it was
// chosen; main only parses and runs. A command's options live in state its
// run function owns (a shared_ptr captured by value).
class CommandTable {
 public:
  explicit CommandTable(CLI::App* root) : root_(root) {}
  CLI::App* Add(const std::string& name, const std::string& help, std::function<int()> run);
  // The chosen command's result (after parsing); kExitUsage when none was.
  int RunChosen() const;

 private:
  CLI::App* root_;
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands_;
};
void RegisterRuleCommands(CommandTable& table);      // lint test scan explain diff gen-corpus
void RegisterScenarioCommands(CommandTable& table);  // gen-scenario
void RegisterLedgerCommands(CommandTable& table);    // replay verify key
void RegisterAuditCommands(CommandTable& table);     // audit
void RegisterClientCommands(CommandTable& table);    // token evaluate action load push
void RegisterReportCommands(CommandTable& table);    // report
void RegisterSignalCommands(CommandTable& table);    // signal

// The same --rules on every command that reads rules: repeatable, a pack
// file or a directory of packs each time.
void AddRulesOption(CLI::App* cmd, std::vector<std::string>* rules, bool required = true);
// --ledger URL | --server HOST:PORT (exclusive), --token, --ca.
void AddSourceOptions(CLI::App* cmd, std::string* ledger_url, std::string* server,
                      std::string* token, std::string* ca_file);

// Loads and compiles rules, printing diagnostics to stderr (warnings only
// when `show_warnings`). Returns nullptr when the rules cannot be used.
std::unique_ptr<eval::Evaluator> LoadEvaluator(const std::vector<std::string>& paths,
                                               bool show_warnings);

// Exit codes shared by the subcommands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // lint errors, failing tests, unusable input
inline constexpr int kExitUsage = 2;    // bad command line
inline constexpr int kExitSkipped = 3;  // scan/diff: some input lines were skipped

int RunLint(const std::vector<std::string>& paths, bool warnings_as_errors,
            bool lists_anywhere = false);
int RunTest(const std::vector<std::string>& paths);
int RunScan(const std::vector<std::string>& rules, const std::string& input,
            const std::string& output, int threads, bool progress);
int RunExplain(const std::vector<std::string>& rules, const std::string& report_file);
int RunDiff(const std::string& old_rules, const std::string& new_rules, const std::string& input,
            bool json);
struct AuditFilters {
  std::string service_id, duty_id, rule_id, from, to, finding_id;
  std::string status;                  // findings: open | closed | empty for both
  std::string server, token, ca_file;  // query a carewatchd instead of a ledger file
  std::string period = "month";
  std::string bundle;                   // evidence: write a bundle file
  uint64_t start_seq = 0, end_seq = 0;  // entries
  uint64_t seq = 0, tree_size = 0;      // prove
};

// A failed call as a Status: "WHAT: message (CODE_NAME)".
Status FromGrpc(const grpc::Status& st, const char* what);

// Paging through a carewatchd's answers. The server may be run by the party
// held to account, so a listing must end, and hold bounded memory, whatever
// it sends: a page that names a next one must bring something and a token
// that moves on, and a listing holds at most kMaxListed items. carewatchd's
// own pages always do (docs/api.md, paging).
class PageCheck {
 public:
  static constexpr size_t kMaxListed = 2'000'000;
  explicit PageCheck(std::string what) : what_(std::move(what)) {}
  // After a page of `items` items whose next token is `next` ("" on the
  // last page): an error naming the call when the pages do not move on or
  // the listing grew past kMaxListed.
  Status Page(size_t items, const std::string& next);

 private:
  std::string what_;
  std::string last_;
  size_t listed_ = 0;
};
// Every page of a finding's evidence from a carewatchd, all proved against
// one checkpoint: the one of `tree_size` (a signed checkpoint's size), or
// with 0 the one the first page signs.
Status FetchRemote(v1::Audit::Stub& audit, const std::string& token, const std::string& finding_id,
                   ledger::Evidence* out, uint64_t tree_size = 0);
// The verifier key a ledger records about itself (its origin and key).
Status LocalVerifierKey(ledger::LedgerBackend& backend, std::string* vkey);
// A finding's evidence as a self-contained bundle file's message.
v1::EvidenceBundle ToBundle(const ledger::Evidence& ev, const std::string& vkey);

struct ReportOptions {
  std::string ledger_url, server, token, ca_file;
  std::string vkey;  // the deployment's published verifier key (or a file with it)
  std::string service, from, to, period = "month";
  std::string output = "report.html";
  std::string pdf;      // also print to this PDF through headless Chromium
  std::string bundles;  // write each finding's evidence bundle into this directory
};
// carewatch report: the evidence report as one self-contained HTML file.
int RunReport(const ReportOptions& options);

int RunAuditEvidence(const std::string& ledger_url, const AuditFilters& f, bool json);
int RunAuditEntries(const std::string& ledger_url, const AuditFilters& f, bool json);
int RunAuditProve(const std::string& ledger_url, const AuditFilters& f, bool json);
int RunVerifyEvidence(const std::string& file, const std::string& vkey);
int RunKeyVkey(const std::string& ledger_url);
struct KeyRotateOptions {
  std::string ledger, signing_key, new_key, reason;
  bool dry_run = false;
};
int RunKeyRotate(const KeyRotateOptions& options);

int RunReplay(const std::vector<std::string>& rules, const std::string& input,
              const std::string& ledger_url, const std::string& until, int64_t sweep_interval,
              bool json);
// `trusted_key`: a verifier key or PEM public key, or a file with one;
// empty: integrity only, said loudly (and a failure with `require_key`).
int RunVerify(const std::string& ledger_url, const std::string& trusted_key, bool require_key);
struct ScenarioOptions {
  uint64_t reports = 1000;  // reports to write (with their actions)...
  uint64_t lines = 0;       // ...or, when set, about this many lines in all
  uint64_t seed = 1;
  double signal_fraction = 0.2;
  int services = 2;
  std::string miss_service;  // these services (comma-separated) miss deadlines...
  double miss_rate = 0.0;    // ...on this share of its obligations
  int64_t start_time = 1767607200;
  int max_gap_seconds = 20;  // between consecutive reports
  std::string output;
};
int RunGenScenario(const std::vector<std::string>& rules, const ScenarioOptions& options);

struct LoadOptions {
  std::string server = "127.0.0.1:50051";
  std::string token, service, ca_file;
  std::string run_id = "load";
  bool stream = false, noop = false;
  bool callback = false;  // unary calls from gRPC's callback API
  int concurrency = 32;
  int window = 64;  // reports in flight per stream
  double rate = 0;  // reports/s in all, 0 = unbounded
  int64_t duration_ms = 10000;
  uint64_t seed = 1;
};
std::shared_ptr<grpc::Channel> Connect(const std::string& server, const std::string& ca_file);
void Authorize(grpc::ClientContext* ctx, const std::string& token);
int RunTokenNew(const std::string& principal, const std::string& role, const std::string& service);
// Checks a live carewatchd against `trusted_key` (verifier key or PEM, or
// a file): the signed checkpoint, consistency with the one kept in
// `state_file`, and every finding's evidence, recomputed as `verify
// --evidence` does. With `watch_seconds`, a monitor: every so often it
// checks the new checkpoint's signature and consistency only, and stops
// with an ALERT on a split view (after `rounds` checks when > 0).
int RunVerifyServer(const std::string& server, const std::string& token,
                    const std::string& trusted_key, const std::string& state_file,
                    const std::string& ca_file, int64_t watch_seconds = 0, int rounds = 0);
int RunLoad(const LoadOptions& options);
struct PushOptions {
  std::string server = "127.0.0.1:50051";
  std::string token, ca_file;
  std::string input = "-";  // a gen-scenario JSONL file, "-": stdin
  int concurrency = 64;
  uint64_t limit = 0;  // lines, 0: all
};
// Sends a scenario's lines to a carewatchd: reports to Evaluate, actions to
// RecordAction, `concurrency` calls at a time, each report before its
// actions. The server records its own time beside the lines' claims.
int RunPush(const PushOptions& options);
int RunEvaluateClient(const std::string& server, const std::string& token,
                      const std::string& report_file, const std::string& ca_file);
int RunActionClient(const std::string& server, const std::string& token,
                    const v1::RecordActionRequest& req, const std::string& ca_file);

// `rules` empty: the built-in signals; else signals planted from them.
int RunGenCorpus(const std::vector<std::string>& rules, uint64_t count, uint64_t seed,
                 double signal_fraction, size_t text_bytes, const std::string& output);
// Reports that flag each rule (one list a rule that has any), from its
// tests and conditions, each checked by evaluation (plants.cc).
std::vector<std::vector<v1::ContentReport>> BuildPlants(const eval::Evaluator& evaluator);
// diff's NEW side: `candidate`'s files, and `base`'s packs (and
// accountability files) that the candidate does not replace by name.
std::vector<std::string> OverlayRules(const std::string& base, const std::string& candidate);

}  // namespace carewatch::cli

#endif  // CAREWATCH_TOOLS_CAREWATCH_COMMON_H_
