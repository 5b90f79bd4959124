#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
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
  Status s = eval::Evaluator::Create(loaded.ruleset, {}, &evaluator);
  if (!s.ok()) {
    std::cerr << "error: cannot compile rules: " << s.message() << "\n";
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
    // The loader checked each pattern alone; compile them together too.
    std::unique_ptr<eval::Evaluator> evaluator;
    Status s = eval::Evaluator::Create(loaded.ruleset, {}, &evaluator);
    if (!s.ok()) {
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

int RunDiff(const std::string& old_rules, const std::string& new_rules, const std::string& input,
            bool json) {
  auto old_eval = LoadEvaluator({old_rules}, false);
  auto new_eval = LoadEvaluator({new_rules}, false);
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

int RunGenCorpus(uint64_t count, uint64_t seed, double signal_fraction, size_t text_bytes,
                 const std::string& output) {
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
  corpus::CorpusOptions options;
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
