#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "engine/duty/rule_tests.h"
#include "engine/eval/explain.h"
#include "engine/eval/report_json.h"
#include "tools/carewatch/common.h"
#include "tools/corpus/corpus.h"

namespace carewatch::cli {

std::unique_ptr<eval::Evaluator> LoadEvaluator(const std::vector<std::string>& paths,
                                               bool show_warnings) {
  rules::LoadResult loaded = rules::LoadRuleSet(paths);
  for (const rules::Diagnostic& d : loaded.diagnostics) {
    if (show_warnings || d.level == rules::Diagnostic::Level::kError) {
      std::cerr << d.ToString() << "\n";
    }
  }
  if (!loaded.ruleset) return nullptr;
  std::unique_ptr<eval::Evaluator> evaluator;
  std::vector<rules::Diagnostic> refused;
  Status s = eval::Evaluator::Create(loaded.ruleset, {}, &evaluator, &refused);
  for (const rules::Diagnostic& d : refused) std::cerr << d.ToString() << "\n";
  if (!s.ok()) {
    if (refused.empty()) std::cerr << "error: cannot compile rules: " << s.message() << "\n";
    return nullptr;
  }
  return evaluator;
}

int RunLint(const std::vector<std::string>& paths, bool warnings_as_errors, bool lists_anywhere) {
  rules::LoadOptions options;
  options.lists_anywhere = lists_anywhere;
  rules::LoadResult loaded = rules::LoadRuleSet(paths, options);
  int errors = 0, warnings = 0;
  for (const rules::Diagnostic& d : loaded.diagnostics) {
    std::cout << d.ToString() << "\n";
    (d.level == rules::Diagnostic::Level::kError ? errors : warnings)++;
  }
  if (loaded.ruleset) {
    // The loader checked each pattern alone; build the databases too, as
    // carewatchd does: Hyperscan refuses some patterns only then (too
    // large), and each is named where it is written.
    std::unique_ptr<eval::Evaluator> evaluator;
    std::vector<rules::Diagnostic> refused;
    Status s = eval::Evaluator::Create(loaded.ruleset, {}, &evaluator, &refused);
    for (const rules::Diagnostic& d : refused) std::cout << d.ToString() << "\n";
    errors += static_cast<int>(refused.size());
    if (!s.ok() && refused.empty()) {
      std::cout << "error: " << s.message() << "\n";
      ++errors;
    }
  }
  std::cerr << errors << " error(s), " << warnings << " warning(s)";
  if (loaded.ruleset && errors == 0) {
    std::cerr << "; " << loaded.ruleset->rules().size() << " rules, "
              << loaded.ruleset->duties().size() << " duties, version "
              << loaded.ruleset->version();
  }
  std::cerr << "\n";
  return errors > 0 || (warnings_as_errors && warnings > 0) ? kExitFailure : kExitOk;
}

int RunTest(const std::vector<std::string>& paths) {
  auto evaluator = LoadEvaluator(paths, false);
  if (!evaluator) {
    std::cout << "0 passed, 0 failed\n";
    std::cerr << "rules did not load; no test ran\n";
    return kExitFailure;
  }
  duty::RuleTestSummary summary = duty::RunRuleTests(*evaluator);
  for (const duty::RuleTestFailure& f : summary.failures)
    std::cout << "FAIL " << f.ToString() << "\n";
  std::cout << summary.passed << " passed, " << summary.failed << " failed\n";
  return summary.failed > 0 ? kExitFailure : kExitOk;
}

namespace {

class LineReader {
 public:
  explicit LineReader(const std::string& path) {
    if (path == "-") {
      in_ = &std::cin;
    } else {
      file_.open(path, std::ios::binary);
      in_ = &file_;
      std::ifstream probe(path, std::ios::binary | std::ios::ate);
      if (probe) size_ = static_cast<uint64_t>(probe.tellg());
    }
  }
  bool ok() const { return in_ && !in_->fail(); }
  bool Next(std::string* line) {
    if (!std::getline(*in_, *line)) return false;
    bytes_ += line->size() + 1;
    return true;
  }
  uint64_t bytes() const { return bytes_; }
  uint64_t size() const { return size_; }

