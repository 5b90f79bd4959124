#include "engine/rules/loader.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/common/digest.h"
#include "engine/common/url.h"
#include "engine/common/utf8.h"
#include "engine/match/normalize.h"
#include "engine/rules/duration.h"
#include "engine/rules/pattern.h"
#include "engine/rules/vocabulary.h"

namespace carewatch::rules {

namespace fs = std::filesystem;

std::optional<std::string> ReadFileToString(const std::string& path, std::string* error) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    *error = "is a directory";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open: " + std::string(std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    *error = "read failed";
    return std::nullopt;
  }
  return ss.str();
}

namespace {

std::string JsonEscape(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// yaml-cpp parses recursively; refuse nesting deep enough to exhaust the
// stack before handing it the text. Counts flow brackets outside quotes and
// block indicators ("- ", "? ") that open a line. Returns 0 when fine, else
// the 1-based line where the limit is passed.
int FindExcessiveNesting(const std::string& text, int limit) {
  int flow = 0;
  int line = 1;
  bool at_line_start = true;
  int indicators = 0;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      at_line_start = true;
      indicators = 0;
      if (quote == '\'') quote = 0;  // keep going: a bad quote is the parser's to report
      continue;
    }
    if (quote) {
      if (c == quote) quote = 0;
      if (c == '\\' && quote == '"') ++i;
      continue;
    }
    if (c == '#') {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      continue;
    }
    if (at_line_start) {
      if (c == ' ' || c == '\t') continue;
      if ((c == '-' || c == '?' || c == ':') && (i + 1 == text.size() || text[i + 1] == ' ')) {
        if (++indicators > limit) return line;
        ++i;
        continue;
      }
      at_line_start = false;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++flow > limit) return line;
    } else if (c == ']' || c == '}') {
      if (flow > 0) --flow;
    }
  }
  return 0;
}

// Ids and pack names: short, and of a defined character set, checked by
// plain loops (std::regex recurses per character and overflows the stack
// on long input).
constexpr size_t kMaxIdBytes = 128;
constexpr size_t kMaxPackNameBytes = 64;

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Empty when `id` is a valid rule or duty id, else why not.
std::string IdProblem(const std::string& what, const std::string& id) {
  if (id.size() > kMaxIdBytes) {
    return what + " '" + Excerpt(id) + "' is longer than " + std::to_string(kMaxIdBytes) + " bytes";
  }
  bool ok = !id.empty() && IsAlnum(id[0]);
  for (char c : id) ok = ok && (IsAlnum(c) || c == '.' || c == '_' || c == '-');
  if (ok) return "";
  return what + " '" + Excerpt(id) +
         "' may use letters, digits, '.', '_' and '-', and starts with a letter or digit";
}

// The 1-based column of byte `index` of the string that a scalar starting
// at `line` and `column` (0-based, as yaml-cpp marks them) of `content`
// spells, when the scalar lies on that line: plain, single-quoted ('' is
// one quote) or double-quoted (each escape is what it stands for). 0 when
// it cannot tell (a block or folded scalar, a scalar over several lines).
int ScalarColumn(std::string_view content, int line, int column, size_t index) {
  if (line < 0 || column < 0) return 0;
  size_t at = 0;
  for (int l = 0; l < line; ++l) {
    at = content.find('\n', at);
    if (at == std::string_view::npos) return 0;
    ++at;
  }
  const size_t eol = std::min(content.find('\n', at), content.size());
  const size_t line_start = at;
  at += static_cast<size_t>(column);
  if (at >= eol) return 0;
  const char style = content[at];
  if (style == '|' || style == '>') return 0;
  size_t i = style == '\'' || style == '"' ? at + 1 : at;
  for (size_t produced = 0; i < eol; ++i) {
    if (produced == index) return static_cast<int>(i - line_start) + 1;
    if (style == '\'') {
      if (content[i] == '\'' && (i + 1 >= eol || content[i + 1] != '\'')) return 0;  // its end
      if (content[i] == '\'') ++i;
      ++produced;
    } else if (style == '"' && content[i] == '"') {
      return 0;  // its end
    } else if (style == '"' && content[i] == '\\' && i + 1 < eol) {
      const char e = content[++i];
      size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
      uint32_t cp = 0;
      for (size_t k = 0; k < digits && i + 1 < eol; ++k) {
        const char h = content[++i];
        cp = cp * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      if (digits == 0) {  // the escapes that stand for a character beyond ASCII
        cp = e == 'N' ? 0x85 : e == '_' ? 0xA0 : (e == 'L' || e == 'P') ? 0x2028 : 0;
      }
      produced += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    } else {
      ++produced;
    }
  }
  return 0;
}

// The first letter beyond ASCII in `s` that has another case (e acute,
// capital sigma), or -1.
UChar32 FirstCasedBeyondAscii(const std::string& s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const auto n = static_cast<int32_t>(s.size());
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U8_NEXT(p, i, n, c);
    if (c >= 0x80 && (u_tolower(c) != c || u_toupper(c) != c || u_totitle(c) != c)) return c;
  }
  return -1;
}

// The byte of a pattern Hyperscan names in its message ("... at index 3."),
// or npos.
size_t HyperscanErrorIndex(const std::string& message) {
  const size_t at = message.rfind(" at index ");
  if (at == std::string::npos) return std::string::npos;
  size_t index = 0;
  size_t i = at + 10;
  if (i >= message.size() || message[i] < '0' || message[i] > '9') return std::string::npos;
  for (; i < message.size() && message[i] >= '0' && message[i] <= '9' && index < (1u << 24); ++i) {
    index = index * 10 + static_cast<size_t>(message[i] - '0');
  }
  return index;
}

std::string PackNameProblem(const std::string& name) {
  if (name.size() > kMaxPackNameBytes) {
    return "pack name '" + Excerpt(name) + "' is longer than " + std::to_string(kMaxPackNameBytes) +
           " bytes";
  }
  bool ok = !name.empty();
  for (char c : name)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-');
  return ok ? "" : "pack name '" + Excerpt(name) + "' must match [a-z0-9.-]+";
}

class Loader {
 public:
  Loader(const FileReader& reader, const LoadOptions& options)
      : reader_(reader), options_(options) {}

