#include "engine/eval/evaluator.h"

#include <algorithm>
#include <atomic>
#include <set>

#include "engine/common/digest.h"
#include "engine/common/utf8.h"
#include "engine/rules/pattern.h"

namespace carewatch::eval {

using rules::Condition;
using rules::Field;

const std::string* SingleValue(const v1::ContentReport& r, Field f) {
  switch (f) {
    case Field::kText:
      return &r.text();
    case Field::kCaption:
      return &r.caption();
    case Field::kUsername:
      return &r.username();
    case Field::kDisplayName:
      return &r.display_name();
    case Field::kProfileBio:
      return &r.profile_bio();
    case Field::kServiceId:
      return &r.service_id();
    case Field::kSurface:
      return &r.surface();
    case Field::kContentType:
      return &r.content_type();
    case Field::kReporterType:
      return &r.reporter_type();
    case Field::kReason:
      return &r.reason();
    case Field::kSubjectAgeBand:
      return &r.subject_age_band();
    default:
      return nullptr;
  }
}

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

void AddMatch(const std::string& field, uint32_t start, uint32_t end,
              google::protobuf::RepeatedPtrField<v1::Match>* out) {
  v1::Match* m = out->Add();
  m->set_field(field);
  m->set_start(start);
  m->set_end(end);
}

struct HitContext {
  std::vector<uint8_t>* hit;
  std::vector<uint32_t>* fired;
  std::vector<Evaluator::Context::ScanSpan>* spans;
  bool* spans_full;
  uint32_t value = 0;  // the URL being scanned; 0 for other fields
};

void OnLeafMatch(uint32_t id, uint32_t start, uint32_t end, void* c) {
  auto* h = static_cast<HitContext*>(c);
  if (start != match::Matcher::kNoSpan) {
    if (h->spans->size() < Evaluator::Context::kMaxScanSpans)
      h->spans->push_back({id, h->value, start, end});
    else
      *h->spans_full = true;
  }
  if (!(*h->hit)[id]) {
    (*h->hit)[id] = 1;
    h->fired->push_back(id);
  }
}

}  // namespace

Evaluator::Context::~Context() = default;

namespace {
std::atomic<uint64_t> next_instance{1};
}  // namespace

Evaluator::Evaluator(std::shared_ptr<const rules::RuleSet> ruleset, const EvaluatorOptions& options)
    : ruleset_(std::move(ruleset)), options_(options), instance_(next_instance++) {}

Evaluator::~Evaluator() = default;

uint32_t Evaluator::Flatten(const Condition& c, std::vector<match::PatternLeaf>* leaves) {
  uint32_t index = static_cast<uint32_t>(nodes_.size());
  nodes_.push_back(Node{c.kind});
  nodes_[index].condition = &c;
  nodes_[index].at_least = c.at_least;
  if (c.kind == Condition::Kind::kRegex || c.kind == Condition::Kind::kPhrases) {
    match::PatternLeaf leaf;
    leaf.field = c.field;
    leaf.normalize = c.normalize;
    if (c.kind == Condition::Kind::kRegex) {
      leaf.expressions.push_back(c.regex);
      leaf.regex_flags = c.regex_flags;
    } else {
      for (const std::string& p : c.phrases) {
        std::string phrase = c.normalize ? match::FoldForMatching(p) : p;
        for (char& ch : phrase) ch = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
        leaf.literals.push_back(std::move(phrase));
      }
    }
    nodes_[index].scan_id = static_cast<int32_t>(leaves->size());
    leaves->push_back(std::move(leaf));
    scan_node_.push_back(index);
  } else if (c.kind == Condition::Kind::kInList) {
    for (size_t i = 0; i < ruleset_->lists().size(); ++i) {
      if (ruleset_->lists()[i].name == c.list) nodes_[index].list = static_cast<int32_t>(i);
    }
  }
  std::vector<uint32_t> children;
  for (const Condition& child : c.children) children.push_back(Flatten(child, leaves));
  nodes_[index].first_child = static_cast<uint32_t>(child_ids_.size());
  nodes_[index].num_children = static_cast<uint32_t>(children.size());
  child_ids_.insert(child_ids_.end(), children.begin(), children.end());
  return index;
}