 private:
  std::ifstream file_;
  std::istream* in_ = nullptr;
  uint64_t bytes_ = 0;
  uint64_t size_ = 0;
};

bool IsBlank(const std::string& s) { return s.find_first_not_of(" \t\r") == std::string::npos; }

class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO)) {}
  void Update(uint64_t reports, uint64_t bytes, uint64_t total, bool force = false) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? reports / secs : 0;
    int pct = total ? static_cast<int>(100.0 * bytes / total) : 0;
    int filled = pct / 4;
    std::fprintf(stderr, "\r[%-25s] %3d%%  %llu reports  %.0f/s", std::string(filled, '#').c_str(),
                 pct, static_cast<unsigned long long>(reports), rate);
    std::fflush(stderr);
  }
  void Done() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace

int RunScan(const std::vector<std::string>& rules, const std::string& input,
            const std::string& output, int threads, bool progress_wanted) {
  auto evaluator = LoadEvaluator(rules, false);
  if (!evaluator) return kExitFailure;
  LineReader reader(input);
  if (!reader.ok()) {
    std::cerr << input << ": error: cannot open\n";
    return kExitFailure;
  }
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!output.empty()) {
    file.open(output, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << output << ": error: cannot write\n";
      return kExitFailure;
    }
    out = &file;
  }
  std::vector<std::unique_ptr<eval::Evaluator::Context>> contexts;
  for (int i = 0; i < threads; ++i) contexts.push_back(evaluator->NewContext());

  constexpr size_t kBatch = 1024;
  std::vector<std::string> lines(kBatch), results(kBatch), errors(kBatch);
  std::vector<std::vector<std::string>> flagged_rules(kBatch);
  std::vector<uint64_t> line_numbers(kBatch);
  uint64_t lineno = 0, reports = 0, bad = 0, flagged = 0;
  std::map<std::string, uint64_t> per_rule;
  Progress progress(progress_wanted);

  for (;;) {
    size_t n = 0;
    while (n < kBatch && reader.Next(&lines[n])) {
      ++lineno;
      if (IsBlank(lines[n])) continue;
      line_numbers[n++] = lineno;
    }
    if (n == 0) break;
    auto work = [&](int t) {
      v1::ContentReport report;
      v1::Verdict verdict;
      for (size_t i = t; i < n; i += threads) {
        results[i].clear();
        errors[i].clear();
        flagged_rules[i].clear();
        Status s = eval::ParseReportJson(lines[i], &report);
        if (s.ok()) s = evaluator->Evaluate(report, *contexts[t], &verdict);
        if (!s.ok()) {
          errors[i] = s.message();
          continue;
        }
        results[i] = eval::ToJson(verdict);
        for (const v1::Flag& f : verdict.flags()) flagged_rules[i].push_back(f.rule_id());
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    for (size_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) {
        ++bad;
        std::cerr << (input == "-" ? "<stdin>" : input) << ":" << line_numbers[i]
                  << ": error: " << errors[i] << " (line skipped)\n";
        continue;
      }
      ++reports;
      if (!flagged_rules[i].empty()) ++flagged;
      for (const std::string& r : flagged_rules[i]) ++per_rule[r];
      *out << results[i] << "\n";
    }
    progress.Update(reports, reader.bytes(), reader.size());
  }
  progress.Update(reports, reader.bytes(), reader.size(), true);
  progress.Done();
  out->flush();
  if (!*out) {
    std::cerr << "error: writing verdicts failed\n";
    return kExitFailure;
  }
  std::cerr << reports << " reports, " << flagged << " flagged, " << bad
            << " skipped (bad lines)\n";
  for (const auto& [rule, n] : per_rule) std::cerr << "  " << rule << ": " << n << "\n";
  return bad > 0 ? kExitSkipped : kExitOk;
}

