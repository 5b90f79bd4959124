#include "engine/rules/ruleset.h"

namespace carewatch::rules {

const char* SeverityName(Severity s) {
  switch (s) {
    case Severity::kLow:
      return "low";
    case Severity::kMedium:
      return "medium";
    case Severity::kHigh:
      return "high";
    case Severity::kCritical:
      return "critical";
  }
  return "unknown";
}

namespace {
struct FieldEntry {
  const char* name;
  Field field;
};
constexpr FieldEntry kFields[] = {
    {"text", Field::kText},
    {"caption", Field::kCaption},
    {"username", Field::kUsername},
    {"display_name", Field::kDisplayName},
    {"profile_bio", Field::kProfileBio},
    {"url", Field::kUrl},
    {"hash", Field::kHash},
    {"service_id", Field::kServiceId},
    {"surface", Field::kSurface},
    {"content_type", Field::kContentType},
    {"reporter_type", Field::kReporterType},
    {"reason", Field::kReason},
    {"subject_age_band", Field::kSubjectAgeBand},
};
}  // namespace

std::string FieldNameList(bool text_only) {
  std::string out;
  for (const auto& e : kFields) {
    if (!text_only || IsTextField(e.field)) out += (out.empty() ? "" : " ") + std::string(e.name);
  }
  return text_only ? out : out + " attributes.KEY";
}

std::vector<std::string> FieldNames() {
  std::vector<std::string> out;
  for (const auto& e : kFields) out.push_back(e.name);
  return out;
}

const char* FieldName(Field f) {
  for (const auto& e : kFields) {
    if (e.field == f) return e.name;
  }
  return "attributes";
}

std::optional<Field> ParseField(const std::string& name, std::string* attribute_key) {
  for (const auto& e : kFields) {
    if (name == e.name) return e.field;
  }
  constexpr std::string_view kPrefix = "attributes.";
  if (name.size() > kPrefix.size() && name.compare(0, kPrefix.size(), kPrefix) == 0) {
    *attribute_key = name.substr(kPrefix.size());
    return Field::kAttribute;
  }
  return std::nullopt;
}

bool Accountability::CoversDuty(const std::string& duty_id) const {
  if (duty_pattern == "*") return true;
  if (duty_pattern.size() >= 2 && duty_pattern.compare(duty_pattern.size() - 2, 2, ".*") == 0) {
    std::string prefix = duty_pattern.substr(0, duty_pattern.size() - 1);  // keep the dot
    return duty_id.compare(0, prefix.size(), prefix) == 0;
  }
  return duty_pattern == duty_id;
}

size_t Accountability::Specificity() const {
  if (duty_pattern == "*") return 0;
  if (duty_pattern.size() >= 2 && duty_pattern.compare(duty_pattern.size() - 2, 2, ".*") == 0)
    return duty_pattern.size();
  return SIZE_MAX;
}

std::vector<const Accountability*> AccountableFor(const std::vector<Accountability>& records,
                                                  const std::string& service_id,
                                                  const std::string& duty_id, int64_t at) {
  size_t best = 0;
  std::vector<const Accountability*> in_post;
  for (const Accountability& a : records) {
    if (a.service_id != service_id || !a.CoversDuty(duty_id)) continue;
    if (at < a.from || (a.to && at >= *a.to)) continue;
    size_t spec = a.Specificity();
    if (in_post.empty() || spec > best) {
      in_post.clear();
      best = spec;
    }
    if (spec == best) in_post.push_back(&a);
  }
  return in_post;
}

const Duty* RuleSet::FindDuty(const std::string& id) const {
  auto it = duty_index_.find(id);
  return it == duty_index_.end() ? nullptr : &duties_[it->second];
}

const Rule* RuleSet::FindRule(const std::string& id) const {
  auto it = rule_index_.find(id);
  return it == rule_index_.end() ? nullptr : &rules_[it->second];
}

const ListDef* RuleSet::FindList(const std::string& name) const {
  auto it = list_index_.find(name);
  return it == list_index_.end() ? nullptr : &lists_[it->second];
}

int64_t RuleSet::DeadlineFor(const Rule& rule) const {
  if (rule.deadline_override) return *rule.deadline_override;
  const Duty* duty = FindDuty(rule.duty);
  return duty ? duty->deadline_seconds : 0;
}

const std::vector<std::string>& RuleSet::ActionsFor(const Rule& rule) const {
  static const std::vector<std::string> kNone;
  if (rule.actions_override) return *rule.actions_override;
  const Duty* duty = FindDuty(rule.duty);
  return duty ? duty->actions : kNone;
}

std::shared_ptr<const RuleSet> RuleSetBuilder::Build(std::string version) {
  RuleSet& s = *set_;
  for (size_t i = 0; i < s.duties_.size(); ++i) s.duty_index_[s.duties_[i].id] = i;
  for (size_t i = 0; i < s.rules_.size(); ++i) s.rule_index_[s.rules_[i].id] = i;
  for (size_t i = 0; i < s.lists_.size(); ++i) s.list_index_[s.lists_[i].name] = i;
  s.version_ = std::move(version);
  std::shared_ptr<const RuleSet> out = std::move(set_);
  set_ = std::make_shared<RuleSet>();
  return out;
}

}  // namespace carewatch::rules
