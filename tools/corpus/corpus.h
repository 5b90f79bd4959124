#ifndef CAREWATCH_TOOLS_CORPUS_CORPUS_H_
#define CAREWATCH_TOOLS_CORPUS_CORPUS_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "carewatch/v1/report.pb.h"

namespace carewatch::corpus {

struct CorpusOptions {
  uint64_t seed = 1;
  // Fraction of reports that carry a grooming, sextortion or list signal.
  double signal_fraction = 0.05;
  // Approximate bytes of `text` per report.
  size_t text_bytes = 300;
  // received_at of the first report; later ones follow 1..max_gap_seconds
  // apart (uniformly).
  int64_t start_time = 1767607200;  // 2026-01-05T10:00:00Z
  int max_gap_seconds = 20;
  int num_services = 4;
  // Signals to plant, by rule: each signal report takes a rule at random,
  // then one of its reports, whose fields are laid over the generated ones
  // (text fields lead with the plant's text). Empty: the built-in signals
  // of the shipped rule packs.
  std::vector<std::vector<v1::ContentReport>> plants;
};

// Generates a reproducible stream of synthetic, non-graphic report metadata:
// the same options always give the same reports, in the same order.
class CorpusGenerator {
 public:
  explicit CorpusGenerator(const CorpusOptions& options);
  // Fills `report` with the next report.
  void Next(v1::ContentReport* report);

 private:
  std::string Sentence();
  std::string Signal();
  std::string Evade(const std::string& s);
  void Plant(v1::ContentReport* r);
  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[std::uniform_int_distribution<size_t>(0, N - 1)(rng_)];
  }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  CorpusOptions options_;
  std::mt19937_64 rng_;
  uint64_t counter_ = 0;
  int64_t clock_;
};

// A synthetic rule pack of `num_rules` rules (for scaling benchmarks): each
// rule combines a categorical condition with a regex or phrases leaf drawn
// from a seeded vocabulary; one rule in twenty uses the corpus's own words,
// so a share of a corpus matches.
std::string GenerateRulePack(int num_rules, uint64_t seed);

// A rule set the size of real ones, for benchmarks and cross-checks:
// keyword and phrase rules by the thousand across the text fields (half of
// the text ones folded), regex rules by the hundred, and a URL and a hash
// list of a million entries each. Words are made-up syllables, so the
// corpus's own sentences never match; a report flags only when a signal
// (`plants`, one list a rule) is planted in it.
struct RealisticOptions {
  int phrase_rules = 5000;
  int regex_rules = 300;
  size_t list_entries = 1000000;  // each of the URL and the hash list
  uint64_t seed = 11;
};
struct RealisticPack {
  std::string yaml;                                    // pack.yaml
  std::string url_list, hash_list;                     // lists/urls.txt, lists/md5.txt
  std::vector<std::vector<v1::ContentReport>> plants;  // what flags each rule
};
RealisticPack GenerateRealisticPack(const RealisticOptions& options);

}  // namespace carewatch::corpus

#endif  // CAREWATCH_TOOLS_CORPUS_CORPUS_H_
