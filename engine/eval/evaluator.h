#ifndef CAREWATCH_ENGINE_EVAL_EVALUATOR_H_
#define CAREWATCH_ENGINE_EVAL_EVALUATOR_H_

#include <re2/re2.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "carewatch/v1/report.pb.h"
#include "engine/common/status.h"
#include "engine/match/lists.h"
#include "engine/match/matcher.h"
#include "engine/match/normalize.h"
#include "engine/rules/ruleset.h"

namespace carewatch::eval {

struct EvaluatorOptions {
  // Where compiled Hyperscan databases are cached by RuleSet version; empty
  // disables the cache.
  std::string cache_dir;
  // Spans reported per matched leaf and field value.
  size_t max_spans_per_leaf = 8;
  // Match leaves with RE2::Set instead of Hyperscan (benchmarks and
  // cross-checks only).
  bool use_re2_set = false;
  // Skip scanning a field (raw or folded) when every rule that reads it is
  // already false on the report's other fields (equals, in, exists), e.g. a
  // rule for minors on a report about an adult. Verdicts are the same
  // either way; Explain always scans. Off only to measure the scan.
  bool gate_scans = true;
};

// How one condition node of one rule came out, for `carewatch explain`.
struct NodeTrace {
  const rules::Condition* condition = nullptr;
  int depth = 0;
  bool value = false;
  std::vector<v1::Match> matches;
};

// The value of a single-valued field of `r` (a text field but url, or a
// categorical one); nullptr for url, hash and attributes.
const std::string* SingleValue(const v1::ContentReport& r, rules::Field f);

struct RuleTrace {
  const rules::Rule* rule = nullptr;
  bool matched = false;
  std::vector<NodeTrace> nodes;  // pre-order
};

// Turns a ContentReport into a Verdict under one immutable RuleSet.
// Thread-safe: all methods are const; per-thread state lives in a Context.
class Evaluator {
 public:
  // Per-thread working state: Hyperscan scratch and reusable buffers.
  // Create one per worker thread up front with NewContext().
  class Context;

  // Compiles `ruleset`. Fails (InvalidArgument) only on a pattern the engines
  // reject, which the loader normally catches first; a pattern Hyperscan
  // accepts alone but cannot build (it is too large) is caught here, and the
  // message is a diagnostic at the pattern ("file:line:col: error: ...
  // [rule]"). With `diagnostics`, every such pattern is appended there as an
  // error, not only the first (each costs a compile of its database again).
  static Status Create(std::shared_ptr<const rules::RuleSet> ruleset,
                       const EvaluatorOptions& options, std::unique_ptr<Evaluator>* out,
                       std::vector<rules::Diagnostic>* diagnostics = nullptr);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // REQUIRES: not on the request path (allocates scratch and buffers).
  std::unique_ptr<Context> NewContext() const;

  // Evaluates `report`. InvalidArgument (naming the field) when a text field
  // is not valid UTF-8. `verdict` is overwritten.
  Status Evaluate(const v1::ContentReport& report, Context& context, v1::Verdict* verdict) const;
  // As above, with the calling thread's own Context for this Evaluator
  // (made on its first call): no lock and no allocation on the request path.
  Status Evaluate(const v1::ContentReport& report, v1::Verdict* verdict) const;

  // Evaluates every rule fully (no short-circuit) and records each node.
  Status Explain(const v1::ContentReport& report, Context& context,
                 std::vector<RuleTrace>* traces) const;

  // Identifiers that the `extract:` leaves of the rules in `verdict` find in
  // the report (docs/signals.md), at most `limit`, each once: (kind, value)
  // with a handle written PLATFORM:HANDLE. Not canonicalised.
  std::vector<std::pair<std::string, std::string>> ExtractIdentifiers(
      const v1::ContentReport& report, const v1::Verdict& verdict, size_t limit) const;

  // Whether any rule has an `extract:` leaf.
  bool extracts() const { return !extractors_.empty(); }

  const rules::RuleSet& ruleset() const { return *ruleset_; }
  std::shared_ptr<const rules::RuleSet> shared_ruleset() const { return ruleset_; }
  const match::Matcher& matcher() const { return *matcher_; }
  // Whether Create compiled databases (false: all came from the cache).
  bool compiled_databases() const { return compiled_; }