  void AddFile(const SourceFile& file);
  LoadResult Finish();
  void CheckTenures();

 private:
  // --- diagnostics ---
  SourcePos PosOf(const YAML::Mark& mark) const {
    SourcePos pos;
    pos.file = file_;
    if (mark.line >= 0) {
      pos.line = mark.line + 1;
      pos.col = mark.column + 1;
    }
    return pos;
  }
  SourcePos PosOf(const YAML::Node& node) const { return PosOf(node.Mark()); }
  void Error(const SourcePos& pos, std::string message) {
    diagnostics_.push_back({Diagnostic::Level::kError, pos, std::move(message), rule_id_});
  }
  void Warn(const SourcePos& pos, std::string message) {
    diagnostics_.push_back({Diagnostic::Level::kWarning, pos, std::move(message), rule_id_});
  }
  void Error(const YAML::Node& at, std::string message) { Error(PosOf(at), std::move(message)); }
  void Warn(const YAML::Node& at, std::string message) { Warn(PosOf(at), std::move(message)); }

  // --- typed access, each reporting its own error ---
  // Checks that `node` is a mapping whose keys are all in `allowed` and not
  // repeated. Returns false (after reporting) when it is not a mapping.
  bool CheckMap(const YAML::Node& node, const char* what,
                std::initializer_list<const char*> allowed);
  bool GetString(const YAML::Node& map, const char* key, std::string* out, bool required);
  bool AsString(const YAML::Node& node, const char* what, std::string* out);
  bool GetStringList(const YAML::Node& map, const char* key, std::vector<std::string>* out);
  bool GetDuration(const YAML::Node& map, const char* key, int64_t* out, bool required);

  void ParsePack(const YAML::Node& root, const std::string& content);
  void ParseAccountability(const YAML::Node& root);
  void ParseDuty(const YAML::Node& node);
  void ParseList(const std::string& name, const YAML::Node& key, const YAML::Node& node);
  void ParseRule(const YAML::Node& node, const std::string& pack);
  bool ParseCondition(const YAML::Node& node, int depth, Condition* out);
  bool ParseLeaf(const YAML::Node& node, Condition* out);
  void ParseTest(const YAML::Node& node, RuleTest* out);
  bool YamlToJson(const YAML::Node& node, const YAML::Node& report, int depth, std::string* out);
  void CheckActions(const YAML::Node& at, const std::vector<std::string>& actions);
  void CrossCheck();
  void CheckConditionRefs(const Condition& c, const Rule& rule);

  const FileReader& reader_;
  const LoadOptions options_;
  std::string file_;
  std::string_view content_;  // the file being parsed
  std::string rule_id_;
  size_t condition_nodes_ = 0;
  std::vector<Diagnostic> diagnostics_;
  RuleSetBuilder builder_;
  std::string version_input_;
  std::map<std::string, SourcePos> duty_defs_, rule_defs_, list_defs_;
  std::vector<Rule> unusable_rules_;  // rules with an error in `when`
};

bool Loader::CheckMap(const YAML::Node& node, const char* what,
                      std::initializer_list<const char*> allowed) {
  if (!node.IsMap()) {
    Error(node, std::string(what) + " must be a mapping");
    return false;
  }
  std::set<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      Error(kv.first, std::string("keys of ") + what + " must be plain names");
      continue;
    }
    const std::string& key = kv.first.Scalar();
    if (!seen.insert(key).second) {
      Error(kv.first, "duplicate key '" + Excerpt(key) + "' in " + what);
    }
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) {
      std::string list;
      std::vector<std::string> names;
      for (const char* a : allowed) {
        list += std::string(list.empty() ? "" : ", ") + a;
        names.push_back(a);
      }
      std::string hint = DidYouMean(key, names);
      Error(kv.first, "unknown key '" + Excerpt(key) + "' in " + what +
                          (hint.empty() ? " (allowed: " + list + ")" : hint));
    }
  }
  return true;
}

bool Loader::AsString(const YAML::Node& node, const char* what, std::string* out) {
  if (!node.IsScalar()) {
    Error(node, std::string(what) + " must be a string");
    return false;
  }
  *out = node.Scalar();
  // A "\0" escape: no text of a rule set holds one, and a text column of
  // the PostgreSQL ledger cannot (the writer would stop on it).
  if (out->find('\0') != std::string::npos) {
    Error(node, std::string(what) + " must not contain a NUL character (\\0)");
    return false;
  }
  return true;
}

bool Loader::GetString(const YAML::Node& map, const char* key, std::string* out, bool required) {
  YAML::Node v = map[key];
  if (!v) {
    if (required) Error(map, std::string("missing required key '") + key + "'");
    return false;
  }
  if (!AsString(v, key, out)) return false;
  if (required && out->empty()) {
    Error(v, std::string("'") + key + "' must not be empty");
    return false;
  }
  return true;
}

bool Loader::GetStringList(const YAML::Node& map, const char* key, std::vector<std::string>* out) {
  YAML::Node v = map[key];
  if (!v) return false;
  if (!v.IsSequence()) {
    Error(v, std::string("'") + key + "' must be a list");
    return false;
  }
  out->clear();
  for (const auto& item : v) {
    std::string s;
    if (AsString(item, key, &s)) out->push_back(s);
  }
  return true;
}

bool Loader::GetDuration(const YAML::Node& map, const char* key, int64_t* out, bool required) {
  YAML::Node v = map[key];
  if (!v) {
    if (required) Error(map, std::string("missing required key '") + key + "'");
    return false;
  }
  std::string text;
  if (!AsString(v, key, &text)) return false;
  std::string error;
  auto d = ParseDuration(text, &error);
  if (!d) {
    Error(v, error);
    return false;
  }
  *out = *d;
  return true;
}

