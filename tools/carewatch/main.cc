// carewatch: the rule author's and auditor's command line.
#include <CLI/CLI.hpp>

#include <iostream>

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
  if (*gen) return RunGenCorpus(count, seed, fraction, text_bytes, output);
  return kExitUsage;
}
