// carewatch: the rule author's and auditor's command line.
#include <CLI/CLI.hpp>

#include <iostream>

#include "engine/rules/duration.h"
#include "tools/carewatch/common.h"

int main(int argc, char** argv) {
  using namespace carewatch::cli;
  CLI::App app{"carewatch: duty-of-care rules, evaluation and evidence"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "carewatch 0.1.0");

  std::vector<std::string> paths;
  bool werror = false;
  auto* lint = app.add_subcommand("lint", "Check rule packs; prints file:line:col diagnostics");
  lint->add_option("paths", paths, "Pack files or directories")->required();
  lint->add_flag("--warnings-as-errors", werror, "Exit 1 on warnings too");

  auto* test = app.add_subcommand("test", "Run the rules' embedded tests");
  test->add_option("paths", paths, "Pack files or directories")->required();

  std::vector<std::string> rules;
  std::string input, output;
  int threads = 2;
  bool no_progress = false;
  auto* scan = app.add_subcommand("scan", "Evaluate JSONL reports; writes JSONL verdicts");
  scan->add_option("--rules", rules, "Rule directory or pack (repeatable)")->required();
  scan->add_option("input", input, "Reports, one JSON ContentReport a line ('-' for stdin)")->required();
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
  auto* replay = app.add_subcommand("replay", "Run reports and actions through the whole duty pipeline");
  replay->add_option("--rules", rules, "Rule directory or pack (repeatable)")->required();
  replay->add_option("events", input, "JSONL lines {\"report\":{..}} or {\"action\":{..}}, in time order")
      ->required();
  replay->add_option("--ledger", ledger_url, "Record into this ledger (sqlite:///path/ledger.db)");
  replay->add_option("--until", until, "End the simulated clock here (default: after the last deadline)");
  replay->add_option("--sweep-interval", sweep, "Deadline sweeper period in simulated time");
  replay->add_flag("--json", json, "Print {\"breaches\":[..],\"findings\":[..]}");

  auto* verify = app.add_subcommand("verify", "Check a ledger independently; names the first bad seq");
  verify->add_option("--ledger", ledger_url, "Ledger URL or file")->required();
  verify->add_option("--pubkey", pubkey, "The deployment's published Ed25519 public key (PEM)");

  carewatch::cli::AuditFilters filters;
  std::string what;
  auto* audit = app.add_subcommand("audit", "Regulator queries: breaches | findings | evidence ID | stats");
  audit->add_option("query", what, "breaches, findings, evidence or stats")->required()
      ->check(CLI::IsMember({"breaches", "findings", "evidence", "stats"}));
  audit->add_option("finding_id", filters.finding_id, "For evidence: the finding");
  audit->add_option("--ledger", ledger_url, "Ledger URL or file")->required();
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
      "gen-scenario", "Write reports and the platform's actions on them (replay input), reproducibly");
  gen_scenario->add_option("--rules", rules, "Rules that decide what the platform must act on")->required();
  gen_scenario->add_option("-n,--events", scenario.events, "Number of lines (reports and actions)");
  gen_scenario->add_option("--seed", scenario.seed, "Random seed");
  gen_scenario->add_option("--signal-fraction", scenario.signal_fraction, "Share of reports with a signal")
      ->check(CLI::Range(0.0, 1.0));
  gen_scenario->add_option("--services", scenario.services, "Number of services (example-social, ...)")
      ->check(CLI::Range(1, 8));
  gen_scenario->add_option("--miss-service", scenario.miss_service, "The service that misses deadlines");
  gen_scenario->add_option("--miss-rate", scenario.miss_rate, "Share of its obligations missed or late")
      ->check(CLI::Range(0.0, 1.0));
  gen_scenario->add_option("--start", start, "Time of the first report (default 2026-01-05T10:00:00Z)");
  gen_scenario->add_option("-o,--output", scenario.output, "Output file (default stdout)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (*lint) return RunLint(paths, werror);
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
  if (*verify) return RunVerify(ledger_url, pubkey);
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
  if (*audit) return RunAuditOffline(what, ledger_url, filters, json);
  if (*gen) return RunGenCorpus(count, seed, fraction, text_bytes, output);
  return kExitUsage;
}