void Loader::AddFile(const SourceFile& file) {
  file_ = file.path;
  content_ = file.content;
  rule_id_.clear();
  version_input_ +=
      "file\n" + file.path + "\n" + std::to_string(file.content.size()) + "\n" + file.content;
  if (file.content.size() > kMaxPackBytes) {
    Error(SourcePos{file_, 0, 0},
          "file is larger than " + std::to_string(kMaxPackBytes >> 20) + " MiB");
    return;
  }
  size_t bad = carewatch::FindInvalidUtf8(file.content);
  if (bad != std::string_view::npos) {
    int line = 1 + std::count(file.content.begin(), file.content.begin() + bad, '\n');
    size_t line_start = file.content.rfind('\n', bad == 0 ? 0 : bad - 1);
    int col = static_cast<int>(bad - (line_start == std::string::npos ? 0 : line_start + 1)) + 1;
    if (bad == 0) col = 1;
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned char>(file.content[bad]));
    Error(SourcePos{file_, line, col}, std::string("file is not valid UTF-8 (byte ") + buf + ")");
    return;
  }
  if (int line = FindExcessiveNesting(file.content, 4 * kMaxConditionDepth)) {
    Error(SourcePos{file_, line, 1},
          "YAML nests deeper than " + std::to_string(4 * kMaxConditionDepth) + " levels");
    return;
  }
  YAML::Node root;
  try {
    root = YAML::Load(file.content);
  } catch (const YAML::Exception& e) {
    Error(PosOf(e.mark), "YAML syntax error: " + e.msg);
    return;
  } catch (const std::exception& e) {
    Error(SourcePos{file_, 0, 0}, std::string("cannot parse YAML: ") + e.what());
    return;
  }
  try {
    const YAML::Node& croot = root;  // const: lookups must not insert keys
    if (!croot || croot.IsNull()) {
      Error(SourcePos{file_, 1, 1},
            "file is empty; expected a rule pack or an accountability file");
      return;
    }
    if (!croot.IsMap()) {
      Error(croot, "top level must be a mapping with 'pack' or 'accountability'");
      return;
    }
    if (croot["accountability"]) {
      ParseAccountability(croot);
    } else {
      ParsePack(croot, file.content);
    }
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on some malformed nodes; keep the position it gives.
    Error(PosOf(e.mark), "YAML error: " + e.msg);
  }
  rule_id_.clear();
}

void Loader::ParseAccountability(const YAML::Node& root) {
  if (!CheckMap(root, "an accountability file", {"accountability"})) return;
  YAML::Node list = root["accountability"];
  if (!list.IsSequence()) {
    Error(list, "'accountability' must be a list of {service_id, duty, name, role, from, to}");
    return;
  }
  for (const auto& item : list) {
    if (!CheckMap(item, "an accountability record",
                  {"service_id", "duty", "name", "role", "from", "to"})) {
      continue;
    }
    Accountability a;
    a.pos = PosOf(item);
    bool ok = GetString(item, "service_id", &a.service_id, true);
    ok = GetString(item, "duty", &a.duty_pattern, true) && ok;
    ok = GetString(item, "name", &a.name, true) && ok;
    ok = GetString(item, "role", &a.role, true) && ok;
    std::string from, to;
    if (GetString(item, "from", &from, true)) {
      auto t = ParseDateTime(from);
      if (!t) {
        Error(item["from"],
              "bad date '" + Excerpt(from) + "': expected YYYY-MM-DD or an RFC 3339 time");
        ok = false;
      } else {
        a.from = *t;
      }
    } else {
      ok = false;
    }
    if (GetString(item, "to", &to, false)) {
      auto t = ParseDateTime(to);
      if (!t) {
        Error(item["to"],
              "bad date '" + Excerpt(to) + "': expected YYYY-MM-DD or an RFC 3339 time");
        ok = false;
      } else {
        // A date without a time names the last day in post: the tenure
        // includes that whole day (it ends at the next midnight, UTC).
        int64_t end = to.size() == 10 ? *t + 86400 : *t;
        if (end <= a.from) {
          Error(item["to"], "'to' must be after 'from'");
          ok = false;
        } else {
          a.to = end;
        }
      }
    }
    if (ok) builder_.accountability().push_back(std::move(a));
  }
}

void Loader::ParsePack(const YAML::Node& root, const std::string& content) {
  if (!CheckMap(root, "a rule pack", {"pack", "version", "duties", "lists", "rules"})) return;
  PackInfo info;
  info.file = file_;
  if (GetString(root, "pack", &info.name, true)) {
    std::string problem = PackNameProblem(info.name);
    if (!problem.empty()) Error(root["pack"], problem);
  }
  GetString(root, "version", &info.version, true);
  for (const PackInfo& p : builder_.packs()) {
    if (!info.name.empty() && p.name == info.name) {
      Error(root["pack"], "pack '" + Excerpt(info.name) + "' is already loaded from " + p.file);
    }
  }
  builder_.packs().push_back(info);

  if (YAML::Node duties = root["duties"]) {
    if (!duties.IsSequence()) {
      Error(duties, "'duties' must be a list");
    } else {
      for (const auto& d : duties) ParseDuty(d);
    }
  }
  if (YAML::Node lists = root["lists"]) {
    if (!lists.IsMap()) {
      Error(lists, "'lists' must be a mapping of list name to {kind, file}");
    } else {
      for (const auto& kv : lists) {
        std::string name;
        if (AsString(kv.first, "list name", &name)) ParseList(name, kv.first, kv.second);
      }
    }
  }
  if (YAML::Node rules = root["rules"]) {
    if (!rules.IsSequence()) {
      Error(rules, "'rules' must be a list");
    } else {
      for (const auto& r : rules) ParseRule(r, info.name);
    }
  }
}

void Loader::CheckActions(const YAML::Node& at, const std::vector<std::string>& actions) {
  if (actions.empty()) Error(at, "'actions' must name at least one action");
  std::set<std::string> seen;
  for (const std::string& a : actions) {
    if (!seen.insert(a).second) Error(at, "action '" + Excerpt(a) + "' is listed twice");
    if (IsDischargeAction(a)) {
      Error(at, "'" + a + "' discharges an obligation; it cannot be a required action");
    } else if (!IsKnownAction(a)) {
      std::string hint = DidYouMean(a, KnownActions());
      Error(at, "unknown action '" + Excerpt(a) + "'" +
                    (hint.empty() ? " (known: remove_content, restrict_account, "
                                    "suspend_account, report_to_nca, report_to_ncmec, "
                                    "escalate_to_specialist, preserve_evidence, "
                                    "review_linked_account)"
                                  : hint) +
                    ": carewatchd refuses actions of that name, so every obligation under it "
                    "would be breached");
    }
  }
}

