// carewatch gen-scenario: a reproducible stream of reports and the actions a
// platform takes on them, for replay tests and benchmarks.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <queue>
#include <random>
#include <set>

#include "carewatch/v1/ledger.pb.h"
#include "engine/eval/report_json.h"
#include "engine/rules/duration.h"
#include "tools/carewatch/common.h"
#include "tools/corpus/corpus.h"

namespace carewatch::cli {

int RunGenScenario(const std::vector<std::string>& rules, const ScenarioOptions& o) {
  auto evaluator = LoadEvaluator(rules, false);
  if (!evaluator) return kExitFailure;
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!o.output.empty()) {
    file.open(o.output, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << o.output << ": error: cannot write\n";
      return kExitFailure;
    }
    out = &file;
  }
  corpus::CorpusOptions copts;
  copts.seed = o.seed;
  copts.signal_fraction = o.signal_fraction;
  copts.num_services = o.services;
  copts.start_time = o.start_time;
  copts.max_gap_seconds = o.max_gap_seconds;
  copts.plants = BuildPlants(*evaluator);
  if (copts.plants.empty()) {
    std::cerr << "warning: no rule yields a signal to plant (no test expects a match and no "
                 "report built from the conditions flags); reports carry built-in signals\n";
  }
  std::set<std::string> missing;
  for (size_t start = 0; start < o.miss_service.size();) {
    size_t end = o.miss_service.find(',', start);
    if (end == std::string::npos) end = o.miss_service.size();
    if (end > start) missing.insert(o.miss_service.substr(start, end - start));
    start = end + 1;
  }
  corpus::CorpusGenerator gen(copts);
  std::mt19937_64 rng(o.seed ^ 0x5eed);
  std::uniform_real_distribution<double> unit(0, 1);

  // Actions wait in a min-heap until the reports before them are written.
  using Pending = std::pair<int64_t, std::string>;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> actions;
  auto ctx = evaluator->NewContext();
  v1::ContentReport report;
  v1::Verdict verdict;
  uint64_t written = 0;
  // An action claimed at `t` and, when `recorded` is later, recorded then.
  auto action_line = [](const v1::ContentReport& r, const std::string& action, int64_t t,
                        int64_t recorded) {
    v1::ReplayEvent e;
    v1::RecordActionRequest& a = *e.mutable_action();
    a.set_service_id(r.service_id());
    a.set_report_id(r.report_id());
    a.set_action(action);
    a.mutable_taken_at()->set_seconds(t);
    a.set_actor("moderator-" + std::to_string(t % 17));
    if (recorded > t) e.mutable_recorded_at()->set_seconds(recorded);
    return eval::ToJson(e);
  };
  // Reports stop once the lines written and the actions still owed reach
  // the target; every owed action is then written, so no deadline is missed
  // for want of lines.
  uint64_t reports = 0;
  while (o.lines ? written + actions.size() < o.lines : reports < o.reports) {
    ++reports;
    gen.Next(&report);
    int64_t t = report.received_at().seconds();
    while (!actions.empty() && actions.top().first <= t) {
      *out << actions.top().second << "\n";
      actions.pop();
      ++written;
    }
    bool evaluated = evaluator->Evaluate(report, *ctx, &verdict).ok();
    // One line per action the report needs, timed for the tightest deadline.
    std::map<std::string, int64_t> window_of;
    for (const v1::Obligation& ob : verdict.obligations()) {
      if (!evaluated) break;
      int64_t window = ob.deadline().seconds() - t;
      for (const std::string& a : ob.required_actions()) {
        auto it = window_of.find(a);
        if (it == window_of.end() || window < it->second) window_of[a] = window;
      }
    }
    bool miss = !window_of.empty() && missing.count(report.service_id()) && unit(rng) < o.miss_rate;
    // Of the missing service's reports: half are never acted on; a quarter
    // get actions claimed after the deadline (late); a quarter reach
    // carewatch long after the deadline, report and actions together, the
    // actions claiming times inside it (late_recorded).
    double fate = unit(rng);
    bool backfilled = miss && fate >= 0.75;
    int64_t longest = 0;
    for (const auto& [a, window] : window_of) longest = std::max(longest, window);
    int64_t report_recorded = backfilled ? t + longest + 3 * 3600 : t;
    if (backfilled) {
      v1::ReplayEvent e;
      *e.mutable_report() = report;
      e.mutable_recorded_at()->set_seconds(report_recorded);
      actions.emplace(report_recorded, eval::ToJson(e));
    } else {
      *out << "{\"report\":" << eval::ToJson(report) << "}\n";
      ++written;
    }
    if (miss && fate < 0.5) continue;  // never acted on
    int k = 0;
    for (const auto& [a, window] : window_of) {
      int64_t on_time =
          std::max<int64_t>(1, static_cast<int64_t>(window * (0.05 + 0.75 * unit(rng))));
      // Late, but within the shipped duties' record_grace (1h), so the
      // sweeper has not breached it as missed first.
      int64_t late = window + 60 + static_cast<int64_t>(unit(rng) * 3000);
      int64_t claimed = t + (miss && !backfilled ? late : on_time);
      int64_t recorded = backfilled ? report_recorded + 60 * ++k : claimed;
      actions.emplace(recorded, action_line(report, a, claimed, recorded));
    }
  }
  while (!actions.empty()) {
    *out << actions.top().second << "\n";
    actions.pop();
    ++written;
  }
  out->flush();
  return *out ? kExitOk : kExitFailure;
}

void RegisterScenarioCommands(CommandTable& table) {
  struct Options {
    std::vector<std::string> rules;
    ScenarioOptions scenario;
    std::string start;
  };
  auto o = std::make_shared<Options>();
  ScenarioOptions& s = o->scenario;
  CLI::App* cmd = table.Add(
      "gen-scenario",
      "Write reports and the platform's actions on them (replay input), reproducibly", [o] {
        if (!o->start.empty()) {
          auto t = rules::ParseDateTime(o->start);
          if (!t) {
            std::cerr << "error: --start: bad time '" << o->start << "'\n";
            return kExitUsage;
          }
          o->scenario.start_time = *t;
        }
        return RunGenScenario(o->rules, o->scenario);
      });
  AddRulesOption(cmd, &o->rules);
  auto* n = cmd->add_option("-n,--reports", s.reports,
                            "Number of reports (each followed by the actions it gets)");
  cmd->add_option("--lines", s.lines, "Instead of -n: about this many lines, reports and actions")
      ->excludes(n);
  cmd->add_option("--seed", s.seed, "Random seed");
  cmd->add_option("--signal-fraction", s.signal_fraction,
                  "Share of reports carrying a signal of one of the rules")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--services", s.services, "Number of services (example-social, ...)")
      ->check(CLI::Range(1, 8));
  cmd->add_option("--miss-service", s.miss_service,
                  "The services that miss deadlines (comma-separated)");
  cmd->add_option("--report-gap", s.max_gap_seconds,
                  "Largest gap between consecutive reports, seconds (uniform from 1)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--miss-rate", s.miss_rate, "Share of its obligations missed or late")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--start", o->start, "Time of the first report (default 2026-01-05T10:00:00Z)");
  cmd->add_option("-o,--output", s.output, "Output file (default stdout)");
}

}  // namespace carewatch::cli
