// carewatch: the rule author's and auditor's command line.
#include <CLI/CLI.hpp>
#include <ctime>
#include <iostream>

#include "engine/rules/duration.h"
#include "tools/carewatch/common.h"

namespace {
int Run(int argc, char** argv) {
  using namespace carewatch::cli;
  CLI::App app{"carewatch: duty-of-care rules, evaluation and evidence"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "carewatch 0.1.0");

  std::vector<std::string> paths;
  bool werror = false;
  auto* lint = app.add_subcommand("lint", "Check rule packs; prints file:line:col diagnostics");
  lint->add_option("paths", paths, "Pack files or directories")->required();
  lint->add_flag("--warnings-as-errors", werror, "Exit 1 on warnings too");
  bool lists_anywhere = false;
  lint->add_flag("--lists-anywhere", lists_anywhere,
                 "List files may lie outside their pack's directory (as carewatchd's setting)");

  auto* test = app.add_subcommand("test", "Run the rules' embedded tests");
  test->add_option("paths", paths, "Pack files or directories")->required();

  std::vector<std::string> rules;
  std::string input, output;
  int threads = 2;
  bool no_progress = false;
  auto* scan = app.add_subcommand("scan", "Evaluate JSONL reports; writes JSONL verdicts");
  scan->add_option("--rules", rules, "Rule directory or pack (repeatable)")->required();
  scan->add_option("input", input, "Reports, one JSON ContentReport a line ('-' for stdin)")
      ->required();
  scan->add_option("-o,--output", output, "Write verdicts here instead of stdout");
  scan->add_option("-j,--threads", threads, "Worker threads")->check(CLI::Range(1, 64));
  scan->add_flag("--no-progress", no_progress, "No progress bar even on a terminal");

  std::string report_file;
  auto* explain = app.add_subcommand("explain", "Show how every rule judged one report");
  explain->add_option("--rules", rules, "Rule directory or pack (repeatable)")->required();
  explain->add_option("report", report_file, "A JSON ContentReport")->required();

  bool json = false;
  auto* diff = app.add_subcommand("diff", "What a candidate rule set changes on a corpus");
  diff->add_option("--rules", rules, "--rules OLD --rules NEW")->required()->expected(2);
  diff->add_option("input", input, "Reports, JSONL")->required();
  diff->add_flag("--json", json, "One JSON object per changed report, then a summary object");

  uint64_t count = 1000, seed = 1;
  double fraction = 0.05;
  size_t text_bytes = 300;
  auto* gen = app.add_subcommand("gen-corpus", "Write a reproducible synthetic corpus (JSONL)");
  gen->add_option("-n,--count", count, "Number of reports");
  gen->add_option("--seed", seed, "Random seed; the same seed gives the same corpus");
  gen->add_option("--signal-fraction", fraction, "Share of reports carrying a signal")
      ->check(CLI::Range(0.0, 1.0));
  gen->add_option("--text-bytes", text_bytes, "Approximate text size per report");
  gen->add_option("-o,--output", output, "Output file (default stdout)");

  std::string ledger_url, until, pubkey, sweep = "1m";
  auto* replay =
      app.add_subcommand("replay", "Run reports and actions through the whole duty pipeline");
  replay->add_option("--rules", rules, "Rule directory or pack (repeatable)")->required();
  replay
      ->add_option("events", input,
                   "JSONL lines {\"report\":{..}} or {\"action\":{..}}, in time order")
      ->required();
  replay->add_option("--ledger", ledger_url, "Record into this ledger (sqlite:///path/ledger.db)");
  replay->add_option("--until", until,
                     "End the simulated clock here (default: after the last deadline)");
  replay->add_option("--sweep-interval", sweep, "Deadline sweeper period in simulated time");
  replay->add_flag("--json", json, "Print {\"breaches\":[..],\"findings\":[..]}");

  std::string server, token, state_file, ca_file;
  auto* verify = app.add_subcommand(
      "verify", "Check a ledger or a live server independently; names the first bad seq");
  auto* verify_ledger = verify->add_option("--ledger", ledger_url, "Ledger URL or file");
  auto* verify_server = verify->add_option("--server", server, "carewatchd HOST:PORT");
  verify_ledger->excludes(verify_server);
  verify->add_option("--pubkey", pubkey, "The deployment's published Ed25519 public key (PEM)");
  std::string vkey, evidence_file, watch;
  bool require_key = false;
  int rounds = 0;
  verify->add_option("--vkey", vkey,
                     "The deployment's published verifier key (NAME+ID+KEY), or a file with it");
  verify->add_flag("--require-key", require_key,
                   "Fail unless a trusted key (--vkey or --pubkey) was given");
  auto* verify_evidence = verify->add_option("--evidence", evidence_file,
                                             "An evidence bundle to check offline (with --vkey)");
  verify_evidence->excludes(verify_ledger)->excludes(verify_server);
  verify->add_option("--watch", watch,
                     "With --server --state: check each new checkpoint every this often");
  verify->add_option("--rounds", rounds, "With --watch: stop after this many checks (0: never)");
  verify->add_option("--token", token, "Regulator token (with --server)");
  verify->add_option("--state", state_file,
                     "Remembers the last accepted checkpoint, to check consistency");
  verify->add_option("--ca", ca_file, "CA certificate for a TLS server");

  auto* key_cmd = app.add_subcommand("key", "The deployment's keys");
  auto* key_vkey = key_cmd->add_subcommand(
      "vkey", "Print the verifier key (NAME+ID+KEY) of a ledger: what a deployment publishes");
  key_vkey->add_option("--ledger", ledger_url, "Ledger URL or file")->required();
  key_cmd->require_subcommand(1);

  carewatch::cli::AuditFilters filters;
  std::string what;
  auto* audit = app.add_subcommand(
      "audit",
      "Regulator queries: breaches | findings | evidence ID | entries | prove SEQ | stats");
  audit->add_option("query", what, "breaches, findings, evidence, entries, prove or stats")
      ->required()
      ->check(CLI::IsMember({"breaches", "findings", "evidence", "entries", "prove", "stats"}));
  audit->add_option("id", filters.finding_id, "evidence: the finding; prove: the seq");
  audit->add_option("--bundle", filters.bundle,
                    "evidence: write a self-contained bundle file (check with verify --evidence)");
  audit->add_option("--start", filters.start_seq, "entries: first seq (default 1)");
  audit->add_option("--end", filters.end_seq, "entries: last seq (default: the end)");
  audit->add_option("--tree-size", filters.tree_size,
                    "prove: against the checkpoint of this size (default: a new one)");
  auto* audit_ledger = audit->add_option("--ledger", ledger_url, "Ledger URL or file");
  auto* audit_server = audit->add_option("--server", server, "carewatchd HOST:PORT");
  audit_ledger->excludes(audit_server);
  audit->add_option("--token", token, "Regulator token (with --server)");
  audit->add_option("--ca", ca_file, "CA certificate for a TLS server");
  audit->add_option("--service", filters.service_id, "Only this service");
  audit->add_option("--duty", filters.duty_id, "Only this duty");
  audit->add_option("--rule", filters.rule_id, "Only this rule (breaches)");
  audit->add_option("--from", filters.from, "From this date or time");
  audit->add_option("--to", filters.to, "Up to this date or time");
  audit->add_option("--period", filters.period, "stats: month, quarter or year")
      ->check(CLI::IsMember({"month", "quarter", "year"}));
  audit->add_flag("--json", json, "JSON lines instead of a table");

  carewatch::cli::ScenarioOptions scenario;
  std::string start;
  auto* gen_scenario = app.add_subcommand(
      "gen-scenario",
      "Write reports and the platform's actions on them (replay input), reproducibly");
  gen_scenario->add_option("--rules", rules, "Rules that decide what the platform must act on")
      ->required();
  gen_scenario->add_option("-n,--events", scenario.events, "Number of lines (reports and actions)");
  gen_scenario->add_option("--seed", scenario.seed, "Random seed");
  gen_scenario
      ->add_option("--signal-fraction", scenario.signal_fraction, "Share of reports with a signal")
      ->check(CLI::Range(0.0, 1.0));
  gen_scenario
      ->add_option("--services", scenario.services, "Number of services (example-social, ...)")
      ->check(CLI::Range(1, 8));
  gen_scenario->add_option("--miss-service", scenario.miss_service,
                           "The services that miss deadlines (comma-separated)");
  gen_scenario
      ->add_option("--report-gap", scenario.max_gap_seconds,
                   "Largest gap between consecutive reports, seconds (uniform from 1)")
      ->check(CLI::Range(1, 86400));
  gen_scenario
      ->add_option("--miss-rate", scenario.miss_rate, "Share of its obligations missed or late")
      ->check(CLI::Range(0.0, 1.0));
  gen_scenario->add_option("--start", start,
                           "Time of the first report (default 2026-01-05T10:00:00Z)");
  gen_scenario->add_option("-o,--output", scenario.output, "Output file (default stdout)");

  std::string principal, role, service;
  auto* token_cmd = app.add_subcommand("token", "Tokens for carewatchd");
  auto* token_new = token_cmd->add_subcommand("new", "Print a new token and its tokens-file line");
  token_new->add_option("--principal", principal, "Who holds it")->required();
  token_new->add_option("--role", role, "platform, regulator, rule_author or admin")->required();
  token_new->add_option("--service", service, "For platforms: their service_id");

  carewatch::cli::LoadOptions load;
  std::string duration = "10s";
  auto* load_cmd = app.add_subcommand("load", "Load generator for Evaluate / EvaluateStream");
  load_cmd->add_option("--server", load.server, "carewatchd HOST:PORT");
  load_cmd->add_option("--token", load.token, "Platform token")->required();
  load_cmd->add_option("--service", load.service, "The token's service_id")->required();
  load_cmd->add_flag("--stream", load.stream, "EvaluateStream instead of unary Evaluate");
  load_cmd->add_flag("--noop", load.noop,
                     "Call the no-op service of the same shape (the transport's limit)");
  load_cmd->add_option("-c,--concurrency", load.concurrency, "Concurrent calls (or streams)")
      ->check(CLI::Range(1, 1024));
  load_cmd->add_option("--window", load.window, "Reports in flight per stream")
      ->check(CLI::Range(1, 4096));
  load_cmd->add_option("--rate", load.rate, "Reports per second in all (0: unbounded)");
  load_cmd->add_option("--duration", duration, "How long (e.g. 10s)");
  load_cmd->add_option("--run-id", load.run_id,
                       "Prefix of report ids (distinct runs, distinct reports)");
  load_cmd->add_option("--ca", load.ca_file, "CA certificate for a TLS server");

  carewatch::cli::PushOptions push;
  auto* push_cmd = app.add_subcommand(
      "push", "Send a gen-scenario stream (reports and actions) to a carewatchd");
  push_cmd->add_option("input", push.input, "JSONL file, or - for stdin")->required();
  push_cmd->add_option("--server", push.server, "carewatchd HOST:PORT");
  push_cmd->add_option("--token", push.token, "Admin token (lines name several services)")
      ->required();
  push_cmd->add_option("-c,--concurrency", push.concurrency, "Calls in flight")
      ->check(CLI::Range(1, 1024));
  push_cmd->add_option("--limit", push.limit, "Lines to send (0: all)");
  push_cmd->add_option("--ca", push.ca_file, "CA certificate for a TLS server");

  carewatch::cli::ReportOptions report_opt;
  auto* report_cmd = app.add_subcommand(
      "report", "Write the evidence report: one self-contained HTML file (and a PDF)");
  auto* report_ledger =
      report_cmd->add_option("--ledger", report_opt.ledger_url, "Ledger URL or file (offline)");
  auto* report_server =
      report_cmd->add_option("--server", report_opt.server, "carewatchd HOST:PORT");
  report_ledger->excludes(report_server);
  report_cmd->add_option("--token", report_opt.token, "Regulator token (with --server)");
  report_cmd->add_option("--ca", report_opt.ca_file, "CA certificate for a TLS server");
  report_cmd->add_option("--vkey", report_opt.vkey,
                         "The deployment's published verifier key (NAME+ID+KEY), or a file");
  report_cmd->add_option("--service", report_opt.service, "Only this service (default: all)");
  report_cmd->add_option("--from", report_opt.from, "From this date or time");
  report_cmd->add_option("--to", report_opt.to, "Up to this date (inclusive) or time");
  report_cmd->add_option("--period", report_opt.period, "Trends by month, quarter or year")
      ->check(CLI::IsMember({"month", "quarter", "year"}));
  report_cmd->add_option("-o,--output", report_opt.output, "The HTML file (default report.html)");
  report_cmd->add_option("--pdf", report_opt.pdf, "Also print it to this PDF (headless Chromium)");
  report_cmd->add_option("--bundles", report_opt.bundles,
                         "Write each finding's evidence bundle into this directory");

  std::string evaluate_file;
  auto* evaluate_cmd =
      app.add_subcommand("evaluate", "Send one report to a carewatchd (Moderation.Evaluate)");
  evaluate_cmd->add_option("report", evaluate_file, "A JSON ContentReport")->required();
  evaluate_cmd->add_option("--server", server, "carewatchd HOST:PORT")->required();
  evaluate_cmd->add_option("--token", token, "Platform token")->required();
  evaluate_cmd->add_option("--ca", ca_file, "CA certificate for a TLS server");

  carewatch::v1::RecordActionRequest action_req;
  std::string action_service, action_report, action_name, taken_at;
  auto* action_cmd =
      app.add_subcommand("action", "Record an action with a carewatchd (Moderation.RecordAction)");
  action_cmd->add_option("--server", server, "carewatchd HOST:PORT")->required();
  action_cmd->add_option("--token", token, "Platform token")->required();
  action_cmd->add_option("--service", action_service, "service_id")->required();
  action_cmd->add_option("--report", action_report, "report_id")->required();
  action_cmd->add_option("--action", action_name, "remove_content, report_to_nca, ...")->required();
  action_cmd->add_option("--taken-at", taken_at, "When (RFC 3339); default now");
  action_cmd->add_option("--ca", ca_file, "CA certificate for a TLS server");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (*lint) return RunLint(paths, werror, lists_anywhere);
  if (*test) return RunTest(paths);
  if (*scan) return RunScan(rules, input, output, threads, !no_progress);
  if (*explain) return RunExplain(rules, report_file);
  if (*diff) return RunDiff(rules[0], rules[1], input, json);
  if (*replay) {
    std::string error;
    auto interval = carewatch::rules::ParseDuration(sweep, &error);
    if (!interval) {
      std::cerr << "error: --sweep-interval: " << error << "\n";
      return kExitUsage;
    }
    return RunReplay(rules, input, ledger_url, until, *interval, json);
  }
  if (*verify) {
    if (!vkey.empty() && !pubkey.empty()) {
      std::cerr << "error: give --vkey or --pubkey, not both\n";
      return kExitUsage;
    }
    std::string trusted = vkey.empty() ? pubkey : vkey;
    if (!evidence_file.empty()) {
      if (trusted.empty()) {
        std::cerr << "error: verify --evidence needs --vkey (the key the deployment published)\n";
        return kExitUsage;
      }
      return RunVerifyEvidence(evidence_file, trusted);
    }
    if (!server.empty()) {
      if (trusted.empty()) {
        std::cerr << "error: verify --server needs --vkey or --pubkey (the published key, never "
                     "the server's own word)\n";
        return kExitUsage;
      }
      int64_t every = 0;
      if (!watch.empty()) {
        std::string error;
        auto d = carewatch::rules::ParseDuration(watch, &error);
        if (!d || state_file.empty()) {
          std::cerr << "error: --watch: " << (d ? "needs --state" : error) << "\n";
          return kExitUsage;
        }
        every = *d;
      }
      return RunVerifyServer(server, token, trusted, state_file, ca_file, every, rounds);
    }
    if (ledger_url.empty()) {
      std::cerr << "error: verify needs --ledger, --server or --evidence\n";
      return kExitUsage;
    }
    return RunVerify(ledger_url, trusted, require_key);
  }
  if (*key_vkey) return RunKeyVkey(ledger_url);
  if (*token_new) return RunTokenNew(principal, role, service);
  if (*evaluate_cmd) return RunEvaluateClient(server, token, evaluate_file, ca_file);
  if (*action_cmd) {
    action_req.set_service_id(action_service);
    action_req.set_report_id(action_report);
    action_req.set_action(action_name);
    int64_t t = std::time(nullptr);
    if (!taken_at.empty()) {
      auto parsed = carewatch::rules::ParseDateTime(taken_at);
      if (!parsed) {
        std::cerr << "error: --taken-at: bad time '" << taken_at << "'\n";
        return kExitUsage;
      }
      t = *parsed;
    }
    action_req.mutable_taken_at()->set_seconds(t);
    return RunActionClient(server, token, action_req, ca_file);
  }
  if (*push_cmd) return RunPush(push);
  if (*report_cmd) return RunReport(report_opt);
  if (*load_cmd) {
    std::string error;
    auto d = carewatch::rules::ParseDuration(duration, &error);
    if (!d) {
      std::cerr << "error: --duration: " << error << "\n";
      return kExitUsage;
    }
    load.duration_ms = *d * 1000;
    return RunLoad(load);
  }
  if (*gen_scenario) {
    if (!start.empty()) {
      auto t = carewatch::rules::ParseDateTime(start);
      if (!t) {
        std::cerr << "error: --start: bad time '" << start << "'\n";
        return kExitUsage;
      }
      scenario.start_time = *t;
    }
    return RunGenScenario(rules, scenario);
  }
  if (*audit) {
    if (ledger_url.empty() && server.empty()) {
      std::cerr << "error: audit needs --ledger or --server\n";
      return kExitUsage;
    }
    filters.server = server;
    filters.token = token;
    filters.ca_file = ca_file;
    if (what == "prove") {
      char* end = nullptr;
      filters.seq = std::strtoull(filters.finding_id.c_str(), &end, 10);
      if (filters.finding_id.empty() || *end != '\0' || filters.seq == 0) {
        std::cerr << "error: audit prove needs a SEQ (a positive number)\n";
        return kExitUsage;
      }
    }
    return RunAuditOffline(what, ledger_url, filters, json);
  }
  if (*gen) return RunGenCorpus(count, seed, fraction, text_bytes, output);
  return kExitUsage;
}
}  // namespace

// Every input is checked where it is read and refused with a message; this
// is the net under that rule: anything thrown is a message and exit 1, never
// an abort with a core dump.
int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "error: unexpected failure\n";
  }
  return 1;
}