void Loader::ParseDuty(const YAML::Node& node) {
  if (!CheckMap(node, "a duty",
                {"id", "statute", "summary", "deadline", "record_grace", "actions", "systemic"})) {
    return;
  }
  Duty d;
  d.pos = PosOf(node);
  if (!GetString(node, "id", &d.id, true)) return;
  if (std::string problem = IdProblem("duty id", d.id); !problem.empty()) {
    Error(node["id"], problem);
    return;
  }
  auto prev = duty_defs_.find(d.id);
  if (prev != duty_defs_.end()) {
    Error(node["id"], "duty '" + Excerpt(d.id) + "' is already defined at " + prev->second.file +
                          ":" + std::to_string(prev->second.line));
    return;
  }
  duty_defs_[d.id] = PosOf(node["id"]);
  GetString(node, "statute", &d.statute, false);
  GetString(node, "summary", &d.summary, false);
  GetDuration(node, "deadline", &d.deadline_seconds, true);
  // record_grace may be zero ("0s"): every action must then be recorded
  // by the deadline itself.
  YAML::Node grace = node["record_grace"];
  if (grace && grace.IsScalar() && !grace.Scalar().empty() &&
      grace.Scalar().find_first_not_of('0') != std::string::npos &&
      grace.Scalar().find_first_not_of('0') == grace.Scalar().size() - 1 &&
      std::string("smhd").find(grace.Scalar().back()) != std::string::npos) {
    d.record_grace_seconds = 0;
  } else {
    GetDuration(node, "record_grace", &d.record_grace_seconds, false);
  }
  if (!GetStringList(node, "actions", &d.actions)) {
    if (!node["actions"]) Error(node, "missing required key 'actions'");
  } else {
    CheckActions(node["actions"], d.actions);
  }
  if (YAML::Node s = node["systemic"]) {
    if (CheckMap(s, "systemic", {"window", "min_breaches", "min_breach_rate"})) {
      Systemic sys;
      GetDuration(s, "window", &sys.window_seconds, true);
      std::string text;
      if (GetString(s, "min_breaches", &text, true)) {
        char* end = nullptr;
        long v = std::strtol(text.c_str(), &end, 10);
        if (*end != '\0' || v < 1 || v > 1000000) {
          Error(s["min_breaches"], "min_breaches must be a whole number from 1 to 1000000");
        } else {
          sys.min_breaches = static_cast<int>(v);
        }
      }
      if (GetString(s, "min_breach_rate", &text, true)) {
        char* end = nullptr;
        double v = std::strtod(text.c_str(), &end);
        if (*end != '\0' || !(v >= 0.0 && v <= 1.0)) {
          Error(s["min_breach_rate"], "min_breach_rate must be a number from 0 to 1");
        } else {
          sys.min_breach_rate = v;
        }
      }
      d.systemic = sys;
    }
  }
  builder_.duties().push_back(std::move(d));
}

void Loader::ParseList(const std::string& name, const YAML::Node& key, const YAML::Node& node) {
  if (!CheckMap(node, "a list", {"kind", "file"})) return;
  ListDef list;
  list.name = name;
  list.pos = PosOf(key);
  auto prev = list_defs_.find(name);
  if (prev != list_defs_.end()) {
    Error(key, "list '" + Excerpt(name) + "' is already defined at " + prev->second.file + ":" +
                   std::to_string(prev->second.line));
    return;
  }
  list_defs_[name] = list.pos;
  std::string kind, file;
  if (GetString(node, "kind", &kind, true)) {
    if (kind == "url") {
      list.kind = ListDef::Kind::kUrl;
    } else if (kind == "hash") {
      list.kind = ListDef::Kind::kHash;
    } else {
      Error(node["kind"], "list kind '" + Excerpt(kind) + "' must be url or hash");
      return;
    }
  }
  if (!GetString(node, "file", &file, true)) return;
  fs::path p(file);
  if (!options_.lists_anywhere) {
    fs::path normal = p.lexically_normal();
    if (p.is_absolute() || normal.empty() || *normal.begin() == "..") {
      Error(node["file"], "list file '" + Excerpt(file) +
                              "' is outside the pack's directory: give a path under it (lists "
                              "elsewhere need the lists_anywhere setting)");
      return;
    }
  }
  if (p.is_relative()) p = fs::path(file_).parent_path() / p;
  list.path = p.lexically_normal().string();
  std::string error;
  std::optional<std::string> content = reader_(list.path, &error);
  if (!content) {
    Error(node["file"], "cannot read list file " + list.path + ": " + error);
    return;
  }
  if (content->size() > kMaxListBytes) {
    Error(node["file"], "list file " + list.path + " is larger than 256 MiB");
    return;
  }
  version_input_ += "list\n" + list.path + "\n" + std::to_string(content->size()) + "\n" + *content;
  std::istringstream in(*content);
  std::string line;
  int lineno = 0;
  constexpr int kNotUrlWarnings = 10;
  int not_urls = 0;
  NormalizedUrl url;
  while (std::getline(in, line)) {
    ++lineno;
    size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto not_space = [](unsigned char c) { return !std::isspace(c); };
    line.erase(line.begin(), std::find_if(line.begin(), line.end(), not_space));
    line.erase(std::find_if(line.rbegin(), line.rend(), not_space).base(), line.end());
    if (line.empty()) continue;
    if (list.kind == ListDef::Kind::kHash &&
        !std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isxdigit(c); })) {
      Error(SourcePos{list.path, lineno, 1},
            "hash list entry '" + Excerpt(line) + "' is not a hex digest");
      continue;
    }
    // A URL entry carewatch cannot read as a URL never matches: said at its
    // line (the first few of a list, then how many more).
    if (list.kind == ListDef::Kind::kUrl && !NormalizeUrl(line, &url)) {
      if (++not_urls <= kNotUrlWarnings) {
        Warn(SourcePos{list.path, lineno, 1},
             "url list entry '" + Excerpt(line) +
                 "' is not a URL (no host name, or a port that is not a number up to 65535): "
                 "it matches nothing");
      }
    }
    list.entries.push_back(line);
  }
  if (not_urls > kNotUrlWarnings) {
    Warn(node["file"], std::to_string(not_urls - kNotUrlWarnings) + " more entries of list '" +
                           Excerpt(name) + "' are not URLs");
  }
  list.entries.shrink_to_fit();
  if (list.entries.empty()) Warn(node["file"], "list '" + Excerpt(name) + "' has no entries");
  builder_.lists().push_back(std::move(list));
}