  // Deterministic id of the obligation a rule's flag opens for a report.
  static std::string ObligationId(const std::string& service_id, const std::string& report_id,
                                  const std::string& rule_id);

 private:
  struct Node {
    rules::Condition::Kind kind;
    uint32_t first_child = 0;  // index into child_ids_
    uint32_t num_children = 0;
    int at_least = 0;
    int32_t scan_id = -1;  // scanned leaves: matcher leaf id
    int32_t list = -1;     // in_list leaves: index into lists_
    int32_t probes = -1;   // in_list leaves of always_rules_: index into prepared_lists_
    // equals/in leaves of a single-valued field or an attribute: the value
    // source they read (value_sources_), and the bits of the constants they
    // accept; -1: compared value by value (a source of more than 64).
    int32_t source = -1;
    uint64_t accept = 0;
    const rules::Condition* condition = nullptr;
  };
  // A single-valued field (or one attribute) that equals/in leaves compare
  // with constants: every constant of every such leaf, numbered. A report's
  // value is looked up among them once (SourceBits), and each leaf is then
  // one test of that value's bit against its own.
  struct ValueSource {
    rules::Field field;
    std::string attribute_key;             // field == kAttribute
    std::vector<std::string_view> values;  // views of the rule set's constants
  };
  static constexpr size_t kMaxSourceValues = 64;
  void IndexValueLeaves();
  // The bit of `report`'s value of source `s` among its constants (0: none,
  // or no value), computed once a report (Context::source_report).
  uint64_t SourceBits(uint32_t s, const v1::ContentReport& report, const Context& ctx) const;

  explicit Evaluator(std::shared_ptr<const rules::RuleSet> ruleset,
                     const EvaluatorOptions& options);
  uint32_t Flatten(const rules::Condition& c, std::vector<match::PatternLeaf>* leaves);
  bool NeedsScan(uint32_t node) const;
  rules::Diagnostic RefusalDiagnostic(const match::Matcher::Refusal& refusal) const;
  void CollectScanLeaves(uint32_t node, std::vector<uint32_t>* out) const;

  enum class Tri : uint8_t { kFalse, kTrue, kUnknown };
  // A rule's value with its scanned leaves unknown: kFalse when no scan
  // result could make it true.
  Tri Prefilter(uint32_t node, const v1::ContentReport& report, const Context& ctx) const;
  bool HasPrefilterLeaf(uint32_t node) const;
  // Whether database `slot` must be scanned for `report`.
  bool SlotNeeded(int slot, const v1::ContentReport& report, Context& ctx) const;
  Status Scan(const v1::ContentReport& report, Context& ctx, bool gate) const;
  Status EvaluateImpl(const v1::ContentReport& report, Context& ctx, v1::Verdict* verdict,
                      bool gate) const;
  bool EvalNode(uint32_t node, const v1::ContentReport& report, const Context& ctx) const;
  bool EvalLeaf(const Node& n, const v1::ContentReport& report, const Context& ctx) const;
  void LeafMatches(const Node& n, const v1::ContentReport& report, Context& ctx,
                   google::protobuf::RepeatedPtrField<v1::Match>* out) const;
  void CollectMatches(uint32_t node, const v1::ContentReport& report, Context& ctx,
                      google::protobuf::RepeatedPtrField<v1::Match>* out) const;
  void TraceNode(uint32_t node, int depth, const v1::ContentReport& report, Context& ctx,
                 RuleTrace* trace) const;