void Evaluator::IndexValueLeaves() {
  std::vector<std::vector<uint32_t>> leaves_of;  // per source, its leaves
  for (uint32_t i = 0; i < nodes_.size(); ++i) {
    const Condition& c = *nodes_[i].condition;
    if (c.kind != Condition::Kind::kEquals && c.kind != Condition::Kind::kIn) continue;
    // url and hash hold many values a report; a field SingleValue does not
    // know keeps the comparison by value.
    if (c.field != Field::kAttribute &&
        SingleValue(v1::ContentReport::default_instance(), c.field) == nullptr) {
      continue;
    }
    size_t s = 0;
    while (s < value_sources_.size() && !(value_sources_[s].field == c.field &&
                                          (c.field != Field::kAttribute ||
                                           value_sources_[s].attribute_key == c.attribute_key))) {
      ++s;
    }
    if (s == value_sources_.size()) {
      value_sources_.push_back({c.field, c.field == Field::kAttribute ? c.attribute_key : "", {}});
      leaves_of.emplace_back();
    }
    std::vector<std::string_view>& values = value_sources_[s].values;
    for (const std::string& v : c.values) {
      // Past the limit the source is compared value by value: the rest of
      // its constants need no number (and a long `in` list no quadratic
      // search).
      if (values.size() > kMaxSourceValues) break;
      if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
    }
    leaves_of[s].push_back(i);
  }
  for (size_t s = 0; s < value_sources_.size(); ++s) {
    const std::vector<std::string_view>& values = value_sources_[s].values;
    if (values.size() > kMaxSourceValues) continue;  // its leaves compare value by value
    for (uint32_t i : leaves_of[s]) {
      Node& n = nodes_[i];
      n.source = static_cast<int32_t>(s);
      for (const std::string& v : n.condition->values) {
        n.accept |= uint64_t{1} << (std::find(values.begin(), values.end(), v) - values.begin());
      }
    }
  }
}

uint64_t Evaluator::SourceBits(uint32_t s, const v1::ContentReport& report,
                               const Context& ctx) const {
  if (ctx.source_epoch[s] == ctx.source_report) return ctx.source_bits[s];
  const ValueSource& src = value_sources_[s];
  const std::string* value = nullptr;
  if (src.field == Field::kAttribute) {
    auto it = report.attributes().find(src.attribute_key);
    if (it != report.attributes().end()) value = &it->second;
  } else {
    value = SingleValue(report, src.field);
  }
  uint64_t bits = 0;
  if (value != nullptr) {
    for (size_t i = 0; i < src.values.size(); ++i) {
      if (src.values[i] == *value) {
        bits = uint64_t{1} << i;
        break;
      }
    }
  }
  ctx.source_epoch[s] = ctx.source_report;
  ctx.source_bits[s] = bits;
  return bits;
}

// True when the node cannot be true unless some scanned leaf below it
// matched; such rules are only evaluated when one of their leaves fires.
bool Evaluator::NeedsScan(uint32_t index) const {
  const Node& n = nodes_[index];
  switch (n.kind) {
    case Condition::Kind::kAll:
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (NeedsScan(child_ids_[n.first_child + i])) return true;
      }
      return false;
    case Condition::Kind::kAny:
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (!NeedsScan(child_ids_[n.first_child + i])) return false;
      }
      return true;
    case Condition::Kind::kAtLeast: {
      int free = 0;
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (!NeedsScan(child_ids_[n.first_child + i])) ++free;
      }
      return free < n.at_least;
    }
    case Condition::Kind::kNone:
      return false;
    default:
      return n.scan_id >= 0;
  }
}

void Evaluator::CollectScanLeaves(uint32_t index, std::vector<uint32_t>* out) const {
  const Node& n = nodes_[index];
  if (n.scan_id >= 0) out->push_back(static_cast<uint32_t>(n.scan_id));
  for (uint32_t i = 0; i < n.num_children; ++i)
    CollectScanLeaves(child_ids_[n.first_child + i], out);
}