void Loader::ParseRule(const YAML::Node& node, const std::string& pack) {
  rule_id_.clear();
  // Diagnostics name the rule only by a valid id.
  if (node.IsMap() && node["id"] && node["id"].IsScalar() &&
      IdProblem("rule id", node["id"].Scalar()).empty()) {
    rule_id_ = node["id"].Scalar();
  }
  if (!CheckMap(node, "a rule",
                {"id", "title", "duty", "severity", "when", "obligation", "tests"})) {
    return;
  }
  Rule r;
  r.pack = pack;
  r.pos = PosOf(node);
  if (!GetString(node, "id", &r.id, true)) return;
  if (std::string problem = IdProblem("rule id", r.id); !problem.empty()) {
    Error(node["id"], problem);
    return;
  }
  rule_id_ = r.id;
  auto prev = rule_defs_.find(r.id);
  if (prev != rule_defs_.end()) {
    Error(node["id"], "rule id '" + Excerpt(r.id) + "' is already defined at " + prev->second.file +
                          ":" + std::to_string(prev->second.line));
    return;
  }
  rule_defs_[r.id] = PosOf(node["id"]);
  GetString(node, "title", &r.title, false);
  if (GetString(node, "duty", &r.duty, true)) r.duty_pos = PosOf(node["duty"]);
  std::string severity;
  if (GetString(node, "severity", &severity, true)) {
    if (severity == "low")
      r.severity = Severity::kLow;
    else if (severity == "medium")
      r.severity = Severity::kMedium;
    else if (severity == "high")
      r.severity = Severity::kHigh;
    else if (severity == "critical")
      r.severity = Severity::kCritical;
    else
      Error(node["severity"],
            "severity '" + Excerpt(severity) + "' must be low, medium, high or critical");
  }
  bool when_ok = false;
  if (YAML::Node when = node["when"]) {
    condition_nodes_ = 0;
    when_ok = ParseCondition(when, 0, &r.when);
  } else {
    Error(node, "missing required key 'when'");
  }
  if (YAML::Node ob = node["obligation"]) {
    if (CheckMap(ob, "obligation", {"deadline", "actions"})) {
      int64_t deadline = 0;
      if (GetDuration(ob, "deadline", &deadline, false)) r.deadline_override = deadline;
      std::vector<std::string> actions;
      if (GetStringList(ob, "actions", &actions)) {
        CheckActions(ob["actions"], actions);
        r.actions_override = std::move(actions);
      }
    }
  }
  if (YAML::Node tests = node["tests"]) {
    if (!tests.IsSequence()) {
      Error(tests, "'tests' must be a list");
    } else {
      for (const auto& t : tests) {
        RuleTest test;
        ParseTest(t, &test);
        if (!test.name.empty()) r.tests.push_back(std::move(test));
      }
    }
  }
  // A rule with a broken condition is not built, but its references are
  // still checked so that one lint run names all of its problems.
  (when_ok ? builder_.rules() : unusable_rules_).push_back(std::move(r));
}

bool Loader::ParseCondition(const YAML::Node& node, int depth, Condition* out) {
  out->pos = PosOf(node);
  if (++condition_nodes_ > kMaxConditionNodes) {
    if (condition_nodes_ == kMaxConditionNodes + 1) {
      Error(node, "condition tree has more than " + std::to_string(kMaxConditionNodes) + " nodes");
    }
    return false;
  }
  if (depth > kMaxConditionDepth) {
    Error(node, "conditions nest deeper than " + std::to_string(kMaxConditionDepth) + " levels");
    return false;
  }
  if (!node.IsMap()) {
    Error(node,
          "a condition must be a mapping: {all|any|none: [...]}, {at_least: N, of: [...]} "
          "or {field: F, regex|phrases|equals|in|in_list|exists: ...}");
    return false;
  }
  auto parse_children = [&](const YAML::Node& list, const char* key) {
    if (!list.IsSequence()) {
      Error(list, std::string("'") + key + "' must be a list of conditions");
      return false;
    }
    if (list.size() == 0) {
      Error(list, std::string("'") + key + "' must hold at least one condition");
      return false;
    }
    bool ok = true;
    for (const auto& child : list) {
      out->children.emplace_back();
      ok = ParseCondition(child, depth + 1, &out->children.back()) && ok;
    }
    return ok;
  };
  for (const char* key : {"all", "any", "none"}) {
    if (node[key]) {
      if (!CheckMap(node, "a condition", {key})) return false;
      out->kind = key[0] == 'a' ? (key[1] == 'l' ? Condition::Kind::kAll : Condition::Kind::kAny)
                                : Condition::Kind::kNone;
      return parse_children(node[key], key);
    }
  }
  if (node["at_least"] || node["of"]) {
    if (!CheckMap(node, "a condition", {"at_least", "of"})) return false;
    out->kind = Condition::Kind::kAtLeast;
    std::string n;
    if (!GetString(node, "at_least", &n, true)) return false;
    if (!node["of"]) {
      Error(node, "missing required key 'of'");
      return false;
    }
    // The count is checked even when a child has an error, so that both
    // are reported in one lint run.
    bool children_ok = parse_children(node["of"], "of");
    char* end = nullptr;
    long v = std::strtol(n.c_str(), &end, 10);
    if (n.empty() || *end != '\0' || v < 1 || v > static_cast<long>(out->children.size())) {
      Error(node["at_least"], "at_least must be a whole number from 1 to " +
                                  std::to_string(out->children.size()) +
                                  " (the number of conditions in 'of'), not '" + Excerpt(n) + "'");
      return false;
    }
    out->at_least = static_cast<int>(v);
    return children_ok;
  }
  if (node["field"]) return ParseLeaf(node, out);
  Error(node, "a condition needs one of all, any, none, at_least or field");
  return false;
}