  std::shared_ptr<const rules::RuleSet> ruleset_;
  EvaluatorOptions options_;
  std::unique_ptr<match::Matcher> matcher_;
  bool compiled_ = false;
  std::vector<Node> nodes_;
  std::vector<uint32_t> child_ids_;
  std::vector<uint32_t> rule_root_;
  std::vector<int64_t> rule_deadline_;                         // per rule, seconds
  std::vector<const std::vector<std::string>*> rule_actions_;  // per rule
  std::vector<match::CompiledList> lists_;
  std::vector<uint32_t> scan_node_;  // scan id -> node
  // Scan id -> the rules using it: scan_rules_[scan_rule_start_[id]] up to
  // scan_rules_[scan_rule_start_[id + 1]], in two flat arrays (read for
  // every id a report fires; one vector an id would be a cache miss more).
  std::vector<uint32_t> scan_rule_start_;
  std::vector<uint32_t> scan_rules_;
  std::vector<uint32_t> always_rules_;  // rules that can match without a scan hit
  // The (list, field) of the in_list leaves of always_rules_: each field
  // value's keys are prepared before the scan, so that the scan hides the
  // list filter's reads from memory (CompiledList::Prepare).
  std::vector<std::pair<int32_t, rules::Field>> prepared_lists_;
  void PrepareLists(const v1::ContentReport& report, Context& ctx) const;
  // Per database slot: some rule reads it whatever the report's other
  // fields; else the rules whose other conditions decide whether it is read.
  bool slot_always_[match::kNumDatabaseSlots] = {};
  std::vector<uint32_t> slot_gated_[match::kNumDatabaseSlots];
  struct Extractor {
    std::string rule_id;
    const rules::Condition* leaf = nullptr;
    std::unique_ptr<RE2> re;
  };
  std::vector<Extractor> extractors_;  // regex leaves with `extract:`
  std::vector<ValueSource> value_sources_;

  // Distinct for every Evaluator ever made in the process (an address may
  // be reused after a reload): the key of the threads' own Contexts.
  const uint64_t instance_;
};

class Evaluator::Context {
 public:
  ~Context();
  // Bytes of field values (raw and folded) this Context has scanned.
  uint64_t bytes_scanned() const { return bytes_scanned_; }
  // Field values whose phrase spans were found by searching the value again
  // after the scan, not from the scan's own matches (RE2::Set, or more
  // occurrences in one report than kMaxScanSpans).
  uint64_t spans_searched() const { return spans_searched_; }
  // Occurrences of phrases one report's scan keeps for its spans; past
  // this, spans are found by searching again.
  static constexpr size_t kMaxScanSpans = 4096;
  // An occurrence of a phrase leaf's phrase the scan found in the report:
  // where the spans of a flagged phrase leaf come from. `value` is the
  // index of the URL scanned (0 for other fields).
  struct ScanSpan {
    uint32_t leaf, value, start, end;
  };

 private:
  friend class Evaluator;
  Context() = default;
  std::unique_ptr<match::Matcher::Scratch> scratch;
  std::vector<uint8_t> scan_hit;     // per scan id
  std::vector<uint32_t> fired;       // scan ids hit by this report
  std::vector<uint32_t> rule_epoch;  // per rule: epoch it became a candidate
  uint32_t epoch = 0;
  std::vector<uint32_t> candidates;
  match::FoldedText folded[rules::kNumTextFields];
  // Epoch at which folded[f] was rebuilt with its offset map (spans need it;
  // the scan does not), so a field is folded with the map at most once.
  uint32_t folded_map_epoch[rules::kNumTextFields] = {};
  match::FoldedText folded_url;
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  std::vector<ScanSpan> scan_spans;
  bool scan_spans_full = false;                      // more than kMaxScanSpans: not all kept
  std::vector<std::pair<uint32_t, uint32_t>> found;  // SelectSpans' input
  // Per rule: the report (gate_epoch) whose prefilter gate_open holds.
  std::vector<uint32_t> gate_epoch;
  std::vector<uint8_t> gate_open;
  uint32_t gate_report = 0;
  // Per prepared_lists_ entry: a probe per value of the field, valid for
  // the report whose scan is numbered probes_report (gate_report).
  std::vector<std::vector<match::CompiledList::Probe>> probes;
  std::vector<size_t> probe_counts;  // of each, those prepared for the report
  uint32_t probes_report = 0;
  // Per value source: the report (source_report) whose bit source_bits
  // holds. Mutable: filled in by the const evaluation of the leaves.
  mutable std::vector<uint32_t> source_epoch;
  mutable std::vector<uint64_t> source_bits;
  uint32_t source_report = 0;
  uint64_t bytes_scanned_ = 0;
  uint64_t spans_searched_ = 0;
};

}  // namespace carewatch::eval

#endif  // CAREWATCH_ENGINE_EVAL_EVALUATOR_H_
