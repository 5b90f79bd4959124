#include "engine/eval/explain.h"

#include "engine/rules/duration.h"

namespace carewatch::eval {

namespace {

std::string JoinQuoted(const std::vector<std::string>& items, size_t max_items = 6) {
  std::string out = "[";
  for (size_t i = 0; i < items.size() && i < max_items; ++i) {
    out += (i ? ", " : "") + ("\"" + items[i] + "\"");
  }
  if (items.size() > max_items)
    out += ", ... " + std::to_string(items.size() - max_items) + " more";
  return out + "]";
}

// The matched bytes of `field` (e.g. "text", "urls[2]") in `report`.
std::string FieldValue(const v1::ContentReport& r, const std::string& field) {
  if (field == "text") return r.text();
  if (field == "caption") return r.caption();
  if (field == "username") return r.username();
  if (field == "display_name") return r.display_name();
  if (field == "profile_bio") return r.profile_bio();
  int index = -1;
  if (std::sscanf(field.c_str(), "urls[%d]", &index) == 1 && index >= 0 && index < r.urls_size()) {
    return r.urls(index);
  }
  if (std::sscanf(field.c_str(), "hashes[%d]", &index) == 1 && index >= 0 &&
      index < r.hashes_size()) {
    return r.hashes(index).value();
  }
  return "";
}

}  // namespace

std::string DescribeCondition(const rules::Condition& c) {
  using K = rules::Condition::Kind;
  std::string norm = c.normalize ? " (normalize)" : "";
  switch (c.kind) {
    case K::kAll:
      return "all of " + std::to_string(c.children.size());
    case K::kAny:
      return "any of " + std::to_string(c.children.size());
    case K::kNone:
      return "none of " + std::to_string(c.children.size());
    case K::kAtLeast:
      return "at_least " + std::to_string(c.at_least) + " of " + std::to_string(c.children.size());
    case K::kRegex:
      return c.field_name + " regex /" + c.regex + "/" + norm;
    case K::kPhrases:
      return c.field_name + " phrases " + JoinQuoted(c.phrases) + norm;
    case K::kEquals:
      return c.field_name + " equals \"" + c.values.front() + "\"";
    case K::kIn:
      return c.field_name + " in " + JoinQuoted(c.values);
    case K::kInList:
      return c.field_name + " in_list " + c.list;
    case K::kExists:
      return c.field_name + (c.exists ? " exists" : " is absent");
  }
  return "?";
}

std::string FormatExplanation(const v1::ContentReport& report,
                              const std::vector<RuleTrace>& traces) {
  std::string out;
  int matched = 0;
  for (const RuleTrace& t : traces) {
    matched += t.matched;
    out += (t.matched ? "MATCH    " : "no match ") + t.rule->id + "  (" + t.rule->duty + ", " +
           rules::SeverityName(t.rule->severity) + ")  " + t.rule->pos.file + ":" +
           std::to_string(t.rule->pos.line) + "\n";
    for (const NodeTrace& n : t.nodes) {
      out += std::string(4 + 2 * n.depth, ' ') + (n.value ? "+ " : "- ") +
             DescribeCondition(*n.condition) + "  [line " + std::to_string(n.condition->pos.line) +
             "]\n";
      for (const v1::Match& m : n.matches) {
        std::string value = FieldValue(report, m.field());
        std::string quoted = m.end() <= value.size() && m.start() < m.end()
                                 ? value.substr(m.start(), m.end() - m.start())
                                 : "";
        if (quoted.size() > 80) quoted = quoted.substr(0, 77) + "...";
        out += std::string(8 + 2 * n.depth, ' ') + m.field() + "[" + std::to_string(m.start()) +
               ":" + std::to_string(m.end()) + "] \"" + quoted + "\"\n";
      }
    }
  }
  out += std::to_string(matched) + " of " + std::to_string(traces.size()) + " rules matched\n";
  return out;
}

}  // namespace carewatch::eval