Status Evaluator::Create(std::shared_ptr<const rules::RuleSet> ruleset,
                         const EvaluatorOptions& options, std::unique_ptr<Evaluator>* out,
                         std::vector<rules::Diagnostic>* diagnostics) {
  if (!ruleset) return Status::InvalidArgument("no rule set");
  std::unique_ptr<Evaluator> e(new Evaluator(std::move(ruleset), options));
  // Lists of a million entries take a while to index: the index is cached
  // beside the compiled databases, by rule-set version and list.
  for (const rules::ListDef& def : e->ruleset_->lists()) {
    std::string path = options.cache_dir.empty()
                           ? ""
                           : options.cache_dir + "/" + e->ruleset_->version() + "-list-" +
                                 std::to_string(e->lists_.size()) + ".idx";
    e->lists_.emplace_back(def, path);
  }
  std::vector<match::PatternLeaf> leaves;
  for (const rules::Rule& rule : e->ruleset_->rules()) {
    e->rule_root_.push_back(e->Flatten(rule.when, &leaves));
  }
  e->IndexValueLeaves();
  for (const rules::Rule& rule : e->ruleset_->rules()) {
    e->rule_deadline_.push_back(e->ruleset_->DeadlineFor(rule));
    e->rule_actions_.push_back(&e->ruleset_->ActionsFor(rule));
  }
  std::vector<std::vector<uint32_t>> scan_rules(leaves.size());
  for (uint32_t r = 0; r < e->rule_root_.size(); ++r) {
    std::vector<uint32_t> ids;
    e->CollectScanLeaves(e->rule_root_[r], &ids);
    const bool gated = e->HasPrefilterLeaf(e->rule_root_[r]);
    for (uint32_t id : ids) {
      int slot = match::DatabaseSlot(leaves[id].field, leaves[id].normalize);
      if (!gated) {
        e->slot_always_[slot] = true;
      } else if (e->slot_gated_[slot].empty() || e->slot_gated_[slot].back() != r) {
        e->slot_gated_[slot].push_back(r);
      }
    }
  }
  for (uint32_t r = 0; r < e->rule_root_.size(); ++r) {
    if (!e->NeedsScan(e->rule_root_[r])) {
      e->always_rules_.push_back(r);
      std::vector<uint32_t> stack = {e->rule_root_[r]};
      while (!stack.empty()) {
        Node& n = e->nodes_[stack.back()];
        stack.pop_back();
        for (uint32_t i = 0; i < n.num_children; ++i)
          stack.push_back(e->child_ids_[n.first_child + i]);
        if (n.list < 0) continue;
        const std::pair<int32_t, Field> key(
            n.list, n.condition->field == Field::kUrl ? Field::kUrl : Field::kHash);
        auto at = std::find(e->prepared_lists_.begin(), e->prepared_lists_.end(), key);
        n.probes = static_cast<int32_t>(at - e->prepared_lists_.begin());
        if (at == e->prepared_lists_.end()) e->prepared_lists_.push_back(key);
      }
      continue;
    }
    std::vector<uint32_t> ids;
    e->CollectScanLeaves(e->rule_root_[r], &ids);
    for (uint32_t id : ids) scan_rules[id].push_back(r);
  }
  e->scan_rule_start_.reserve(scan_rules.size() + 1);
  for (const std::vector<uint32_t>& rules : scan_rules) {
    e->scan_rule_start_.push_back(static_cast<uint32_t>(e->scan_rules_.size()));
    e->scan_rules_.insert(e->scan_rules_.end(), rules.begin(), rules.end());
  }
  e->scan_rule_start_.push_back(static_cast<uint32_t>(e->scan_rules_.size()));
  // `extract:` leaves keep an RE2 of their own: it finds the capture group
  // in the rare report whose rule flagged.
  RE2::Options re2_options;
  re2_options.set_log_errors(false);
  for (const rules::Rule& rule : e->ruleset_->rules()) {
    std::vector<const rules::Condition*> stack = {&rule.when};
    while (!stack.empty()) {
      const rules::Condition* c = stack.back();
      stack.pop_back();
      for (const auto& child : c->children) stack.push_back(&child);
      if (c->kind != rules::Condition::Kind::kRegex || c->extract_kind.empty()) continue;
      auto re = std::make_unique<RE2>(rules::Re2Pattern(c->regex, c->regex_flags), re2_options);
      if (!re->ok()) return Status::InvalidArgument("rule " + rule.id + ": " + re->error());
      e->extractors_.push_back({rule.id, c, std::move(re)});
    }
  }
  std::vector<match::Matcher::Refusal> refusals;
  Status s = options.use_re2_set
                 ? match::Matcher::BuildWithRe2Set(std::move(leaves), &e->matcher_)
                 : match::Matcher::Build(std::move(leaves), options.cache_dir,
                                         e->ruleset_->version(), &e->matcher_, &e->compiled_,
                                         &refusals, /*every_refusal=*/diagnostics != nullptr);
  if (!s.ok()) {
    if (refusals.empty()) return s;
    // Named where the rule author wrote the pattern, as the loader names
    // what it refuses.
    std::vector<rules::Diagnostic> refused;
    for (const match::Matcher::Refusal& r : refusals) refused.push_back(e->RefusalDiagnostic(r));
    Status first = Status::InvalidArgument(refused.front().ToString());
    if (diagnostics) diagnostics->insert(diagnostics->end(), refused.begin(), refused.end());
    return first;
  }
  *out = std::move(e);
  return Status::Ok();
}

rules::Diagnostic Evaluator::RefusalDiagnostic(const match::Matcher::Refusal& refusal) const {
  const uint32_t node = scan_node_[refusal.leaf];
  const Condition& c = *nodes_[node].condition;
  // Rules are flattened in order: the rule is the last one whose root is at
  // or before the node.
  const size_t rule =
      static_cast<size_t>(std::upper_bound(rule_root_.begin(), rule_root_.end(), node) -
                          rule_root_.begin()) -
      1;
  rules::Diagnostic d;
  d.pos = c.value_pos.line > 0 ? c.value_pos : c.pos;
  d.rule_id = ruleset_->rules()[rule].id;
  d.message = std::string("Hyperscan cannot build ") +
              (c.kind == Condition::Kind::kPhrases ? "phrase '" : "regex '") +
              rules::Excerpt(refusal.pattern) + "': " + refusal.message;
  return d;
}

