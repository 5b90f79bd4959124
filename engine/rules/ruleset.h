#ifndef CAREWATCH_ENGINE_RULES_RULESET_H_
#define CAREWATCH_ENGINE_RULES_RULESET_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/rules/diagnostic.h"

namespace carewatch::rules {

enum class Severity { kLow = 1, kMedium = 2, kHigh = 3, kCritical = 4 };
const char* SeverityName(Severity s);

// The report fields a condition can name (docs/design.md "Fields").
enum class Field {
  // Text fields: scanned by regex and phrase leaves.
  kText,
  kCaption,
  kUsername,
  kDisplayName,
  kProfileBio,
  kUrl,  // every URL of the report, each scanned on its own
  // Digests.
  kHash,
  // Categorical fields.
  kServiceId,
  kSurface,
  kContentType,
  kReporterType,
  kReason,
  kSubjectAgeBand,
  kAttribute,  // attributes.KEY
};
inline constexpr int kNumTextFields = 6;  // kText .. kUrl
// The report's single-valued text fields, in order: the one list that
// request checks, scanning, digests and explain all walk.
inline constexpr Field kSingleTextFields[] = {Field::kText, Field::kCaption, Field::kUsername,
                                              Field::kDisplayName, Field::kProfileBio};
// The names of the fields, space-separated, for messages: every field
// ("text ... subject_age_band attributes.KEY"), or only the text fields.
std::string FieldNameList(bool text_only);
// Every field name (for "did you mean").
std::vector<std::string> FieldNames();
inline bool IsTextField(Field f) { return static_cast<int>(f) < kNumTextFields; }
// The name as written in rules and in Match.field ("profile_bio").
const char* FieldName(Field f);
// Parses a field name; for "attributes.KEY" sets *attribute_key.
std::optional<Field> ParseField(const std::string& name, std::string* attribute_key);

// Regex flags as written in `flags: [...]`.
enum RegexFlag : uint32_t {
  kCaseSensitive = 1u << 0,
  kDotAll = 1u << 1,
  kMultiline = 1u << 2,
  kUcp = 1u << 3,
};

// A node of a rule's `when` tree.
struct Condition {
  enum class Kind { kAll, kAny, kNone, kAtLeast, kRegex, kPhrases, kEquals, kIn, kInList, kExists };

  Kind kind = Kind::kAll;
  SourcePos pos;
  SourcePos value_pos;  // regex and phrases: where the pattern or the list is written
  // Combinators.
  std::vector<Condition> children;
  int at_least = 0;
  // Leaves.
  Field field = Field::kText;
  std::string field_name;     // as written, for messages and explain
  std::string attribute_key;  // for Field::kAttribute
  std::string regex;
  uint32_t regex_flags = 0;
  std::vector<std::string> phrases;
  std::vector<std::string> values;  // equals (one value) and in
  std::string list;                 // in_list
  bool exists = true;
  bool normalize = false;
  // `extract:` (regex leaves): what the match names, as a signal identifier
  // (docs/signals.md): its first capture group, or the whole match.
  std::string extract_kind;      // email | phone | handle | profile_url; "" : none
  std::string extract_platform;  // handle only: the platform the handle lives on

  bool IsLeaf() const { return kind >= Kind::kRegex; }
  bool IsScanned() const { return kind == Kind::kRegex || kind == Kind::kPhrases; }
};

struct Systemic {
  int64_t window_seconds = 0;
  int min_breaches = 0;
  double min_breach_rate = 0;
};

struct Duty {
  std::string id;
  std::string statute;
  std::string summary;
  int64_t deadline_seconds = 0;
  // How long after a deadline carewatch still takes an action's claimed
  // taken_at on trust: an action it receives later than deadline +
  // record_grace (server time) is a late_recorded breach, and the sweeper
  // breaches a still-open obligation only once this much has passed.
  int64_t record_grace_seconds = kDefaultRecordGraceSeconds;
  std::vector<std::string> actions;
  std::optional<Systemic> systemic;
  SourcePos pos;

  static constexpr int64_t kDefaultRecordGraceSeconds = 3600;
};

// A list's entries in one buffer: a list of a million entries costs its
// bytes plus 8 bytes an entry, not a heap string each.
class ListEntries {
 public:
  ListEntries() = default;
  ListEntries(std::initializer_list<std::string_view> entries) {
    for (std::string_view e : entries) push_back(e);
  }
  ListEntries(const std::vector<std::string>& entries) {  // NOLINT: a list is its entries
    for (const std::string& e : entries) push_back(e);
  }
  void push_back(std::string_view e) {
    spans_.emplace_back(static_cast<uint32_t>(data_.size()), static_cast<uint32_t>(e.size()));
    data_.append(e);
  }
  void shrink_to_fit() {
    data_.shrink_to_fit();
    spans_.shrink_to_fit();
  }
  size_t size() const { return spans_.size(); }
  bool empty() const { return spans_.empty(); }
  std::string_view operator[](size_t i) const {
    return {data_.data() + spans_[i].first, spans_[i].second};
  }
  size_t bytes() const { return data_.capacity() + spans_.capacity() * sizeof(spans_[0]); }
  // The entries end to end, and each one's (offset, length) in it: together
  // they are the list, for digests that read it in two pieces.
  std::string_view joined() const { return data_; }
  const std::vector<std::pair<uint32_t, uint32_t>>& spans() const { return spans_; }
  bool operator==(const std::vector<std::string>& other) const {
    if (other.size() != size()) return false;
    for (size_t i = 0; i < size(); ++i) {
      if ((*this)[i] != other[i]) return false;
    }
    return true;
  }

