// Signals for the generators, taken from the rules themselves: every rule's
// tests that expect a match, and reports built from its conditions (one of
// its phrases, a string its regex matches, a listed value, the categorical
// values it asks for). Each candidate is evaluated and kept only if it
// really flags its rule, so any pack gets signals, not only the shipped one.
#include <google/protobuf/util/json_util.h>

#include <set>

#include "engine/eval/report_json.h"
#include "tools/carewatch/common.h"

namespace carewatch::cli {

namespace {

// A string `regex` matches, for the common syntax of rule patterns:
// literals, escapes, classes, groups with alternatives, quantifiers.
// Alternative `variant % n` is taken, so variants differ. Best effort: the
// result is checked by evaluation.
class RegexSampler {
 public:
  RegexSampler(const std::string& p, uint64_t variant) : p_(p), variant_(variant) {}
  std::string Sample() {
    std::string out = Alternatives(0);
    std::string lower;
    for (char c : out) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower;
  }

 private:
  std::string Alternatives(int depth) {
    std::vector<std::string> alts{Sequence(depth)};
    while (i_ < p_.size() && p_[i_] == '|') {
      ++i_;
      alts.push_back(Sequence(depth));
    }
    return alts[(variant_ + depth) % alts.size()];
  }

  std::string Sequence(int depth) {
    std::string out;
    while (i_ < p_.size() && p_[i_] != '|' && p_[i_] != ')' && out.size() < 1000) {
      std::string atom = Atom(depth);
      out += Quantify(atom);
    }
    return out;
  }

  std::string Atom(int depth) {
    char c = p_[i_++];
    switch (c) {
      case '^':
      case '$':
        return "";
      case '.':
        return "a";
      case '(': {
        if (i_ < p_.size() && p_[i_] == '?') {  // (?: (?i) (?i: ...
          ++i_;
          while (i_ < p_.size() && p_[i_] != ':' && p_[i_] != ')') ++i_;
          if (i_ < p_.size() && p_[i_] == ')') {
            ++i_;
            return "";
          }
          ++i_;
        }
        std::string inner = depth < 50 ? Alternatives(depth + 1) : "";
        if (i_ < p_.size() && p_[i_] == ')') ++i_;
        return inner;
      }
      case '[':
        return Class();
      case '\\':
        return Escape();
      default:
        return std::string(1, c);
    }
  }

