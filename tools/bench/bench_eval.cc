// Throughput of the rule evaluation path, side by side in one run:
//   (a) bare hs_scan of the same bytes with the same compiled databases
//       (the limit: what Hyperscan alone costs);
//   (b) the carewatch Evaluator (scan, folding, conditions, spans, verdict);
//   (c) the same rules through the same Evaluator with RE2::Set per field
//       (what one might build without Hyperscan);
//   (d) the Evaluator with the shipped packs plus 2,000 generated rules.
// Usage: carewatch_bench [--reports N] [--rules DIR] [--generated N]
#include <hs/hs.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/match/normalize.h"
#include "engine/rules/loader.h"
#include "tools/corpus/corpus.h"

namespace {

using namespace carewatch;
using Clock = std::chrono::steady_clock;

struct Result {
  double seconds = 0;
  uint64_t flagged = 0;
};

std::unique_ptr<eval::Evaluator> MakeEvaluator(std::shared_ptr<const rules::RuleSet> set,
                                               bool re2) {
  eval::EvaluatorOptions options;
  options.use_re2_set = re2;
  std::unique_ptr<eval::Evaluator> e;
  Status s = eval::Evaluator::Create(std::move(set), options, &e);
  if (!s.ok()) {
    std::fprintf(stderr, "compile failed: %s\n", s.message().c_str());
    std::exit(1);
  }
  return e;
}

void RunEvaluator(const eval::Evaluator& e, eval::Evaluator::Context& ctx,
                  const v1::ContentReport* begin, const v1::ContentReport* end, Result* r) {
  v1::Verdict verdict;
  auto start = Clock::now();
  for (const v1::ContentReport* report = begin; report != end; ++report) {
    if (!e.Evaluate(*report, ctx, &verdict).ok()) std::abort();
    r->flagged += verdict.flags_size() > 0;
  }
  r->seconds += std::chrono::duration<double>(Clock::now() - start).count();
}

// Bare hs_scan over exactly the bytes the Evaluator scans: every text field
// into its raw database, and the folded copy (prepared beforehand, outside
// the timing) into the folded one.
Result RunBareScan(const match::Matcher& m, const std::vector<v1::ContentReport>& reports) {
  struct Job {
    const hs_database_t* db;
    std::string data;
  };
  std::vector<Job> jobs;
  for (const auto& r : reports) {
    auto add = [&](int field, const std::string& value) {
      if (value.empty()) return;
      for (int folded = 0; folded < 2; ++folded) {
        const hs_database_t* db =
            m.database(match::DatabaseSlot(static_cast<rules::Field>(field), folded));
        if (!db) continue;
        jobs.push_back({db, folded ? match::FoldForMatching(value) : value});
      }
    };
    for (rules::Field f : rules::kSingleTextFields)
      add(static_cast<int>(f), *eval::SingleValue(r, f));
    for (const auto& u : r.urls()) add(static_cast<int>(rules::Field::kUrl), u);
  }
  hs_scratch_t* scratch = nullptr;
  for (int slot = 0; slot < match::kNumDatabaseSlots; ++slot) {
    if (m.database(slot)) hs_alloc_scratch(m.database(slot), &scratch);
  }
  Result r;
  uint64_t hits = 0;
  auto on_match = [](unsigned, unsigned long long, unsigned long long, unsigned, void* c) {
    ++*static_cast<uint64_t*>(c);
    return 0;
  };
  auto start = Clock::now();
  for (const Job& j : jobs) {
    hs_scan(j.db, j.data.data(), static_cast<unsigned>(j.data.size()), 0, scratch, on_match, &hits);
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.flagged = hits;
  hs_free_scratch(scratch);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 200000;
  std::string rules_dir = CAREWATCH_SOURCE_DIR "/rules";
  int generated = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reports"))
      n = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rules"))
      rules_dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--generated"))
      generated = std::stoi(argv[i + 1]);
  }

  corpus::CorpusOptions options;
  options.seed = 2026;
  options.signal_fraction = 0.05;
  options.text_bytes = 300;
  corpus::CorpusGenerator gen(options);
  std::vector<v1::ContentReport> reports(n);
  uint64_t bytes = 0;
  for (auto& r : reports) {
    gen.Next(&r);
    bytes += r.text().size() + r.caption().size() + r.username().size() + r.display_name().size() +
             r.profile_bio().size();
    for (const auto& u : r.urls()) bytes += u.size();
  }

  rules::LoadResult shipped = rules::LoadRuleSet({rules_dir});
  if (!shipped.ruleset) {
    std::fprintf(stderr, "cannot load %s\n", rules_dir.c_str());
    return 1;
  }
  std::vector<rules::SourceFile> files;
  std::string error;
  for (const auto& pack : shipped.ruleset->packs()) {
    files.push_back({pack.file, *rules::ReadFileToString(pack.file, &error)});
  }
  files.push_back({"generated.yaml", corpus::GenerateRulePack(generated, 7)});
  rules::LoadResult scaled = rules::LoadRuleSetFromSources(files, rules::ReadFileToString);
  if (!scaled.ruleset) {
    std::fprintf(stderr, "generated pack did not load\n");
    return 1;
  }

  auto hs_eval = MakeEvaluator(shipped.ruleset, false);
  auto re2_eval = MakeEvaluator(shipped.ruleset, true);
  auto big_eval = MakeEvaluator(scaled.ruleset, false);
  auto big_re2_eval = MakeEvaluator(scaled.ruleset, true);

  std::printf("corpus: %zu reports, %.1f MB of text fields (seed %llu, signal fraction %.2f)\n", n,
              bytes / 1e6, static_cast<unsigned long long>(options.seed), options.signal_fraction);
  std::printf("rules: shipped %zu rules; scaled %zu rules\n\n", shipped.ruleset->rules().size(),
              scaled.ruleset->rules().size());

  // The variants run interleaved over twenty slices of the corpus, so drift
  // in the machine's speed (shared cores) falls on all of them alike.
  Result a = RunBareScan(hs_eval->matcher(), reports);
  Result a2 = RunBareScan(big_eval->matcher(), reports);
  Result b, c, d, e;
  struct Variant {
    const eval::Evaluator* evaluator;
    Result* result;
    std::unique_ptr<eval::Evaluator::Context> ctx;
  };
  Variant variants[] = {{hs_eval.get(), &b, hs_eval->NewContext()},
                        {re2_eval.get(), &c, re2_eval->NewContext()},
                        {big_eval.get(), &d, big_eval->NewContext()},
                        {big_re2_eval.get(), &e, big_re2_eval->NewContext()}};
  for (auto& v : variants) {  // warm up
    Result ignored;
    RunEvaluator(*v.evaluator, *v.ctx, reports.data(), reports.data() + std::min<size_t>(n, 1000),
                 &ignored);
  }
  constexpr size_t kSlices = 20;
  for (size_t slice = 0; slice < kSlices; ++slice) {
    const v1::ContentReport* begin = reports.data() + n * slice / kSlices;
    const v1::ContentReport* end = reports.data() + n * (slice + 1) / kSlices;
    for (auto& v : variants) RunEvaluator(*v.evaluator, *v.ctx, begin, end, v.result);
  }
  if (b.flagged != c.flagged) {
    std::fprintf(stderr, "Hyperscan and RE2::Set disagree: %llu vs %llu flagged\n",
                 static_cast<unsigned long long>(b.flagged),
                 static_cast<unsigned long long>(c.flagged));
    return 1;
  }

  // Where the Evaluator's time goes beyond the scan: evasion folding alone.
  Result fold;
  {
    match::FoldedText folded;
    auto start = Clock::now();
    for (const auto& r : reports) {
      match::FoldForMatching(r.text(), &folded, false);
      fold.flagged += folded.text.size();
    }
    fold.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  }

  auto rate = [&](const Result& r) { return n / r.seconds; };
  std::printf("%-44s %12s %10s %10s\n", "", "reports/s", "MB/s", "flagged");
  std::printf("%-44s %12.0f %10.1f %10s\n", "(a) bare hs_scan, same bytes and databases", rate(a),
              bytes / 1e6 / a.seconds, "-");
  std::printf("%-44s %12.0f %10.1f %10s\n", "(a2) bare hs_scan, scaled rule set", rate(a2),
              bytes / 1e6 / a2.seconds, "-");
  std::printf("%-44s %12.0f %10.1f %10llu\n", "(b) Evaluator, shipped packs", rate(b),
              bytes / 1e6 / b.seconds, static_cast<unsigned long long>(b.flagged));
  std::printf("%-44s %12.0f %10.1f %10llu\n", "(c) Evaluator with RE2::Set per field", rate(c),
              bytes / 1e6 / c.seconds, static_cast<unsigned long long>(c.flagged));
  std::printf("%-44s %12.0f %10.1f %10llu\n", "(d) Evaluator, shipped + generated rules", rate(d),
              bytes / 1e6 / d.seconds, static_cast<unsigned long long>(d.flagged));
  std::printf("%-44s %12.0f %10.1f %10llu\n", "(e) RE2::Set, shipped + generated rules", rate(e),
              bytes / 1e6 / e.seconds, static_cast<unsigned long long>(e.flagged));
  std::printf("%-44s %12.0f %10.1f %10s\n", "    of which: evasion folding of text alone",
              rate(fold), bytes / 1e6 / fold.seconds, "-");
  std::printf("\nratios (targets in brackets):\n");
  std::printf("  (b)/(a) = %.2f  [>= 0.5]\n", rate(b) / rate(a));
  std::printf("  (b)/(c) = %.2f  [>= 3]\n", rate(b) / rate(c));
  std::printf("  (d)/(b) = %.2f  [>= 0.5]\n", rate(d) / rate(b));
  std::printf("  (d)/(a2) = %.2f  (Evaluator against bare scan, scaled rule set)\n",
              rate(d) / rate(a2));
  std::printf("  (d)/(e) = %.2f  (Hyperscan over RE2::Set with the scaled rule set)\n",
              rate(d) / rate(e));
  std::printf("  (b)/(a+fold) = %.2f  (Evaluator against bare scan plus the folding it must do)\n",
              rate(b) / (1.0 / (1.0 / rate(a) + 1.0 / rate(fold))));
  return 0;
}