int RunExplain(const std::vector<std::string>& rules, const std::string& report_file) {
  auto evaluator = LoadEvaluator(rules, false);
  if (!evaluator) return kExitFailure;
  std::string error;
  auto content = rules::ReadFileToString(report_file, &error);
  if (!content) {
    std::cerr << report_file << ": error: " << error << "\n";
    return kExitFailure;
  }
  v1::ContentReport report;
  Status s = eval::ParseReportJson(*content, &report);
  if (!s.ok()) {
    std::cerr << report_file << ": error: " << s.message() << "\n";
    return kExitFailure;
  }
  auto ctx = evaluator->NewContext();
  std::vector<eval::RuleTrace> traces;
  s = evaluator->Explain(report, *ctx, &traces);
  if (!s.ok()) {
    std::cerr << report_file << ": error: " << s.message() << "\n";
    return kExitFailure;
  }
  std::cout << "report " << report.report_id() << " under rule set "
            << evaluator->ruleset().version() << "\n";
  std::cout << eval::FormatExplanation(report, traces);
  return kExitOk;
}

namespace {

// "pack NAME", "accountability", or "" when the file does not say (the
// loader reports why when it reads it).
std::string PackKey(const std::string& file) {
  try {
    YAML::Node root = YAML::LoadFile(file);
    if (root.IsMap() && root["accountability"]) return "accountability";
    if (root.IsMap() && root["pack"] && root["pack"].IsScalar())
      return "pack " + root["pack"].Scalar();
  } catch (const std::exception&) {
  }
  return "";
}

}  // namespace

std::vector<std::string> OverlayRules(const std::string& base, const std::string& candidate) {
  std::vector<std::string> files = rules::PackFiles(candidate);
  std::set<std::string> replaced;
  for (const std::string& f : files) replaced.insert(PackKey(f));
  for (const std::string& f : rules::PackFiles(base)) {
    std::string key = PackKey(f);
    if (key.empty() || !replaced.count(key)) files.push_back(f);
  }
  return files;
}

int RunDiff(const std::string& old_rules, const std::string& new_rules, const std::string& input,
            bool json) {
  auto old_eval = LoadEvaluator({old_rules}, false);
  std::vector<std::string> new_files = OverlayRules(old_rules, new_rules);
  auto new_eval = LoadEvaluator(new_files, false);
  if (!json) {
    std::cerr << "new rule set:";
    for (const std::string& f : new_files) std::cerr << " " << f;
    std::cerr << "\n";
  }
  if (!old_eval || !new_eval) return kExitFailure;
  LineReader reader(input);
  if (!reader.ok()) {
    std::cerr << input << ": error: cannot open\n";
    return kExitFailure;
  }
  auto old_ctx = old_eval->NewContext();
  auto new_ctx = new_eval->NewContext();
  std::string line;
  uint64_t lineno = 0, reports = 0, changed = 0, bad = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> per_rule;  // gained, lost
  v1::ContentReport report;
  v1::Verdict a, b;
  while (reader.Next(&line)) {
    ++lineno;
    if (IsBlank(line)) continue;
    Status s = eval::ParseReportJson(line, &report);
    if (s.ok()) s = old_eval->Evaluate(report, *old_ctx, &a);
    if (s.ok()) s = new_eval->Evaluate(report, *new_ctx, &b);
    if (!s.ok()) {
      ++bad;
      std::cerr << input << ":" << lineno << ": error: " << s.message() << " (line skipped)\n";
      continue;
    }
    ++reports;
    std::map<std::string, int> flags;  // 1 old only, 2 new only, 3 both
    for (const auto& f : a.flags()) flags[f.rule_id()] |= 1;
    for (const auto& f : b.flags()) flags[f.rule_id()] |= 2;
    std::vector<std::string> gained, lost;
    for (const auto& [rule, where] : flags) {
      if (where == 2) gained.push_back(rule);
      if (where == 1) lost.push_back(rule);
    }
    if (gained.empty() && lost.empty()) continue;
    ++changed;
    for (const auto& r : gained) ++per_rule[r].first;
    for (const auto& r : lost) ++per_rule[r].second;
    if (json) {
      std::string j = "{\"line\":" + std::to_string(lineno) + ",\"report_id\":\"" +
                      report.report_id() + "\",\"gained\":[";
      for (size_t i = 0; i < gained.size(); ++i) j += (i ? ",\"" : "\"") + gained[i] + "\"";
      j += "],\"lost\":[";
      for (size_t i = 0; i < lost.size(); ++i) j += (i ? ",\"" : "\"") + lost[i] + "\"";
      std::cout << j << "]}\n";
    } else {
      std::cout << input << ":" << lineno << " " << report.report_id() << ":";
      for (const auto& r : gained) std::cout << " +" << r;
      for (const auto& r : lost) std::cout << " -" << r;
      std::cout << "\n";
    }
  }
  if (json) {
    std::cout << "{\"summary\":{\"reports\":" << reports << ",\"changed\":" << changed
              << ",\"skipped\":" << bad << ",\"old_version\":\"" << old_eval->ruleset().version()
              << "\",\"new_version\":\"" << new_eval->ruleset().version() << "\",\"rules\":{";
    bool first = true;
    for (const auto& [rule, gl] : per_rule) {
      std::cout << (first ? "" : ",") << "\"" << rule << "\":{\"gained\":" << gl.first
                << ",\"lost\":" << gl.second << "}";
      first = false;
    }
    std::cout << "}}}\n";
  } else {
    std::cout << reports << " reports, " << changed << " changed (" << old_eval->ruleset().version()
              << " -> " << new_eval->ruleset().version() << "), " << bad << " skipped\n";
    for (const auto& [rule, gl] : per_rule) {
      std::cout << "  " << rule << ": +" << gl.first << " -" << gl.second << "\n";
    }
  }
  return bad > 0 ? kExitSkipped : kExitOk;
}