 private:
  std::string data_;
  std::vector<std::pair<uint32_t, uint32_t>> spans_;  // offset, length
};

// An exact-match list (URLs or hex digests). Entries are as written in the
// list file, comments and blank lines removed.
struct ListDef {
  enum class Kind { kUrl, kHash };
  std::string name;
  Kind kind = Kind::kUrl;
  std::string path;  // resolved path of the list file
  ListEntries entries;
  SourcePos pos;
};

// One embedded test of a rule.
struct RuleTest {
  struct Action {
    std::string action;
    int64_t after_seconds = 0;  // taken_at = received_at + after
  };
  std::string name;
  SourcePos pos;
  std::string report_json;           // the `report:` mapping as JSON
  std::optional<bool> expect_match;  // expect: match | no_match
  std::vector<Action> actions;
  std::optional<int64_t> at_seconds;  // at: 48h
  std::string expect_obligation;      // open | met | discharged | breached
};

struct Rule {
  std::string id;
  std::string title;
  std::string duty;
  Severity severity = Severity::kMedium;
  Condition when;
  std::optional<int64_t> deadline_override;
  std::optional<std::vector<std::string>> actions_override;
  std::vector<RuleTest> tests;
  std::string pack;
  SourcePos pos;
  SourcePos duty_pos;  // where `duty:` names the duty
};

// Who is accountable for a duty (or a prefix such as "csea.*") at a service,
// from `from` until `to` (unix seconds; to == nullopt while in post).
struct Accountability {
  std::string service_id;
  std::string duty_pattern;
  std::string name;
  std::string role;
  int64_t from = 0;
  std::optional<int64_t> to;
  SourcePos pos;

  bool CoversDuty(const std::string& duty_id) const;
  // How specific the scope is: an exact duty id beats any prefix, a longer
  // prefix a shorter one, "*" is the least specific. Where several records
  // are in post for a breach, the most specific scope is accountable.
  size_t Specificity() const;
};

// The records accountable for a breach of `duty_id` at `service_id` at
// time `at`: those in post whose scope covers the duty, the most specific
// scope only (several only where tenures of one scope overlap).
std::vector<const Accountability*> AccountableFor(const std::vector<Accountability>& records,
                                                  const std::string& service_id,
                                                  const std::string& duty_id, int64_t at);

struct PackInfo {
  std::string name;
  std::string version;
  std::string file;
};

// An immutable, validated set of packs. Built only by the loader; shared
// read-only between threads.
class RuleSet {
 public:
  RuleSet() = default;
  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

  const std::vector<PackInfo>& packs() const { return packs_; }
  const std::vector<Duty>& duties() const { return duties_; }
  const std::vector<ListDef>& lists() const { return lists_; }
  const std::vector<Rule>& rules() const { return rules_; }
  const std::vector<Accountability>& accountability() const { return accountability_; }
  // Content hash of every file loaded (packs, lists, accountability):
  // 16 hex digits of SHA-256. Two RuleSets with the same version behave
  // identically.
  const std::string& version() const { return version_; }

  // nullptr when absent.
  const Duty* FindDuty(const std::string& id) const;
  const Rule* FindRule(const std::string& id) const;
  const ListDef* FindList(const std::string& name) const;

  // The deadline and actions an obligation opened by `rule` gets.
  int64_t DeadlineFor(const Rule& rule) const;
  const std::vector<std::string>& ActionsFor(const Rule& rule) const;

 private:
  friend class RuleSetBuilder;
  std::vector<PackInfo> packs_;
  std::vector<Duty> duties_;
  std::vector<ListDef> lists_;
  std::vector<Rule> rules_;
  std::vector<Accountability> accountability_;
  std::string version_;
  std::map<std::string, size_t> duty_index_, rule_index_, list_index_;
};

// Assembles a RuleSet; used by the loader.
class RuleSetBuilder {
 public:
  RuleSetBuilder() : set_(std::make_shared<RuleSet>()) {}
  RuleSet& mutable_set() { return *set_; }
  std::vector<PackInfo>& packs() { return set_->packs_; }
  std::vector<Duty>& duties() { return set_->duties_; }
  std::vector<ListDef>& lists() { return set_->lists_; }
  std::vector<Rule>& rules() { return set_->rules_; }
  std::vector<Accountability>& accountability() { return set_->accountability_; }
  // Indexes names and seals the set. REQUIRES: ids are unique.
  std::shared_ptr<const RuleSet> Build(std::string version);

 private:
  std::shared_ptr<RuleSet> set_;
};

}  // namespace carewatch::rules

#endif  // CAREWATCH_ENGINE_RULES_RULESET_H_