  std::string Escape() {
    if (i_ >= p_.size()) return "";
    char c = p_[i_++];
    switch (c) {
      case 'b':
      case 'B':
      case 'A':
      case 'z':
      case 'Z':
        return "";
      case 's':
        return " ";
      case 'd':
        return "1";
      case 'w':
      case 'D':
      case 'S':
        return "a";
      case 'W':
        return " ";
      case 'x':  // \xHH
        if (i_ + 2 <= p_.size()) {
          std::string hex = p_.substr(i_, 2);
          i_ += 2;
          return std::string(1, static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
        }
        return "";
      default:
        return std::string(1, c);
    }
  }

  std::string Class() {
    bool negated = i_ < p_.size() && p_[i_] == '^';
    if (negated) ++i_;
    std::string first;
    bool any = false;
    for (bool start = true; i_ < p_.size() && (start || p_[i_] != ']'); start = false) {
      std::string c = p_[i_] == '\\' ? (++i_, Escape()) : std::string(1, p_[i_++]);
      if (!any) first = c;
      any = true;
    }
    if (i_ < p_.size()) ++i_;  // ']'
    if (negated) return first == "x" ? "y" : "x";
    return first;
  }

  std::string Quantify(const std::string& atom) {
    if (i_ >= p_.size()) return atom;
    std::string out = atom;
    char q = p_[i_];
    if (q == '*') {
      out = "";
      ++i_;
    } else if (q == '+' || q == '?') {
      ++i_;
    } else if (q == '{') {
      size_t close = p_.find('}', i_);
      if (close == std::string::npos) return atom;
      int n = std::atoi(p_.c_str() + i_ + 1);
      i_ = close + 1;
      out.clear();
      for (int k = 0; k < std::min(n, 64); ++k) out += atom;
    } else {
      return atom;
    }
    if (i_ < p_.size() && (p_[i_] == '?' || p_[i_] == '+')) ++i_;  // lazy, possessive
    return out;
  }

  const std::string& p_;
  uint64_t variant_;
  size_t i_ = 0;
};

// Sets what a leaf asks for on `r`: text is appended, values are set.
void Put(const rules::Condition& c, const std::string& value, v1::ContentReport* r) {
  using F = rules::Field;
  auto append = [&](std::string* s) { *s += (s->empty() ? "" : " ") + value; };
  switch (c.field) {
    case F::kText:
      append(r->mutable_text());
      break;
    case F::kCaption:
      append(r->mutable_caption());
      break;
    case F::kUsername:
      r->set_username(value);
      break;
    case F::kDisplayName:
      r->set_display_name(value);
      break;
    case F::kProfileBio:
      append(r->mutable_profile_bio());
      break;
    case F::kUrl:
      r->add_urls(value);
      break;
    case F::kHash: {
      v1::Hash* h = r->add_hashes();
      h->set_algorithm(value.size() == 64 ? "sha256" : "md5");
      h->set_value(value);
      break;
    }
    case F::kServiceId:
      r->set_service_id(value);
      break;
    case F::kSurface:
      r->set_surface(value);
      break;
    case F::kContentType:
      r->set_content_type(value);
      break;
    case F::kReporterType:
      r->set_reporter_type(value);
      break;
    case F::kReason:
      r->set_reason(value);
      break;
    case F::kSubjectAgeBand:
      r->set_subject_age_band(value);
      break;
    case F::kAttribute:
      (*r->mutable_attributes())[c.attribute_key] = value;
      break;
  }
}

// Makes `c` hold on `r` as far as it can; `v` picks among phrases, values
// and alternatives.
void Build(const rules::Condition& c, const rules::RuleSet& rs, uint64_t v, int depth,
           v1::ContentReport* r) {
  using K = rules::Condition::Kind;
  if (depth > 64) return;
  switch (c.kind) {
    case K::kAll:
      for (const auto& child : c.children) Build(child, rs, v, depth + 1, r);
      break;
    case K::kAny:
      if (!c.children.empty()) Build(c.children[v % c.children.size()], rs, v, depth + 1, r);
      break;
    case K::kAtLeast:
      for (int k = 0; k < c.at_least && !c.children.empty(); ++k)
        Build(c.children[(v + k) % c.children.size()], rs, v, depth + 1, r);
      break;
    case K::kNone:
      break;
    case K::kPhrases:
      if (!c.phrases.empty()) Put(c, c.phrases[v % c.phrases.size()], r);
      break;
    case K::kRegex:
      Put(c, RegexSampler(c.regex, v).Sample(), r);
      break;
    case K::kEquals:
    case K::kIn:
      if (!c.values.empty()) Put(c, c.values[v % c.values.size()], r);
      break;
    case K::kInList:
      for (const rules::ListDef& l : rs.lists()) {
        if (l.name == c.list && !l.entries.empty())
          Put(c, std::string(l.entries[v % l.entries.size()]), r);
      }
      break;
    case K::kExists:
      if (c.exists) Put(c, c.field == rules::Field::kUrl ? "https://example.test/x" : "yes", r);
      break;
  }
}

}  // namespace

std::vector<std::vector<v1::ContentReport>> BuildPlants(const eval::Evaluator& evaluator) {
  const rules::RuleSet& rs = evaluator.ruleset();
  auto ctx = evaluator.NewContext();
  std::vector<std::vector<v1::ContentReport>> plants;
  for (const rules::Rule& rule : rs.rules()) {
    std::vector<v1::ContentReport> candidates;
    for (const rules::RuleTest& t : rule.tests) {
      v1::ContentReport r;
      if (t.expect_match.value_or(false) && eval::ParseReportJson(t.report_json, &r).ok())
        candidates.push_back(std::move(r));
    }
    for (uint64_t v = 0; v < 8; ++v) {
      v1::ContentReport r;
      Build(rule.when, rs, v, 0, &r);
      candidates.push_back(std::move(r));
    }
    std::vector<v1::ContentReport> kept;
    std::set<std::string> seen;
    for (v1::ContentReport& r : candidates) {
      bool own_service = !r.service_id().empty();
      r.set_report_id("plant");
      if (!own_service) r.set_service_id("example-social");
      v1::Verdict verdict;
      if (!evaluator.Evaluate(r, *ctx, &verdict).ok()) continue;
      bool flags = false;
      for (const v1::Flag& f : verdict.flags()) flags = flags || f.rule_id() == rule.id;
      if (!flags || !seen.insert(r.SerializeAsString()).second) continue;
      r.clear_report_id();
      if (!own_service) r.clear_service_id();
      kept.push_back(std::move(r));
    }
    if (!kept.empty()) plants.push_back(std::move(kept));
  }
  return plants;
}

}  // namespace carewatch::cli
