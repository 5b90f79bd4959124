// Throughput of the rule evaluation path, side by side in one run:
//   (a) bare hs_scan of the same bytes with the same compiled databases
//       (the limit: what Hyperscan alone costs);
//   (b) the carewatch Evaluator (scan, folding, conditions, spans, verdict);
//   (c) the same rules through the same Evaluator with RE2::Set per field
//       (what one might build without Hyperscan);
//   (d) the Evaluator with the shipped packs plus 2,000 generated rules.
//   (f) the Evaluator on a rule set the size of real ones (5,000 phrase
//       rules, 300 regex rules, a URL and a hash list of 1,000,000 entries;
//       5% of reports flagged), beside (a3) its bare scan and (g) RE2::Set;
//       its compile, cached restart, list lookups and list memory.
// Usage: carewatch_bench [--reports N] [--rules DIR] [--generated N] [--realistic N (0: skip)]
//                        [--profile b|b0|f] (only that Evaluator, ten passes: for perf record)
#include <hs/hs.h>
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/eval/evaluator.h"
#include "engine/match/lists.h"
#include "engine/match/normalize.h"
#include "engine/rules/loader.h"
#include "tools/bench/bench_args.h"
#include "tools/corpus/corpus.h"

namespace {

using namespace carewatch;
using Clock = std::chrono::steady_clock;

struct Result {
  double seconds = 0;
  uint64_t flagged = 0;
};

std::unique_ptr<eval::Evaluator> MakeEvaluator(std::shared_ptr<const rules::RuleSet> set, bool re2,
                                               bool gate = true) {
  eval::EvaluatorOptions options;
  options.use_re2_set = re2;
  options.gate_scans = gate;
  std::unique_ptr<eval::Evaluator> e;
  Status s = eval::Evaluator::Create(std::move(set), options, &e);
  if (!s.ok()) {
    std::fprintf(stderr, "compile failed: %s\n", s.message().c_str());
    std::exit(1);
  }
  return e;
}

// Reads every cache line of the fields the Evaluator reads, untimed, so
// that every row measures a slice already in cache (as in carewatchd, where
// a report was parsed just before it is evaluated) and none pays for
// bringing it in for the rows after it.
// One byte of each cache line of `s` (its bytes need not start a line: the
// last byte is read too, as its line may be one the steps skip).
uint64_t TouchBytes(const std::string& s) {
  uint64_t sum = 0;
  for (size_t i = 0; i < s.size(); i += 64) sum += static_cast<unsigned char>(s[i]);
  if (!s.empty()) sum += static_cast<unsigned char>(s.back());
  return sum;
}

uint64_t TouchReports(const v1::ContentReport* begin, const v1::ContentReport* end) {
  uint64_t sum = 0;
  auto touch = [&](const std::string& s) { sum += TouchBytes(s); };
  for (const v1::ContentReport* r = begin; r != end; ++r) {
    // The report itself (its fields' pointers), its identity and its time,
    // which the verdict and the obligation ids are made of.
    const auto* object = reinterpret_cast<const unsigned char*>(r);
    for (size_t i = 0; i < sizeof *r; i += 64) sum += object[i];
    touch(r->report_id());
    touch(r->service_id());
    sum += static_cast<uint64_t>(r->received_at().seconds());
    for (rules::Field f : rules::kSingleTextFields) touch(*eval::SingleValue(*r, f));
    for (const auto& u : r->urls()) touch(u);
    for (const auto& h : r->hashes()) touch(h.value());
  }
  return sum;
}

// Slices of this many reports (a few hundred KB: they fit the L2 cache).
constexpr size_t kSliceReports = 256;

// Where the untimed reads add up, so that the compiler keeps them.
volatile uint64_t g_touched = 0;

void RunEvaluator(const eval::Evaluator& e, eval::Evaluator::Context& ctx,
                  const v1::ContentReport* begin, const v1::ContentReport* end, Result* r) {
  v1::Verdict verdict;
  g_touched = g_touched + TouchReports(begin, end);
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
class BareScan {
 public:
  BareScan(const match::Matcher& m, const std::vector<v1::ContentReport>& reports) {
    for (const auto& r : reports) {
      first_job_.push_back(jobs_.size());
      auto add = [&](int field, const std::string& value) {
        if (value.empty()) return;
        for (int folded = 0; folded < 2; ++folded) {
          const hs_database_t* db =
              m.database(match::DatabaseSlot(static_cast<rules::Field>(field), folded));
          if (!db) continue;
          jobs_.push_back({db, folded ? match::FoldForMatching(value) : value});
        }
      };
      for (rules::Field f : rules::kSingleTextFields)
        add(static_cast<int>(f), *eval::SingleValue(r, f));
      for (const auto& u : r.urls()) add(static_cast<int>(rules::Field::kUrl), u);
    }
    first_job_.push_back(jobs_.size());
    for (int slot = 0; slot < match::kNumDatabaseSlots; ++slot) {
      if (m.database(slot)) hs_alloc_scratch(m.database(slot), &scratch_);
    }
  }
  ~BareScan() { hs_free_scratch(scratch_); }

  // Scans the jobs of reports [begin, end): first untimed, to bring them
  // into cache as the Evaluator rows find theirs, then timed.
  void Run(size_t begin, size_t end, Result* r) {
    auto on_match = [](unsigned, unsigned long long, unsigned long long, unsigned, void* c) {
      ++*static_cast<uint64_t*>(c);
      return 0;
    };
    uint64_t hits = 0;
    for (size_t j = first_job_[begin]; j < first_job_[end]; ++j)
      g_touched = g_touched + TouchBytes(jobs_[j].data);
    auto start = Clock::now();
    for (size_t j = first_job_[begin]; j < first_job_[end]; ++j) {
      const Job& job = jobs_[j];
      hs_scan(job.db, job.data.data(), static_cast<unsigned>(job.data.size()), 0, scratch_,
              on_match, &hits);
    }
    r->seconds += std::chrono::duration<double>(Clock::now() - start).count();
    r->flagged += hits;
  }

 private:
  struct Job {
    const hs_database_t* db;
    std::string data;
  };
  std::vector<Job> jobs_;
  std::vector<size_t> first_job_;  // per report, and one past the last
  hs_scratch_t* scratch_ = nullptr;
};

// Resident memory now, in bytes.
size_t RssBytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// --profile: the row to run alone ("b" or "f"), ten passes over the corpus.
std::string g_profile;

// Runs one Evaluator alone over the corpus ten times and prints its rate.
void Profile(const eval::Evaluator& e, const std::vector<v1::ContentReport>& reports) {
  auto ctx = e.NewContext();
  Result r;
  for (int pass = 0; pass < 10; ++pass) {
    for (size_t at = 0; at < reports.size(); at += kSliceReports) {
      RunEvaluator(e, *ctx, reports.data() + at,
                   reports.data() + std::min(reports.size(), at + kSliceReports), &r);
    }
  }
  std::printf("(%s) alone: %.0f reports/s, %llu flagged in ten passes\n", g_profile.c_str(),
              10.0 * reports.size() / r.seconds, static_cast<unsigned long long>(r.flagged));
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void RunRealistic(int phrase_rules, size_t n, double shipped_rate) {
  namespace fs = std::filesystem;
  corpus::RealisticOptions ro;
  ro.phrase_rules = phrase_rules;
  corpus::RealisticPack pack = corpus::GenerateRealisticPack(ro);
  fs::path dir = fs::temp_directory_path() / ("carewatch-bench-" + std::to_string(getpid()));
  fs::create_directories(dir / "lists");
  std::ofstream(dir / "pack.yaml") << pack.yaml;
  std::ofstream(dir / "lists/urls.txt") << pack.url_list;
  std::ofstream(dir / "lists/md5.txt") << pack.hash_list;
  size_t list_file_bytes = pack.url_list.size() + pack.hash_list.size();

  // List memory: a pack of the two lists alone, loaded and compiled.
  std::ofstream(dir / "lists-only.yaml")
      << "pack: lists-only\nversion: \"1\"\nduties:\n"
         "  - {id: d, deadline: 24h, actions: [remove_content]}\n"
         "lists:\n  urls: {kind: url, file: lists/urls.txt}\n"
         "  hashes: {kind: hash, file: lists/md5.txt}\nrules:\n"
         "  - {id: u, duty: d, severity: low, when: {field: url, in_list: urls}}\n"
         "  - {id: h, duty: d, severity: low, when: {field: hash, in_list: hashes}}\n";
  pack.url_list.clear();
  pack.url_list.shrink_to_fit();
  pack.hash_list.clear();
  pack.hash_list.shrink_to_fit();
  malloc_trim(0);
  size_t rss_before = RssBytes();
  auto start = Clock::now();
  double list_seconds;
  size_t list_rss, list_structures = 0;
  {
    rules::LoadResult lists = rules::LoadRuleSet({(dir / "lists-only.yaml").string()});
    auto e = MakeEvaluator(lists.ruleset, false);
    list_seconds = Seconds(start);
    malloc_trim(0);
    list_rss = RssBytes() - rss_before;
    for (const auto& l : lists.ruleset->lists()) {
      list_structures += l.entries.bytes();
      match::CompiledList compiled(l);
      list_structures += compiled.bytes();
    }
    // Lookups: half of the probes are on the list.
    std::mt19937_64 rng(5);
    const rules::ListDef& urls = lists.ruleset->lists()[0];
    const rules::ListDef& hashes = lists.ruleset->lists()[1];
    match::CompiledList url_list(urls), hash_list(hashes);
    std::vector<std::string> url_probes, hash_probes;
    for (int i = 0; i < 200000; ++i) {
      bool on = i % 2 == 0;
      url_probes.push_back("https://" +
                           (on ? std::string(urls.entries[rng() % urls.entries.size()])
                               : "h" + std::to_string(rng() % 1000) + ".other.test/p/1") +
                           "/deeper/page?x=1");
      hash_probes.push_back(on ? std::string(hashes.entries[rng() % hashes.entries.size()])
                               : std::string(32, "0123456789abcdef"[i % 16]));
    }
    size_t found = 0;
    auto t = Clock::now();
    for (const auto& u : url_probes) found += url_list.Contains(u);
    double url_ns = Seconds(t) * 1e9 / url_probes.size();
    t = Clock::now();
    for (const auto& h : hash_probes) found += hash_list.Contains(h);
    double hash_ns = Seconds(t) * 1e9 / hash_probes.size();
    std::printf("\nlists: %zu URL and %zu hash entries, %.1f MB of list files\n",
                urls.entries.size(), hashes.entries.size(), list_file_bytes / 1e6);
    std::printf(
        "  load and compile %.2f s; resident %.1f MB (%.2fx the files; structures "
        "%.1f MB)\n",
        list_seconds, list_rss / 1e6, static_cast<double>(list_rss) / list_file_bytes,
        list_structures / 1e6);
    std::printf(
        "  lookup: URL %.0f ns (path prefixes and parent domains), hash %.0f ns; %zu of "
        "%zu found\n",
        url_ns, hash_ns, found, url_probes.size() + hash_probes.size());
  }

  // Compile: cold, then a restart from the cache.
  rules::LoadResult loaded = rules::LoadRuleSet({(dir / "pack.yaml").string()});
  if (!loaded.ruleset) {
    std::fprintf(stderr, "realistic pack did not load:\n");
    for (const rules::Diagnostic& d : loaded.diagnostics) {
      if (d.level == rules::Diagnostic::Level::kError)
        std::fprintf(stderr, "  %s\n", d.ToString().c_str());
    }
    std::exit(1);
  }
  eval::EvaluatorOptions cached;
  cached.cache_dir = (dir / "cache").string();
  std::unique_ptr<eval::Evaluator> cold, warm;
  auto create = [&](std::unique_ptr<eval::Evaluator>* e) {
    Status s = eval::Evaluator::Create(loaded.ruleset, cached, e);
    if (!s.ok()) {
      std::fprintf(stderr, "realistic pack did not compile: %s\n", s.message().c_str());
      std::exit(1);
    }
  };
  start = Clock::now();
  create(&cold);
  double cold_s = Seconds(start);
  cold.reset();
  start = Clock::now();
  create(&warm);
  double warm_s = Seconds(start);
  auto hs = std::move(warm);
  start = Clock::now();
  auto re2 = MakeEvaluator(loaded.ruleset, true);
  double re2_s = Seconds(start);

  corpus::CorpusOptions co;
  co.seed = 2027;
  co.signal_fraction = 0.05;
  co.text_bytes = 300;
  co.plants = pack.plants;
  corpus::CorpusGenerator gen(co);
  std::vector<v1::ContentReport> reports(n);
  for (auto& r : reports) gen.Next(&r);
  if (g_profile == "f") {
    Profile(*hs, reports);
    fs::remove_all(dir);
    return;
  }
  BareScan bare(hs->matcher(), reports);
  Result a3, f, g;
  auto hs_ctx = hs->NewContext();
  auto re2_ctx = re2->NewContext();
  RunEvaluator(*hs, *hs_ctx, reports.data(), reports.data() + std::min<size_t>(n, 1000), &g);
  g = {};
  for (size_t at = 0; at < n; at += kSliceReports) {
    size_t to = std::min(n, at + kSliceReports);
    bare.Run(at, to, &a3);
    RunEvaluator(*hs, *hs_ctx, reports.data() + at, reports.data() + to, &f);
    RunEvaluator(*re2, *re2_ctx, reports.data() + at, reports.data() + to, &g);
  }
  auto rate = [&](const Result& r) { return n / r.seconds; };
  std::printf("\nrealistic pack: %zu rules (%d phrase, %d regex, 2 list), %zu reports\n",
              loaded.ruleset->rules().size(), ro.phrase_rules, ro.regex_rules, n);
  std::printf("%-44s %12s %10s\n", "", "reports/s", "flagged");
  std::printf("%-44s %12.0f %10s\n", "(a3) bare hs_scan, realistic databases", rate(a3), "-");
  std::printf("%-44s %12.0f %9.1f%%\n", "(f) Evaluator, realistic pack", rate(f),
              100.0 * f.flagged / n);
  std::printf("%-44s %12.0f %9.1f%%\n", "(g) Evaluator with RE2::Set, realistic pack", rate(g),
              100.0 * g.flagged / n);
  std::printf("compile: Hyperscan cold %.2f s, from the cache %.3f s (%.0fx); RE2::Set %.2f s\n",
              cold_s, warm_s, cold_s / warm_s, re2_s);
  std::printf("ratios (targets in brackets):\n");
  std::printf("  (f)/(a3) = %.2f  [>= 0.5]\n", rate(f) / rate(a3));
  std::printf("  (f)/(g) = %.2f  [>= 3]\n", rate(f) / rate(g));
  std::printf("  (f)/(b) = %.2f  [>= 0.5] (the shipped packs' Evaluator: %.0f reports/s)\n",
              rate(f) / shipped_rate, shipped_rate);
  std::printf("  cached restart / cold compile = %.0fx  [>= 10]\n", cold_s / warm_s);
  if (f.flagged != g.flagged) {
    std::fprintf(stderr, "Hyperscan and RE2::Set disagree on the realistic pack: %llu vs %llu\n",
                 static_cast<unsigned long long>(f.flagged),
                 static_cast<unsigned long long>(g.flagged));
    std::exit(1);
  }
  fs::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 200000;
  std::string rules_dir = CAREWATCH_SOURCE_DIR "/rules";
  int generated = 2000;
  int realistic_rules = 5000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--realistic"))
      realistic_rules = static_cast<int>(bench::IntArg("--realistic", argv[i + 1], 0, 1000000));
    if (!std::strcmp(argv[i], "--reports"))
      n = static_cast<size_t>(bench::IntArg("--reports", argv[i + 1], 1, 100000000));
    else if (!std::strcmp(argv[i], "--rules"))
      rules_dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--generated"))
      generated = static_cast<int>(bench::IntArg("--generated", argv[i + 1], 0, 1000000));
    else if (!std::strcmp(argv[i], "--profile"))
      g_profile = argv[i + 1];
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
  if (g_profile == "b" || g_profile == "b0") {
    Profile(*MakeEvaluator(shipped.ruleset, false, /*gate=*/g_profile == "b"), reports);
    return 0;
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
  auto ungated_eval = MakeEvaluator(shipped.ruleset, false, /*gate=*/false);
  auto re2_eval = MakeEvaluator(shipped.ruleset, true);
  auto big_eval = MakeEvaluator(scaled.ruleset, false);
  auto big_re2_eval = MakeEvaluator(scaled.ruleset, true);

  if (g_profile == "f") {
    RunRealistic(realistic_rules, n, 0);
    return 0;
  }
  std::printf("corpus: %zu reports, %.1f MB of text fields (seed %llu, signal fraction %.2f)\n", n,
              bytes / 1e6, static_cast<unsigned long long>(options.seed), options.signal_fraction);
  std::printf("rules: shipped %zu rules; scaled %zu rules\n\n", shipped.ruleset->rules().size(),
              scaled.ruleset->rules().size());

  // The rows run interleaved over slices of the corpus, so drift in the
  // machine's speed (shared cores) falls on all of them alike; each row
  // finds its slice in cache (TouchReports).
  BareScan bare_shipped(hs_eval->matcher(), reports);
  BareScan bare_scaled(big_eval->matcher(), reports);
  Result a, a2, b, b0, c, d, e;
  struct Variant {
    const eval::Evaluator* evaluator;
    Result* result;
    std::unique_ptr<eval::Evaluator::Context> ctx;
  };
  Variant variants[] = {{hs_eval.get(), &b, hs_eval->NewContext()},
                        {ungated_eval.get(), &b0, ungated_eval->NewContext()},
                        {re2_eval.get(), &c, re2_eval->NewContext()},
                        {big_eval.get(), &d, big_eval->NewContext()},
                        {big_re2_eval.get(), &e, big_re2_eval->NewContext()}};
  for (auto& v : variants) {  // warm up
    Result ignored;
    RunEvaluator(*v.evaluator, *v.ctx, reports.data(), reports.data() + std::min<size_t>(n, 1000),
                 &ignored);
  }
  for (size_t at = 0; at < n; at += kSliceReports) {
    size_t to = std::min(n, at + kSliceReports);
    bare_shipped.Run(at, to, &a);
    bare_scaled.Run(at, to, &a2);
    for (auto& v : variants) {
      RunEvaluator(*v.evaluator, *v.ctx, reports.data() + at, reports.data() + to, v.result);
    }
  }
  if (b.flagged != c.flagged || b.flagged != b0.flagged) {
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
  std::printf("%-44s %12.0f %10.1f %10llu\n", "(b0) Evaluator scanning every field", rate(b0),
              bytes / 1e6 / b0.seconds, static_cast<unsigned long long>(b0.flagged));
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
  std::printf("  (b0)/(a) = %.2f  (the Evaluator scanning every field, as (a) does)\n",
              rate(b0) / rate(a));
  // The 3x and 0.5x targets for many rules are the realistic pack's
  // (f)/(g) and (f)/(b) below: nine rules, or 2,000 that flag 69% of
  // reports, are not what they are about (docs/performance.md).
  std::printf("  (b)/(c) = %.2f  (Hyperscan over RE2::Set, nine rules; target: (f)/(g))\n",
              rate(b) / rate(c));
  std::printf("  (d)/(b) = %.2f  (2,000 generated rules; target: (f)/(b))\n", rate(d) / rate(b));
  std::printf("  (d)/(a2) = %.2f  (Evaluator against bare scan, scaled rule set)\n",
              rate(d) / rate(a2));
  std::printf("  (d)/(e) = %.2f  (Hyperscan over RE2::Set with the scaled rule set)\n",
              rate(d) / rate(e));
  std::printf("  (b)/(a+fold) = %.2f  (Evaluator against bare scan plus the folding it must do)\n",
              rate(b) / (1.0 / (1.0 / rate(a) + 1.0 / rate(fold))));
  if (realistic_rules > 0) RunRealistic(realistic_rules, n, rate(b));
  return 0;
}
