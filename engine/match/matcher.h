#ifndef CAREWATCH_ENGINE_MATCH_MATCHER_H_
#define CAREWATCH_ENGINE_MATCH_MATCHER_H_

#include <re2/set.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/common/status.h"
#include "engine/rules/ruleset.h"

struct hs_database;
struct hs_scratch;
namespace re2 {
class RE2;
}  // namespace re2

namespace carewatch::match {

// One scanned leaf (a regex or phrases condition) handed to the matcher.
struct PatternLeaf {
  rules::Field field;      // a text field
  bool normalize = false;  // scan the evasion-folded copy of the field
  // A regex leaf's expression and flags (all a leaf's expressions share its
  // id). A phrases leaf has none: `literals` alone describe it.
  std::vector<std::string> expressions;
  uint32_t regex_flags = 0;
  // For phrases leaves: the phrases as lower-case literals. Hyperscan then
  // matches them as plain literals (no UTF-8 mode, no \b, which would slow
  // every scan) and the match callback checks the word boundaries and the
  // bytes; FindSpans locates them without a regex engine. Same semantics as
  // rules::PhrasePattern matched case-sensitively; the RE2::Set variant
  // matches rules::PhrasePattern(literal, kAsciiPrefilter) and then checks
  // the boundaries as the callback does.
  std::vector<std::string> literals;
};

// Which compiled database to scan: a text field, raw or folded.
inline int DatabaseSlot(rules::Field field, bool normalized) {
  return static_cast<int>(field) * 2 + (normalized ? 1 : 0);
}
inline constexpr int kNumDatabaseSlots = rules::kNumTextFields * 2;

// Hyperscan block-mode databases, one per (text field, raw|folded), compiled
// once from every scanned leaf of a RuleSet, plus one RE2 per leaf to locate
// spans after Hyperscan has said the leaf matched.
//
// Order of calls: Build (configuration time; may fail with a message naming
// the bad pattern) -> NewScratch once per worker thread -> Scan and FindSpans
// from any number of threads, each with its own Scratch.
class Matcher {
 public:
  // Per-thread Hyperscan scratch space. Allocate up front; never share one
  // between threads at the same time.
  class Scratch {
   public:
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;

   private:
    friend class Matcher;
    Scratch() = default;
    hs_scratch* scratch_ = nullptr;
  };

  // A pattern Hyperscan refused when it compiled a leaf with the others of
  // its database (a pattern it accepts alone may still be too large to
  // build, e.g. a long counted repeat of a Unicode class under ucp).
  struct Refusal {
    uint32_t leaf = 0;    // the leaf's id
    std::string pattern;  // the expression as Hyperscan was given it
    std::string message;  // Hyperscan's reason
  };
  static constexpr size_t kMaxRefusals = 32;

  // Compiles `leaves` (leaf id == index). When `cache_dir` is not empty the
  // serialised databases are read from / written to
  // cache_dir/<cache_key>-<slot>.hsdb, so a restart with the same rules does
  // not recompile. `*compiled` tells whether anything was compiled.
  // A refused pattern fails the build with a message naming it, and is
  // appended to `refusals` when given. With `every_refusal` too, each refused
  // pattern is left out and the rest compiled again, so that every one is
  // appended (up to kMaxRefusals), and the build still fails: what
  // `carewatch lint` uses to name them all in one run.
  static Status Build(std::vector<PatternLeaf> leaves, const std::string& cache_dir,
                      const std::string& cache_key, std::unique_ptr<Matcher>* out,
                      bool* compiled = nullptr, std::vector<Refusal>* refusals = nullptr,
                      bool every_refusal = false);

  // The same leaves matched with one RE2::Set per slot instead of Hyperscan:
  // what one would build without Hyperscan. For benchmarks and as a
  // cross-check in tests; slower, never used by the service.
  static Status BuildWithRe2Set(std::vector<PatternLeaf> leaves, std::unique_ptr<Matcher>* out);
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // REQUIRES: not on the scan path (it allocates).
  std::unique_ptr<Scratch> NewScratch() const;

  bool HasDatabase(int slot) const { return dbs_[slot] != nullptr || sets_[slot] != nullptr; }

  // Calls on_match for each leaf that matches `data` in `slot`'s database.
  // A regex leaf is reported at most once per call, with start == end ==
  // kNoSpan. A phrase leaf is reported once for every occurrence of one of
  // its phrases as a whole word, with the occurrence's bytes [start, end),
  // in the order of their ends (when spans_from_scan(); else like a regex
  // leaf). REQUIRES: `data` is valid UTF-8. Never allocates.
  static constexpr uint32_t kNoSpan = UINT32_MAX;
  using MatchFn = void (*)(uint32_t leaf_id, uint32_t start, uint32_t end, void* context);
  Status Scan(int slot, std::string_view data, Scratch& scratch, MatchFn on_match,
              void* context) const;
  // Whether Scan reports every occurrence of a phrase leaf's phrases with
  // its bytes (Hyperscan: yes; the RE2::Set variant: no).
  bool spans_from_scan() const { return !re2_sets_; }
  // Whether leaf `leaf_id` is a phrase leaf.
  bool is_phrase_leaf(uint32_t leaf_id) const { return !leaves_[leaf_id].literals.empty(); }

  // Appends up to `max_spans` non-overlapping byte spans of leaf `leaf_id` in
  // `data` (RE2 semantics, leftmost first).
  void FindSpans(uint32_t leaf_id, std::string_view data, size_t max_spans,
                 std::vector<std::pair<uint32_t, uint32_t>>* spans) const;
  // What FindSpans answers for a phrase leaf, from every occurrence of its
  // phrases in the data (`found`, in any order; reordered here): the
  // leftmost, then the longest at the same start, never overlapping, at
  // most `max_spans`, appended to `spans`.
  static void SelectSpans(std::vector<std::pair<uint32_t, uint32_t>>* found, size_t max_spans,
                          std::vector<std::pair<uint32_t, uint32_t>>* spans);

  size_t num_leaves() const { return leaves_.size(); }
  // Total bytes of the compiled databases, for metrics and benchmarks.
  size_t database_bytes() const;
  // The raw database for a slot (benchmarks compare against bare hs_scan).
  const hs_database* database(int slot) const { return dbs_[slot]; }

 private:
  Matcher() = default;
  std::vector<PatternLeaf> leaves_;
  std::vector<std::unique_ptr<re2::RE2>> re2_;
  // `literal_leaves` false: nullptr for phrase leaves (FindSpans needs none).
  Status BuildRe2(const std::vector<PatternLeaf>& leaves, bool literal_leaves);
  // One entry per Hyperscan expression id.
  struct Expression {
    uint32_t leaf;
    const std::string* literal;  // phrases: the literal to verify; else null
    bool word_start, word_end;   // the literal starts, ends with a word character
  };
  std::vector<Expression> expressions_;
  friend int OnHyperscanMatch(unsigned, unsigned long long, unsigned long long, unsigned, void*);
  hs_database* dbs_[kNumDatabaseSlots] = {};
  // RE2::Set alternative (BuildWithRe2Set): per slot, set index -> leaf id.
  std::unique_ptr<re2::RE2::Set> sets_[kNumDatabaseSlots];
  std::vector<uint32_t> set_leaf_[kNumDatabaseSlots];
  bool re2_sets_ = false;
  hs_scratch* prototype_ = nullptr;
};

}  // namespace carewatch::match

#endif  // CAREWATCH_ENGINE_MATCH_MATCHER_H_