bool Loader::ParseLeaf(const YAML::Node& node, Condition* out) {
  if (!CheckMap(node, "a condition",
                {"field", "regex", "phrases", "equals", "in", "in_list", "exists", "flags",
                 "normalize", "extract"})) {
    return false;
  }
  if (!GetString(node, "field", &out->field_name, true)) return false;
  auto field = ParseField(out->field_name, &out->attribute_key);
  // An unknown field is an error, and the rest of the condition is still
  // checked (its regex, its phrases...), so that one run names every
  // problem; only the checks that need the field are left out.
  const bool field_known = field.has_value();
  if (!field_known) {
    std::string hint = DidYouMean(out->field_name, FieldNames());
    Error(node["field"], "unknown field '" + Excerpt(out->field_name) + "'" +
                             (hint.empty() ? " (fields: " + FieldNameList(false) + ")" : hint));
  } else {
    out->field = *field;
  }
  // Errors past here that leave the rest checkable clear `ok` and go on.
  bool ok = field_known;
  int ops = 0;
  const char* op_name = nullptr;
  for (const char* key : {"regex", "phrases", "equals", "in", "in_list", "exists"}) {
    if (node[key]) {
      ++ops;
      op_name = key;
    }
  }
  if (ops != 1) {
    Error(node, ops == 0
                    ? "condition on '" + out->field_name +
                          "' needs one of regex, phrases, equals, in, in_list or exists"
                    : "condition on '" + out->field_name +
                          "' has more than one of regex, phrases, equals, in, in_list, exists");
    return false;
  }
  const std::string op = op_name;
  const YAML::Node value = node[op_name];
  bool scanned = op == "regex" || op == "phrases";
  if (scanned && field_known && !IsTextField(out->field)) {
    Error(node["field"], op + " applies to text fields (" + FieldNameList(true) + "), not '" +
                             out->field_name + "'");
    ok = false;
  }
  if (node["flags"] && op != "regex") {
    Error(node["flags"], "'flags' applies only to regex conditions");
    ok = false;
  }
  auto check_extract = [&] {
    const YAML::Node x = node["extract"];
    if (op != "regex") {
      Error(x, "'extract' applies only to regex conditions (its capture group names the account)");
      return false;
    }
    if (x.IsMap()) {
      if (!CheckMap(x, "extract", {"kind", "platform"})) return false;
      if (!GetString(x, "kind", &out->extract_kind, true)) return false;
      if (x["platform"] && !GetString(x, "platform", &out->extract_platform, true)) return false;
    } else if (!AsString(x, "extract", &out->extract_kind)) {
      return false;
    }
    const std::vector<std::string> kinds = {"email", "phone", "handle", "profile_url"};
    if (std::find(kinds.begin(), kinds.end(), out->extract_kind) == kinds.end()) {
      Error(x, "extract: unknown identifier kind '" + Excerpt(out->extract_kind) + "'" +
                   DidYouMean(out->extract_kind, kinds) + " (email, phone, handle, profile_url)");
      return false;
    }
    if ((out->extract_kind == "handle") != !out->extract_platform.empty()) {
      Error(x, out->extract_kind == "handle"
                   ? "extract: a handle needs its platform: {kind: handle, platform: NAME}"
                   : "extract: only a handle has a platform");
      return false;
    }
    if (out->extract_platform.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-") !=
        std::string::npos) {
      Error(x, "extract: the platform name may hold a-z 0-9 . - _ only");
      return false;
    }
    return true;
  };
  if (node["extract"] && !check_extract()) ok = false;
  auto check_normalize = [&] {
    if (!scanned) {
      Error(node["normalize"], "'normalize' applies only to regex and phrases conditions");
      return false;
    }
    std::string v;
    if (!AsString(node["normalize"], "normalize", &v)) return false;
    if (v != "true" && v != "false") {
      Error(node["normalize"], "normalize must be true or false");
      return false;
    }
    out->normalize = v == "true";
    return true;
  };
  if (node["normalize"] && !check_normalize()) ok = false;
  if (op == "regex") {
    out->kind = Condition::Kind::kRegex;
    out->value_pos = PosOf(value);
    if (!AsString(value, "regex", &out->regex)) return false;
    std::vector<std::string> flags;
    if (node["flags"]) {
      if (!GetStringList(node, "flags", &flags)) return false;
      for (const std::string& f : flags) {
        if (f == "case_sensitive")
          out->regex_flags |= kCaseSensitive;
        else if (f == "dotall")
          out->regex_flags |= kDotAll;
        else if (f == "multiline")
          out->regex_flags |= kMultiline;
        else if (f == "ucp")
          out->regex_flags |= kUcp;
        else {
          Error(node["flags"], "unknown flag '" + Excerpt(f) +
                                   "' (flags: case_sensitive, dotall, multiline, ucp)");
          ok = false;
        }
      }
    }
    if (out->regex.empty()) {
      Error(value, "regex must not be empty");
      return false;
    }
    std::string problem = CheckPattern(out->regex, out->regex_flags);
    if (!problem.empty()) {
      // Where Hyperscan names a byte of the pattern, point at it.
      SourcePos pos = PosOf(value);
      const size_t index = HyperscanErrorIndex(problem);
      if (index < out->regex.size()) {
        const int col = ScalarColumn(content_, value.Mark().line, value.Mark().column, index);
        if (col > 0) pos.col = col;
      }
      Error(pos, "bad regex '" + Excerpt(out->regex) + "': " + problem);
      return false;
    }
    return ok;
  }
  if (op == "phrases") {
    out->kind = Condition::Kind::kPhrases;
    out->value_pos = PosOf(value);
    if (!GetStringList(node, "phrases", &out->phrases)) return false;
    if (out->phrases.empty()) {
      Error(value, "phrases must list at least one phrase");
      return false;
    }
    for (size_t i = 0; i < out->phrases.size(); ++i) {
      const std::string& p = out->phrases[i];
      if (p.find_first_not_of(" \t") == std::string::npos) {
        Error(value, "phrases must not be empty or blank");
        return false;
      }
      if (out->normalize && match::FoldForMatching(p).empty()) {
        Error(value.IsSequence() && i < value.size() ? value[i] : value,
              "phrase '" + Excerpt(p) +
                  "' is nothing once normalized (normalize: true drops separators and most "
                  "punctuation); it would match every report");
        return false;
      }
      // Without normalize, case is ignored for ASCII letters only.
      const UChar32 cased = out->normalize ? -1 : FirstCasedBeyondAscii(p);
      if (cased >= 0) {
        char cp[16];
        std::snprintf(cp, sizeof cp, "U+%04X", static_cast<unsigned>(cased));
        Warn(value.IsSequence() && i < value.size() ? value[i] : value,
             "phrase '" + Excerpt(p) + "' has a letter beyond ASCII (" + cp +
                 ") that matches only in the case written; normalize: true ignores case in "
                 "every script");
      }
    }
    return ok;
  }
  if (op == "equals" || op == "in") {
    out->kind = op == "equals" ? Condition::Kind::kEquals : Condition::Kind::kIn;
    if (op == "equals") {
      std::string v;
      if (!AsString(value, "equals", &v)) return false;
      out->values.push_back(v);
    } else {
      if (!GetStringList(node, "in", &out->values)) return false;
      if (out->values.empty()) {
        Error(value, "in must list at least one value");
        return false;
      }
    }
    if (!field_known) return false;
    const auto& known = KnownValues(out->field);
    for (const std::string& v : out->values) {
      if (!known.empty() && std::find(known.begin(), known.end(), v) == known.end()) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : " ") + k;
        std::string hint = DidYouMean(v, known);
        Warn(value, "unknown " + out->field_name + " value '" + Excerpt(v) + "'" +
                        (hint.empty() ? " (known: " + list + ")" : hint));
      }
    }
    return ok;
  }
  if (op == "in_list") {
    out->kind = Condition::Kind::kInList;
    if (field_known && out->field != Field::kUrl && out->field != Field::kHash) {
      Error(node["field"],
            "in_list applies to the url and hash fields, not '" + Excerpt(out->field_name) + "'");
      ok = false;
    }
    return AsString(value, "in_list", &out->list) && ok;
  }
  out->kind = Condition::Kind::kExists;
  std::string v;
  if (!AsString(value, "exists", &v)) return false;
  if (v != "true" && v != "false") {
    Error(value, "exists must be true or false");
    return false;
  }
  out->exists = v == "true";
  return ok;
}