std::unique_ptr<Evaluator::Context> Evaluator::NewContext() const {
  std::unique_ptr<Context> c(new Context());
  c->scratch = matcher_->NewScratch();
  c->scan_hit.assign(scan_node_.size(), 0);
  c->fired.reserve(scan_node_.size());
  c->scan_spans.reserve(Context::kMaxScanSpans);
  c->rule_epoch.assign(rule_root_.size(), 0);
  c->candidates.reserve(rule_root_.size());
  c->gate_epoch.assign(rule_root_.size(), 0);
  c->gate_open.assign(rule_root_.size(), 0);
  c->probes.resize(prepared_lists_.size());
  c->probe_counts.assign(prepared_lists_.size(), 0);
  c->source_epoch.assign(value_sources_.size(), 0);
  c->source_bits.assign(value_sources_.size(), 0);
  return c;
}

std::string Evaluator::ObligationId(const std::string& service_id, const std::string& report_id,
                                    const std::string& rule_id) {
  thread_local std::string key;
  key.assign(service_id);
  key += '\0';
  key += report_id;
  key += '\0';
  key += rule_id;
  std::string id = Sha256Hex(key);
  id.resize(24);
  id.insert(0, "ob-");
  return id;
}

bool Evaluator::HasPrefilterLeaf(uint32_t index) const {
  const Node& n = nodes_[index];
  if (n.kind == Condition::Kind::kEquals || n.kind == Condition::Kind::kIn ||
      n.kind == Condition::Kind::kExists) {
    return true;
  }
  for (uint32_t i = 0; i < n.num_children; ++i) {
    if (HasPrefilterLeaf(child_ids_[n.first_child + i])) return true;
  }
  return false;
}

Evaluator::Tri Evaluator::Prefilter(uint32_t index, const v1::ContentReport& report,
                                    const Context& ctx) const {
  const Node& n = nodes_[index];
  const uint32_t* child = child_ids_.data() + n.first_child;
  int true_children = 0, unknown_children = 0;
  switch (n.kind) {
    case Condition::Kind::kAll:
    case Condition::Kind::kAny:
    case Condition::Kind::kNone:
    case Condition::Kind::kAtLeast:
      for (uint32_t i = 0; i < n.num_children; ++i) {
        Tri v = Prefilter(child[i], report, ctx);
        if (v == Tri::kFalse && n.kind == Condition::Kind::kAll) return Tri::kFalse;
        if (v == Tri::kTrue && n.kind == Condition::Kind::kAny) return Tri::kTrue;
        if (v == Tri::kTrue && n.kind == Condition::Kind::kNone) return Tri::kFalse;
        true_children += v == Tri::kTrue;
        unknown_children += v == Tri::kUnknown;
      }
      break;
    case Condition::Kind::kEquals:
    case Condition::Kind::kIn:
    case Condition::Kind::kExists:
      return EvalLeaf(n, report, ctx) ? Tri::kTrue : Tri::kFalse;
    default:  // scanned leaves, and lists (a lookup costs more than it saves)
      return Tri::kUnknown;
  }
  if (n.kind == Condition::Kind::kAtLeast) {
    if (true_children >= n.at_least) return Tri::kTrue;
    if (true_children + unknown_children < n.at_least) return Tri::kFalse;
    return Tri::kUnknown;
  }
  if (unknown_children > 0) return Tri::kUnknown;
  // kAll: no child false; kAny: no child true; kNone: no child true.
  return n.kind == Condition::Kind::kAny ? Tri::kFalse : Tri::kTrue;
}

bool Evaluator::SlotNeeded(int slot, const v1::ContentReport& report, Context& ctx) const {
  if (!matcher_->HasDatabase(slot)) return false;
  if (slot_always_[slot]) return true;
  for (uint32_t r : slot_gated_[slot]) {
    if (ctx.gate_epoch[r] != ctx.gate_report) {
      ctx.gate_epoch[r] = ctx.gate_report;
      ctx.gate_open[r] = Prefilter(rule_root_[r], report, ctx) != Tri::kFalse;
    }
    if (ctx.gate_open[r]) return true;
  }
  return false;
}

