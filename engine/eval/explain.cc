#include "engine/eval/explain.h"

#include "engine/match/normalize.h"
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
  std::string key;
  auto parsed = rules::ParseField(field, &key);
  if (parsed && *parsed != rules::Field::kUrl && *parsed != rules::Field::kHash &&
      *parsed != rules::Field::kAttribute) {
    return *SingleValue(r, *parsed);
  }
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

// The text a `normalize: true` leaf was matched against, with what it
// matched in [brackets]: what the rule author needs to see when a spelling
// does not fold the way they expected. At most about 160 bytes, around the
// first match.
std::string FoldedWithMarks(const std::string& value, const std::vector<v1::Match>& matches) {
  match::FoldedText folded;
  match::FoldForMatching(value, &folded);
  const std::string& t = folded.text;
  std::vector<bool> marked(t.size(), false);
  for (const v1::Match& m : matches) {
    for (size_t i = 0; i < t.size(); ++i) {
      if (folded.orig_start[i] >= m.start() && folded.orig_end[i] <= m.end()) marked[i] = true;
    }
  }
  size_t first = 0;
  while (first < t.size() && !marked[first]) ++first;
  constexpr size_t kWidth = 160;
  size_t begin = first < t.size() && first > kWidth / 2 ? first - kWidth / 2 : 0;
  while (begin > 0 && begin < t.size() && (static_cast<unsigned char>(t[begin]) & 0xC0) == 0x80)
    --begin;
  size_t end = std::min(t.size(), begin + kWidth);
  while (end < t.size() && (static_cast<unsigned char>(t[end]) & 0xC0) == 0x80) ++end;
  std::string out = begin > 0 ? "..." : "";
  for (size_t i = begin; i < end; ++i) {
    if (marked[i] && (i == begin || !marked[i - 1])) out += '[';
    out += t[i];
    if (marked[i] && (i + 1 == t.size() || !marked[i + 1])) out += ']';
  }
  if (end < t.size()) out += "...";
  return out;
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
      const rules::Condition& c = *n.condition;
      if (c.normalize && (c.kind == rules::Condition::Kind::kRegex ||
                          c.kind == rules::Condition::Kind::kPhrases)) {
        std::string value = FieldValue(report, c.field_name);
        if (!value.empty()) {
          out += std::string(8 + 2 * n.depth, ' ') + "folded " + c.field_name + ": \"" +
                 FoldedWithMarks(value, n.matches) + "\"\n";
        }
      }
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