bool Loader::YamlToJson(const YAML::Node& node, const YAML::Node& report, int depth,
                        std::string* out) {
  if (depth > 16 || out->size() > kMaxTestReportBytes) {
    Error(report, depth > 16 ? "test report nests too deeply" : "test report is too large");
    return false;
  }
  if (node.IsMap()) {
    *out += '{';
    bool first = true;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        Error(kv.first, "test report keys must be plain names");
        return false;
      }
      if (!first) *out += ',';
      first = false;
      *out += JsonEscape(kv.first.Scalar()) + ":";
      if (!YamlToJson(kv.second, report, depth + 1, out)) return false;
    }
    *out += '}';
  } else if (node.IsSequence()) {
    *out += '[';
    bool first = true;
    for (const auto& item : node) {
      if (!first) *out += ',';
      first = false;
      if (!YamlToJson(item, report, depth + 1, out)) return false;
    }
    *out += ']';
  } else if (node.IsScalar()) {
    *out += JsonEscape(node.Scalar());
  } else {
    *out += "null";
  }
  return true;
}

void Loader::ParseTest(const YAML::Node& node, RuleTest* out) {
  if (!CheckMap(node, "a test",
                {"name", "report", "expect", "actions", "at", "expect_obligation"})) {
    return;
  }
  out->pos = PosOf(node);
  std::string name;
  if (!GetString(node, "name", &name, true)) return;
  YAML::Node report = node["report"];
  if (!report) {
    Error(node, "missing required key 'report'");
    return;
  }
  if (!report.IsMap()) {
    Error(report, "'report' must be a mapping of ContentReport fields");
    return;
  }
  if (!YamlToJson(report, report, 0, &out->report_json)) return;
  std::string expect;
  if (GetString(node, "expect", &expect, false)) {
    if (expect == "match")
      out->expect_match = true;
    else if (expect == "no_match")
      out->expect_match = false;
    else {
      Error(node["expect"], "expect must be match or no_match, not '" + Excerpt(expect) + "'");
      return;
    }
  }
  if (YAML::Node actions = node["actions"]) {
    if (!actions.IsSequence()) {
      Error(actions, "'actions' must be a list of {action, after}");
      return;
    }
    for (const auto& a : actions) {
      if (!CheckMap(a, "a test action", {"action", "after"})) return;
      RuleTest::Action act;
      if (!GetString(a, "action", &act.action, true)) return;
      if (!IsKnownAction(act.action))
        Error(a["action"], "unknown action '" + Excerpt(act.action) + "'" +
                               DidYouMean(act.action, KnownActions()) +
                               ": carewatchd refuses actions of that name");
      std::string after;
      if (GetString(a, "after", &after, false) && after != "0" && after != "0s") {
        std::string error;
        auto d = ParseDuration(after, &error);
        if (!d) {
          Error(a["after"], error);
          return;
        }
        act.after_seconds = *d;
      }
      out->actions.push_back(act);
    }
  }
  if (node["at"]) {
    int64_t at = 0;
    if (!GetDuration(node, "at", &at, true)) return;
    out->at_seconds = at;
  }
  if (GetString(node, "expect_obligation", &out->expect_obligation, false)) {
    const std::string& e = out->expect_obligation;
    if (e != "open" && e != "met" && e != "discharged" && e != "breached") {
      Error(
          node["expect_obligation"],
          "expect_obligation must be open, met, discharged or breached, not '" + Excerpt(e) + "'");
      return;
    }
  }
  if (!out->expect_match && out->expect_obligation.empty()) {
    Error(node, "a test needs 'expect' (match | no_match) or 'expect_obligation'");
    return;
  }
  out->name = name;
}