void Evaluator::PrepareLists(const v1::ContentReport& report, Context& ctx) const {
  if (prepared_lists_.empty()) return;
  for (size_t k = 0; k < prepared_lists_.size(); ++k) {
    const auto& [list, field] = prepared_lists_[k];
    std::vector<match::CompiledList::Probe>& probes = ctx.probes[k];
    const int n = field == Field::kUrl ? report.urls_size() : report.hashes_size();
    // Grown, never shrunk: a probe keeps its storage for the next report.
    if (probes.size() < static_cast<size_t>(n)) probes.resize(n);
    ctx.probe_counts[k] = static_cast<size_t>(n);
    for (int i = 0; i < n; ++i) {
      lists_[list].Prepare(field == Field::kUrl ? report.urls(i) : report.hashes(i).value(),
                           &probes[i]);
    }
  }
  // For the scan that follows, which numbers the report (Scan).
  ctx.probes_report = ctx.gate_report + 1 == 0 ? 1 : ctx.gate_report + 1;
}

Status Evaluator::Scan(const v1::ContentReport& report, Context& ctx, bool gate) const {
  for (uint32_t id : ctx.fired) ctx.scan_hit[id] = 0;
  ctx.fired.clear();
  if (++ctx.gate_report == 0) {  // wrapped: reset the marks
    std::fill(ctx.gate_epoch.begin(), ctx.gate_epoch.end(), 0);
    ctx.gate_report = 1;
  }
  ctx.scan_spans.clear();
  ctx.scan_spans_full = false;
  HitContext hits{&ctx.scan_hit, &ctx.fired, &ctx.scan_spans, &ctx.scan_spans_full};
  for (int f = 0; f < rules::kNumTextFields; ++f) {
    Field field = static_cast<Field>(f);
    int raw = match::DatabaseSlot(field, false);
    int folded = match::DatabaseSlot(field, true);
    const bool scan_raw = gate ? SlotNeeded(raw, report, ctx) : matcher_->HasDatabase(raw);
    const bool scan_folded = gate ? SlotNeeded(folded, report, ctx) : matcher_->HasDatabase(folded);
    if (!scan_raw && !scan_folded) continue;
    auto scan_value = [&](const std::string& value, match::FoldedText* fold) -> Status {
      if (value.empty()) return Status::Ok();
      Status s;
      if (scan_raw) {
        s = matcher_->Scan(raw, value, *ctx.scratch, OnLeafMatch, &hits);
        ctx.bytes_scanned_ += value.size();
      }
      if (s.ok() && scan_folded) {
        match::FoldForMatching(value, fold, /*with_map=*/false);
        if (field != Field::kUrl) ctx.folded_map_epoch[f] = 0;  // the map is stale now
        s = matcher_->Scan(folded, fold->text, *ctx.scratch, OnLeafMatch, &hits);
        ctx.bytes_scanned_ += fold->text.size();
      }
      return s;
    };
    if (field == Field::kUrl) {
      for (int i = 0; i < report.urls_size(); ++i) {
        hits.value = static_cast<uint32_t>(i);
        Status s = scan_value(report.urls(i), &ctx.folded_url);
        if (!s.ok()) return s;
      }
      hits.value = 0;
    } else {
      Status s = scan_value(*SingleValue(report, field), &ctx.folded[f]);
      if (!s.ok()) return s;
    }
  }
  return Status::Ok();
}

bool Evaluator::EvalLeaf(const Node& n, const v1::ContentReport& report, const Context& ctx) const {
  const Condition& c = *n.condition;
  if (n.scan_id >= 0) return ctx.scan_hit[n.scan_id] != 0;
  switch (c.kind) {
    case Condition::Kind::kEquals:
    case Condition::Kind::kIn: {
      if (n.source >= 0) return (SourceBits(n.source, report, ctx) & n.accept) != 0;
      auto in_values = [&](std::string_view v, bool ignore_case) {
        for (const std::string& want : c.values) {
          if (ignore_case ? EqualsIgnoreCase(v, want) : v == want) return true;
        }
        return false;
      };
      if (c.field == Field::kUrl) {
        for (const std::string& u : report.urls()) {
          if (in_values(u, false)) return true;
        }
        return false;
      }
      if (c.field == Field::kHash) {
        for (const v1::Hash& h : report.hashes()) {
          if (in_values(h.value(), true)) return true;
        }
        return false;
      }
      if (c.field == Field::kAttribute) {
        auto it = report.attributes().find(c.attribute_key);
        return it != report.attributes().end() && in_values(it->second, false);
      }
      return in_values(*SingleValue(report, c.field), false);
    }
    case Condition::Kind::kInList: {
      if (n.list < 0) return false;
      const match::CompiledList& list = lists_[n.list];
      if (n.probes >= 0 && ctx.probes_report == ctx.gate_report) {
        const std::vector<match::CompiledList::Probe>& probes = ctx.probes[n.probes];
        for (size_t i = 0; i < ctx.probe_counts[n.probes]; ++i) {
          if (list.Contains(probes[i])) return true;
        }
        return false;
      }
      if (c.field == Field::kUrl) {
        for (const std::string& u : report.urls()) {
          if (list.Contains(u)) return true;
        }
      } else {
        for (const v1::Hash& h : report.hashes()) {
          if (list.Contains(h.value())) return true;
        }
      }
      return false;
    }
    case Condition::Kind::kExists: {
      bool present;
      if (c.field == Field::kUrl)
        present = report.urls_size() > 0;
      else if (c.field == Field::kHash)
        present = report.hashes_size() > 0;
      else if (c.field == Field::kAttribute)
        present = report.attributes().count(c.attribute_key) > 0;
      else
        present = !SingleValue(report, c.field)->empty();
      return present == c.exists;
    }
    default:
      return false;
  }
}