int RunGenCorpus(const std::vector<std::string>& rules, uint64_t count, uint64_t seed,
                 double signal_fraction, size_t text_bytes, const std::string& output) {
  corpus::CorpusOptions options;
  if (!rules.empty()) {
    auto evaluator = LoadEvaluator(rules, false);
    if (!evaluator) return kExitFailure;
    options.plants = BuildPlants(*evaluator);
    if (options.plants.empty()) {
      std::cerr << "error: no rule yields a signal to plant: give rules tests that expect a "
                   "match\n";
      return kExitFailure;
    }
  }
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!output.empty()) {
    file.open(output, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << output << ": error: cannot write\n";
      return kExitFailure;
    }
    out = &file;
  }
  options.seed = seed;
  options.signal_fraction = signal_fraction;
  options.text_bytes = text_bytes;
  corpus::CorpusGenerator gen(options);
  v1::ContentReport report;
  for (uint64_t i = 0; i < count; ++i) {
    gen.Next(&report);
    *out << eval::ToJson(report) << "\n";
  }
  out->flush();
  return *out ? kExitOk : kExitFailure;
}

}  // namespace carewatch::cli

namespace carewatch::cli {

void RegisterRuleCommands(CommandTable& table) {
  // lint and test take packs as positional paths or --rules, like the rest.
  auto packs = [](CLI::App* cmd, std::vector<std::string>* paths, std::vector<std::string>* rules) {
    cmd->add_option("paths", *paths, "Pack files or directories");
    AddRulesOption(cmd, rules, false);
  };
  auto all_packs = [](std::vector<std::string> paths, const std::vector<std::string>& rules,
                      const char* command) -> std::optional<std::vector<std::string>> {
    paths.insert(paths.end(), rules.begin(), rules.end());
    if (paths.empty()) {
      std::cerr << "error: " << command << " needs packs: PATH... or --rules PATH\n";
      return std::nullopt;
    }
    return paths;
  };

  struct LintOptions {
    std::vector<std::string> paths, rules;
    bool werror = false, lists_anywhere = false;
  };
  auto lint = std::make_shared<LintOptions>();
  CLI::App* lint_cmd =
      table.Add("lint", "Check rule packs; prints every problem as file:line:col diagnostics", [=] {
        auto paths = all_packs(lint->paths, lint->rules, "lint");
        return paths ? RunLint(*paths, lint->werror, lint->lists_anywhere) : kExitUsage;
      });
  packs(lint_cmd, &lint->paths, &lint->rules);
  lint_cmd->add_flag("--warnings-as-errors", lint->werror, "Exit 1 on warnings too");
  lint_cmd->add_flag("--lists-anywhere", lint->lists_anywhere,
                     "List files may lie outside their pack's directory (as carewatchd's setting)");

  struct TestOptions {
    std::vector<std::string> paths, rules;
  };
  auto test = std::make_shared<TestOptions>();
  CLI::App* test_cmd = table.Add("test", "Run the rules' embedded tests", [=] {
    auto paths = all_packs(test->paths, test->rules, "test");
    return paths ? RunTest(*paths) : kExitUsage;
  });
  packs(test_cmd, &test->paths, &test->rules);

  struct ScanOptions {
    std::vector<std::string> rules;
    std::string input, output;
    int threads = 2;
    bool no_progress = false;
  };
  auto scan = std::make_shared<ScanOptions>();
  CLI::App* scan_cmd = table.Add("scan", "Evaluate JSONL reports; writes JSONL verdicts", [=] {
    return RunScan(scan->rules, scan->input, scan->output, scan->threads, !scan->no_progress);
  });
  AddRulesOption(scan_cmd, &scan->rules);
  scan_cmd
      ->add_option("input", scan->input, "Reports, one JSON ContentReport a line ('-' for stdin)")
      ->required();
  scan_cmd->add_option("-o,--output", scan->output, "Write verdicts here instead of stdout");
  scan_cmd->add_option("-j,--threads", scan->threads, "Worker threads")->check(CLI::Range(1, 64));
  scan_cmd->add_flag("--no-progress", scan->no_progress, "No progress bar even on a terminal");

  struct ExplainOptions {
    std::vector<std::string> rules;
    std::string report;
  };
  auto explain = std::make_shared<ExplainOptions>();
  CLI::App* explain_cmd =
      table.Add("explain", "Show how every rule judged one report (and the folded text)",
                [=] { return RunExplain(explain->rules, explain->report); });
  AddRulesOption(explain_cmd, &explain->rules);
  explain_cmd->add_option("report", explain->report, "A JSON ContentReport")->required();

  struct DiffOptions {
    std::vector<std::string> rules;
    std::string input;
    bool json = false;
  };
  auto diff = std::make_shared<DiffOptions>();
  CLI::App* diff_cmd = table.Add("diff", "What a candidate rule set changes on a corpus", [=] {
    return RunDiff(diff->rules[0], diff->rules[1], diff->input, diff->json);
  });
  diff_cmd
      ->add_option("--rules", diff->rules,
                   "--rules OLD --rules NEW: directories or pack files. NEW's packs replace "
                   "OLD's of the same name and are added to the rest of OLD")
      ->required()
      ->expected(2);
  diff_cmd->add_option("input", diff->input, "Reports, JSONL")->required();
  diff_cmd->add_flag("--json", diff->json,
                     "One JSON object per changed report, then a summary object");

  struct GenOptions {
    std::vector<std::string> rules;
    uint64_t count = 1000, seed = 1;
    double fraction = 0.05;
    size_t text_bytes = 300;
    std::string output;
  };
  auto gen = std::make_shared<GenOptions>();
  CLI::App* gen_cmd = table.Add("gen-corpus", "Write a reproducible synthetic corpus (JSONL)", [=] {
    return RunGenCorpus(gen->rules, gen->count, gen->seed, gen->fraction, gen->text_bytes,
                        gen->output);
  });
  gen_cmd->add_option("-n,--count", gen->count, "Number of reports");
  gen_cmd->add_option("--seed", gen->seed, "Random seed; the same seed gives the same corpus");
  gen_cmd->add_option("--signal-fraction", gen->fraction, "Share of reports carrying a signal")
      ->check(CLI::Range(0.0, 1.0));
  gen_cmd->add_option("--text-bytes", gen->text_bytes, "Approximate text size per report");
  gen_cmd->add_option("-o,--output", gen->output, "Output file (default stdout)");
  gen_cmd->add_option("--rules", gen->rules,
                      "Plant signals of these rules (from their tests, phrases and patterns) "
                      "instead of the built-in ones (repeatable)");
}

}  // namespace carewatch::cli