void Loader::CheckConditionRefs(const Condition& c, const Rule& rule) {
  if (c.kind == Condition::Kind::kInList) {
    const ListDef* list = nullptr;
    for (const ListDef& l : builder_.lists()) {
      if (l.name == c.list) list = &l;
    }
    if (!list) {
      std::vector<std::string> names;
      for (const ListDef& l : builder_.lists()) names.push_back(l.name);
      Error(c.pos, "unknown list '" + Excerpt(c.list) + "'" + DidYouMean(c.list, names));
    } else if ((list->kind == ListDef::Kind::kUrl) != (c.field == Field::kUrl)) {
      Error(c.pos, "list '" + Excerpt(c.list) + "' holds " +
                       (list->kind == ListDef::Kind::kUrl ? "URLs" : "hashes") +
                       " and cannot match field '" + Excerpt(c.field_name) + "'");
    }
  }
  for (const Condition& child : c.children) CheckConditionRefs(child, rule);
}

void Loader::CrossCheck() {
  std::vector<const Rule*> all;
  for (const Rule& r : builder_.rules()) all.push_back(&r);
  for (const Rule& r : unusable_rules_) all.push_back(&r);
  std::sort(all.begin(), all.end(), [](const Rule* a, const Rule* b) {
    return std::tie(a->pos.file, a->pos.line) < std::tie(b->pos.file, b->pos.line);
  });
  for (const Rule* rule : all) {
    const Rule& r = *rule;
    rule_id_ = r.id;
    file_ = r.pos.file;
    if (!r.duty.empty() && duty_defs_.find(r.duty) == duty_defs_.end()) {
      std::vector<std::string> names;
      for (const auto& [id, pos] : duty_defs_) names.push_back(id);
      Error(r.duty_pos,
            "rule refers to undefined duty '" + Excerpt(r.duty) + "'" + DidYouMean(r.duty, names));
    }
    CheckConditionRefs(r.when, r);
    if (r.tests.empty()) Warn(r.pos, "rule has no tests");
  }
  rule_id_.clear();
  CheckTenures();
  for (const Accountability& a : builder_.accountability()) {
    if (a.duty_pattern == "*" || a.duty_pattern.find('*') != std::string::npos) continue;
    if (!builder_.rules().empty() && duty_defs_.find(a.duty_pattern) == duty_defs_.end()) {
      Warn(a.pos, "accountability names duty '" + Excerpt(a.duty_pattern) +
                      "', which no loaded pack defines");
    }
  }
}

void Loader::CheckTenures() {
  // Tenures of one scope (service and duty pattern) should follow each other:
  // a gap leaves breaches unattributed, an overlap credits them twice.
  std::map<std::pair<std::string, std::string>, std::vector<const Accountability*>> scopes;
  for (const Accountability& a : builder_.accountability())
    scopes[{a.service_id, a.duty_pattern}].push_back(&a);
  for (auto& [scope, list] : scopes) {
    std::stable_sort(
        list.begin(), list.end(),
        [](const Accountability* x, const Accountability* y) { return x->from < y->from; });
    for (size_t i = 1; i < list.size(); ++i) {
      const Accountability& prev = *list[i - 1];
      const Accountability& cur = *list[i];
      file_ = cur.pos.file;
      std::string where = " for " + scope.first + " / " + scope.second +
                          " (previous: " + prev.name + ", " + prev.pos.file + ":" +
                          std::to_string(prev.pos.line) + ")";
      if (!prev.to || *prev.to > cur.from) {
        Warn(cur.pos, "tenure of " + cur.name + " overlaps an earlier one" + where);
      } else if (*prev.to < cur.from) {
        Warn(cur.pos, "gap of " + FormatDuration(cur.from - *prev.to) +
                          " with nobody accountable before " + cur.name + where);
      }
    }
  }
}

LoadResult Loader::Finish() {
  CrossCheck();
  LoadResult result;
  std::stable_sort(diagnostics_.begin(), diagnostics_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     if (a.pos.file != b.pos.file) return a.pos.file < b.pos.file;
                     if (a.pos.line != b.pos.line) return a.pos.line < b.pos.line;
                     return a.pos.col < b.pos.col;
                   });
  result.diagnostics = std::move(diagnostics_);
  if (!HasErrors(result.diagnostics)) {
    result.ruleset = builder_.Build(Sha256Hex(version_input_).substr(0, 16));
  }
  return result;
}

}  // namespace

LoadResult LoadRuleSetFromSources(const std::vector<SourceFile>& files, const FileReader& reader,
                                  const LoadOptions& options) {
  Loader loader(reader, options);
  for (const SourceFile& f : files) loader.AddFile(f);
  return loader.Finish();
}

std::vector<std::string> PackFiles(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    std::string ext = entry.path().extension().string();
    if (entry.is_regular_file(ec) && (ext == ".yaml" || ext == ".yml")) {
      names.push_back(entry.path().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

LoadResult LoadRuleSet(const std::vector<std::string>& paths, const LoadOptions& options) {
  std::vector<SourceFile> files;
  std::vector<Diagnostic> early;
  // Built member by member: GCC 12 at -O3 takes a braced temporary's
  // strings for uninitialised (a false -Wmaybe-uninitialized).
  auto error_in = [&early](const std::string& file, std::string message) {
    Diagnostic d;
    d.pos.file = file;
    d.message = std::move(message);
    early.push_back(std::move(d));
  };
  for (const std::string& path : paths) {
    std::error_code ec;
    std::vector<std::string> names = PackFiles(path);
    if (names.empty() && fs::is_directory(path, ec)) {
      error_in(path, "no *.yaml rule files in directory");
    }
    for (const std::string& name : names) {
      std::string error;
      auto content = ReadFileToString(name, &error);
      if (!content) {
        error_in(name, std::move(error));
        continue;
      }
      files.push_back({name, std::move(*content)});
    }
  }
  LoadResult result = LoadRuleSetFromSources(files, ReadFileToString, options);
  if (!early.empty()) {
    result.diagnostics.insert(result.diagnostics.begin(), early.begin(), early.end());
    result.ruleset.reset();
  }
  return result;
}

}  // namespace carewatch::rules