bool Evaluator::EvalNode(uint32_t index, const v1::ContentReport& report,
                         const Context& ctx) const {
  const Node& n = nodes_[index];
  const uint32_t* child = child_ids_.data() + n.first_child;
  switch (n.kind) {
    case Condition::Kind::kAll:
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (!EvalNode(child[i], report, ctx)) return false;
      }
      return true;
    case Condition::Kind::kAny:
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (EvalNode(child[i], report, ctx)) return true;
      }
      return false;
    case Condition::Kind::kNone:
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (EvalNode(child[i], report, ctx)) return false;
      }
      return true;
    case Condition::Kind::kAtLeast: {
      int count = 0;
      for (uint32_t i = 0; i < n.num_children; ++i) {
        if (EvalNode(child[i], report, ctx) && ++count >= n.at_least) return true;
        if (count + static_cast<int>(n.num_children - i - 1) < n.at_least) return false;
      }
      return false;
    }
    default:
      return EvalLeaf(n, report, ctx);
  }
}

void Evaluator::LeafMatches(const Node& n, const v1::ContentReport& report, Context& ctx,
                            google::protobuf::RepeatedPtrField<v1::Match>* out) const {
  const Condition& c = *n.condition;
  if (n.scan_id >= 0) {
    const uint32_t leaf = static_cast<uint32_t>(n.scan_id);
    // A phrase leaf's spans are the occurrences the scan itself found, when
    // it kept them all; otherwise (and for regex leaves) the value is
    // searched again.
    const bool from_scan =
        matcher_->is_phrase_leaf(leaf) && matcher_->spans_from_scan() && !ctx.scan_spans_full;
    auto find_spans = [&](std::string_view text, uint32_t value) {
      if (!from_scan) {
        if (matcher_->is_phrase_leaf(leaf)) ++ctx.spans_searched_;
        matcher_->FindSpans(leaf, text, options_.max_spans_per_leaf, &ctx.spans);
        return;
      }
      ctx.found.clear();
      for (const Context::ScanSpan& s : ctx.scan_spans) {
        if (s.leaf == leaf && s.value == value) ctx.found.emplace_back(s.start, s.end);
      }
      match::Matcher::SelectSpans(&ctx.found, options_.max_spans_per_leaf, &ctx.spans);
    };
    auto spans_in = [&](const std::string& value, uint32_t index, const std::string& name,
                        match::FoldedText* fold, uint32_t* map_epoch) {
      ctx.spans.clear();
      if (c.normalize) {
        if (!map_epoch || *map_epoch != ctx.epoch) {
          match::FoldForMatching(value, fold);
          if (map_epoch) *map_epoch = ctx.epoch;
        }
        find_spans(fold->text, index);
        for (auto& [s, e] : ctx.spans) {
          if (s < e) {
            auto [os, oe] = fold->MapSpan(s, e);
            AddMatch(name, os, oe, out);
          }
        }
      } else {
        find_spans(value, index);
        for (auto& [s, e] : ctx.spans) AddMatch(name, s, e, out);
      }
      return !ctx.spans.empty();
    };
    int before = out->size();
    if (c.field == Field::kUrl) {
      for (int i = 0; i < report.urls_size(); ++i) {
        spans_in(report.urls(i), static_cast<uint32_t>(i), "urls[" + std::to_string(i) + "]",
                 &ctx.folded_url, nullptr);
      }
    } else {
      const std::string& value = *SingleValue(report, c.field);
      int f = static_cast<int>(c.field);
      if (!spans_in(value, 0, c.field_name, &ctx.folded[f], &ctx.folded_map_epoch[f]) &&
          out->size() == before) {
        // Hyperscan and RE2 disagreed on a corner of syntax: name the field.
        AddMatch(c.field_name, 0, static_cast<uint32_t>(value.size()), out);
      }
    }
    return;
  }
  if (c.kind == Condition::Kind::kInList && n.list >= 0) {
    const match::CompiledList& list = lists_[n.list];
    if (c.field == Field::kUrl) {
      for (int i = 0; i < report.urls_size(); ++i) {
        if (list.Contains(report.urls(i))) {
          AddMatch("urls[" + std::to_string(i) + "]", 0,
                   static_cast<uint32_t>(report.urls(i).size()), out);
        }
      }
    } else {
      for (int i = 0; i < report.hashes_size(); ++i) {
        if (list.Contains(report.hashes(i).value())) {
          AddMatch("hashes[" + std::to_string(i) + "]", 0,
                   static_cast<uint32_t>(report.hashes(i).value().size()), out);
        }
      }
    }
  }
}

void Evaluator::CollectMatches(uint32_t index, const v1::ContentReport& report, Context& ctx,
                               google::protobuf::RepeatedPtrField<v1::Match>* out) const {
  const Node& n = nodes_[index];
  if (n.kind == Condition::Kind::kNone) return;  // what is absent has no span
  if (n.condition->IsLeaf()) {
    if (EvalLeaf(n, report, ctx)) LeafMatches(n, report, ctx, out);
    return;
  }
  for (uint32_t i = 0; i < n.num_children; ++i) {
    CollectMatches(child_ids_[n.first_child + i], report, ctx, out);
  }
}

Status Evaluator::Evaluate(const v1::ContentReport& report, Context& ctx,
                           v1::Verdict* verdict) const {
  return EvaluateImpl(report, ctx, verdict, options_.gate_scans);
}

Status Evaluator::EvaluateImpl(const v1::ContentReport& report, Context& ctx, v1::Verdict* verdict,
                               bool gate) const {
  verdict->Clear();
  for (int f = 0; f < rules::kNumTextFields; ++f) {
    Field field = static_cast<Field>(f);
    if (field == Field::kUrl) {
      for (int i = 0; i < report.urls_size(); ++i) {
        if (!IsValidUtf8(report.urls(i))) {
          return Status::InvalidArgument("urls[" + std::to_string(i) + "]: not valid UTF-8");
        }
      }
    } else if (!IsValidUtf8(*SingleValue(report, field))) {
      return Status::InvalidArgument(std::string(rules::FieldName(field)) + ": not valid UTF-8");
    }
  }
  if (++ctx.source_report == 0) {  // wrapped: reset the marks
    std::fill(ctx.source_epoch.begin(), ctx.source_epoch.end(), 0);
    ctx.source_report = 1;
  }
  PrepareLists(report, ctx);
  Status s = Scan(report, ctx, gate);
  if (!s.ok()) return s;

  if (++ctx.epoch == 0) {  // wrapped: reset the marks
    std::fill(ctx.rule_epoch.begin(), ctx.rule_epoch.end(), 0);
    ctx.epoch = 1;
  }
  ctx.candidates.clear();
  auto add = [&](uint32_t r) {
    if (ctx.rule_epoch[r] != ctx.epoch) {
      ctx.rule_epoch[r] = ctx.epoch;
      ctx.candidates.push_back(r);
    }
  };
  for (uint32_t r : always_rules_) add(r);
  for (uint32_t id : ctx.fired) {
    for (uint32_t k = scan_rule_start_[id]; k < scan_rule_start_[id + 1]; ++k) add(scan_rules_[k]);
  }
  std::sort(ctx.candidates.begin(), ctx.candidates.end());

  verdict->set_report_id(report.report_id());
  verdict->set_ruleset_version(ruleset_->version());
  const auto& rules = ruleset_->rules();
  for (uint32_t r : ctx.candidates) {
    if (!EvalNode(rule_root_[r], report, ctx)) continue;
    const rules::Rule& rule = rules[r];
    v1::Flag* flag = verdict->add_flags();
    flag->set_rule_id(rule.id);
    flag->set_duty_id(rule.duty);
    flag->set_severity(static_cast<v1::Severity>(rule.severity));
    CollectMatches(rule_root_[r], report, ctx, flag->mutable_matches());

    v1::Obligation* ob = verdict->add_obligations();
    ob->set_obligation_id(ObligationId(report.service_id(), report.report_id(), rule.id));
    ob->set_rule_id(rule.id);
    ob->set_duty_id(rule.duty);
    for (const std::string& a : *rule_actions_[r]) ob->add_required_actions(a);
    // Saturating: a report evaluated without the service's checks (DryRun,
    // scan) may claim any time; the deadline never wraps around.
    int64_t deadline = 0;
    if (__builtin_add_overflow(report.received_at().seconds(), rule_deadline_[r], &deadline))
      deadline = report.received_at().seconds() < 0 ? INT64_MIN : INT64_MAX;
    ob->mutable_deadline()->set_seconds(deadline);
    ob->mutable_deadline()->set_nanos(report.received_at().nanos());
    ob->set_status(v1::OBLIGATION_STATUS_OPEN);
  }
  return Status::Ok();
}

Status Evaluator::Evaluate(const v1::ContentReport& report, v1::Verdict* verdict) const {
  // One Context a thread, for the Evaluator it last used; a reload's new
  // Evaluator replaces it on the thread's next call. A Context refers to
  // nothing of its Evaluator, so it may outlive it.
  thread_local uint64_t owner = 0;
  thread_local std::unique_ptr<Context> ctx;
  if (owner != instance_) {
    ctx = NewContext();
    owner = instance_;
  }
  return Evaluate(report, *ctx, verdict);
}

void Evaluator::TraceNode(uint32_t index, int depth, const v1::ContentReport& report, Context& ctx,
                          RuleTrace* trace) const {
  const Node& n = nodes_[index];
  size_t slot = trace->nodes.size();
  trace->nodes.push_back(NodeTrace{n.condition, depth, false, {}});
  if (n.condition->IsLeaf()) {
    bool v = EvalLeaf(n, report, ctx);
    trace->nodes[slot].value = v;
    if (v) {
      google::protobuf::RepeatedPtrField<v1::Match> matches;
      LeafMatches(n, report, ctx, &matches);
      trace->nodes[slot].matches.assign(matches.begin(), matches.end());
    }
    return;
  }
  int true_children = 0;
  for (uint32_t i = 0; i < n.num_children; ++i) {
    uint32_t child = child_ids_[n.first_child + i];
    size_t child_slot = trace->nodes.size();
    TraceNode(child, depth + 1, report, ctx, trace);
    if (trace->nodes[child_slot].value) ++true_children;
  }
  bool v = false;
  switch (n.kind) {
    case Condition::Kind::kAll:
      v = true_children == static_cast<int>(n.num_children);
      break;
    case Condition::Kind::kAny:
      v = true_children > 0;
      break;
    case Condition::Kind::kNone:
      v = true_children == 0;
      break;
    case Condition::Kind::kAtLeast:
      v = true_children >= n.at_least;
      break;
    default:
      break;
  }
  trace->nodes[slot].value = v;
}

Status Evaluator::Explain(const v1::ContentReport& report, Context& ctx,
                          std::vector<RuleTrace>* traces) const {
  v1::Verdict verdict;
  // Validates and scans every field: the trace shows every leaf's value.
  Status s = EvaluateImpl(report, ctx, &verdict, /*gate=*/false);
  if (!s.ok()) return s;
  traces->clear();
  for (uint32_t r = 0; r < rule_root_.size(); ++r) {
    RuleTrace trace;
    trace.rule = &ruleset_->rules()[r];
    TraceNode(rule_root_[r], 0, report, ctx, &trace);
    trace.matched = trace.nodes.front().value;
    traces->push_back(std::move(trace));
  }
  return Status::Ok();
}

}  // namespace carewatch::eval

namespace carewatch::eval {

std::vector<std::pair<std::string, std::string>> Evaluator::ExtractIdentifiers(
    const v1::ContentReport& report, const v1::Verdict& verdict, size_t limit) const {
  std::vector<std::pair<std::string, std::string>> out;
  if (extractors_.empty()) return out;
  std::set<std::string> flagged;
  for (const auto& f : verdict.flags()) flagged.insert(f.rule_id());
  std::set<std::pair<std::string, std::string>> seen;
  for (const Extractor& x : extractors_) {
    if (!flagged.count(x.rule_id)) continue;
    std::vector<const std::string*> values;
    if (const std::string* v = SingleValue(report, x.leaf->field)) {
      values.push_back(v);
    } else if (x.leaf->field == rules::Field::kUrl) {
      for (const auto& u : report.urls()) values.push_back(&u);
    }
    for (const std::string* value : values) {
      const std::string text =
          x.leaf->normalize ? match::FoldForMatching(*value) : std::string(*value);
      re2::StringPiece input(text);
      const int groups = x.re->NumberOfCapturingGroups();
      while (out.size() < limit && !input.empty()) {
        re2::StringPiece submatch[2];
        size_t at = static_cast<size_t>(input.data() - text.data());
        if (!x.re->Match(text, at, text.size(), RE2::UNANCHORED, submatch, groups >= 1 ? 2 : 1))
          break;
        const re2::StringPiece found = groups >= 1 ? submatch[1] : submatch[0];
        const size_t end = static_cast<size_t>(submatch[0].data() - text.data()) +
                           std::max<size_t>(submatch[0].size(), 1);
        input = re2::StringPiece(text.data() + std::min(end, text.size()),
                                 text.size() - std::min(end, text.size()));
        if (found.empty()) continue;
        std::string v(found.data(), found.size());
        if (!x.leaf->extract_platform.empty()) v = x.leaf->extract_platform + ":" + v;
        if (seen.insert({x.leaf->extract_kind, v}).second)
          out.emplace_back(x.leaf->extract_kind, v);
      }
    }
  }
  return out;
}

}  // namespace carewatch::eval
