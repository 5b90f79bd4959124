#include "engine/match/matcher.h"

#include <hs/hs.h>
#include <re2/re2.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/common/utf8.h"
#include "engine/rules/pattern.h"

namespace carewatch::match {

namespace fs = std::filesystem;

namespace {

// Bump when the leaf -> expression layout changes, so old caches are ignored.
constexpr const char* kCacheFormat = "v2";

struct ScanContext {
  const Matcher* matcher;
  std::string_view data;
  Matcher::MatchFn fn;
  void* context;
};

// Hyperscan literal for a phrase: every byte that is not an ASCII letter or
// digit written as \xHH, so no byte has a regex meaning.
std::string LiteralExpression(const std::string& literal) {
  std::string out;
  for (unsigned char c : literal) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

int OnHyperscanMatch(unsigned int id, unsigned long long, unsigned long long to, unsigned int,
                     void* ctx) {
  auto* c = static_cast<ScanContext*>(ctx);
  const Matcher::Expression& e = c->matcher->expressions_[id];
  if (e.literal) {
    // Verify the literal (ASCII case-insensitive) and its word boundaries:
    // a phrase that starts (ends) with a word character is not preceded
    // (followed) by one, in any script.
    const std::string& lit = *e.literal;
    if (to < lit.size() || to > c->data.size()) return 0;
    size_t start = to - lit.size();
    for (size_t k = 0; k < lit.size(); ++k) {
      char b = c->data[start + k];
      if (b >= 'A' && b <= 'Z') b = static_cast<char>(b + 32);
      if (b != lit[k]) return 0;
    }
    if (e.word_start && WordCharBefore(c->data, start)) return 0;
    if (e.word_end && WordCharAt(c->data, to)) return 0;
    c->fn(e.leaf, static_cast<uint32_t>(start), static_cast<uint32_t>(to), c->context);
    return 0;
  }
  c->fn(e.leaf, Matcher::kNoSpan, Matcher::kNoSpan, c->context);
  return 0;
}

namespace {

std::string CachePath(const std::string& dir, const std::string& key, int slot) {
  return dir + "/" + key + "-" + kCacheFormat + "-" + std::to_string(slot) + ".hsdb";
}

hs_database_t* LoadCached(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return nullptr;
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string bytes = ss.str();
  hs_database_t* db = nullptr;
  if (hs_deserialize_database(bytes.data(), bytes.size(), &db) != HS_SUCCESS) return nullptr;
  return db;
}

void StoreCached(const std::string& dir, const std::string& path, const hs_database_t* db) {
  char* bytes = nullptr;
  size_t length = 0;
  if (hs_serialize_database(db, &bytes, &length) != HS_SUCCESS) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes, static_cast<std::streamsize>(length));
    if (!out) {
      std::free(bytes);
      fs::remove(tmp, ec);
      return;
    }
  }
  std::free(bytes);
  fs::rename(tmp, path, ec);  // atomic: readers see the old file or the new one
}

}  // namespace

Matcher::Scratch::~Scratch() {
  if (scratch_) hs_free_scratch(scratch_);
}

Matcher::~Matcher() {
  for (hs_database_t* db : dbs_) {
    if (db) hs_free_database(db);
  }
  if (prototype_) hs_free_scratch(prototype_);
}

Status Matcher::BuildRe2(const std::vector<PatternLeaf>& leaves, bool literal_leaves) {
  RE2::Options options;
  options.set_log_errors(false);
  for (const PatternLeaf& leaf : leaves) {
    if (!literal_leaves && !leaf.literals.empty()) {
      re2_.push_back(nullptr);  // spans of literals are found without a regex
      continue;
    }
    // The RE2::Set variant matches phrases with boundaries that take more
    // than they should, which Scan then checks as the literal path does.
    std::vector<std::string> prefilters;
    for (const std::string& lit : leaf.literals)
      prefilters.push_back(rules::PhrasePattern(lit, rules::PhraseEdges::kAsciiPrefilter));
    const bool phrases = !leaf.literals.empty();
    const std::vector<std::string>& patterns = phrases ? prefilters : leaf.expressions;
    auto re = std::make_unique<RE2>(
        rules::Re2Pattern(patterns, phrases ? rules::kCaseSensitive : leaf.regex_flags), options);
    if (!re->ok()) {
      std::string joined;
      for (const std::string& e : patterns) joined += (joined.empty() ? "" : "|") + e;
      return Status::InvalidArgument("pattern '" + joined + "' rejected by RE2: " + re->error());
    }
    re2_.push_back(std::move(re));
  }
  return Status::Ok();
}

Status Matcher::BuildWithRe2Set(std::vector<PatternLeaf> leaves, std::unique_ptr<Matcher>* out) {
  std::unique_ptr<Matcher> m(new Matcher());
  m->leaves_ = std::move(leaves);
  m->re2_sets_ = true;
  Status s = m->BuildRe2(m->leaves_, true);
  if (!s.ok()) return s;
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(256 << 20);
  for (int slot = 0; slot < kNumDatabaseSlots; ++slot) {
    auto set = std::make_unique<RE2::Set>(options, RE2::UNANCHORED);
    for (uint32_t id = 0; id < m->leaves_.size(); ++id) {
      const PatternLeaf& leaf = m->leaves_[id];
      if (DatabaseSlot(leaf.field, leaf.normalize) != slot) continue;
      std::string error;
      if (set->Add(m->re2_[id]->pattern(), &error) < 0) {
        return Status::InvalidArgument("RE2::Set rejects '" + m->re2_[id]->pattern() +
                                       "': " + error);
      }
      m->set_leaf_[slot].push_back(id);
    }
    if (m->set_leaf_[slot].empty()) continue;
    if (!set->Compile()) return Status::Internal("RE2::Set compile failed (out of memory?)");
    m->sets_[slot] = std::move(set);
  }
  *out = std::move(m);
  return Status::Ok();
}

Status Matcher::Build(std::vector<PatternLeaf> leaves, const std::string& cache_dir,
                      const std::string& cache_key, std::unique_ptr<Matcher>* out, bool* compiled,
                      std::vector<Refusal>* refusals, bool every_refusal) {
  std::unique_ptr<Matcher> m(new Matcher());
  m->leaves_ = std::move(leaves);
  if (compiled) *compiled = false;
  const size_t refusals_before = refusals ? refusals->size() : 0;

  // One RE2 per regex leaf, the leaf's expressions as alternatives, for
  // spans (phrase leaves find theirs without one: thousands of phrase rules
  // would otherwise cost a regex compile each on every start).
  Status re2_status = m->BuildRe2(m->leaves_, false);
  if (!re2_status.ok()) return re2_status;

  for (int slot = 0; slot < kNumDatabaseSlots; ++slot) {
    std::vector<std::string> owned;
    std::vector<const std::string*> written;  // each pattern as the rule wrote it
    std::vector<unsigned> flags;
    std::vector<unsigned> ids;
    for (uint32_t id = 0; id < m->leaves_.size(); ++id) {
      const PatternLeaf& leaf = m->leaves_[id];
      if (DatabaseSlot(leaf.field, leaf.normalize) != slot) continue;
      if (!leaf.literals.empty()) {
        for (const std::string& lit : leaf.literals) {
          owned.push_back(LiteralExpression(lit));
          written.push_back(&lit);
          flags.push_back(HS_FLAG_CASELESS);
          ids.push_back(static_cast<unsigned>(m->expressions_.size()));
          m->expressions_.push_back(
              {id, &lit, WordCharAt(lit, 0), WordCharBefore(lit, lit.size())});
        }
        continue;
      }
      for (const std::string& e : leaf.expressions) {
        owned.push_back(rules::HyperscanPattern(e, leaf.regex_flags));
        written.push_back(&e);
        flags.push_back(rules::HyperscanFlags(leaf.regex_flags));
        ids.push_back(static_cast<unsigned>(m->expressions_.size()));
        m->expressions_.push_back({id, nullptr, false, false});
      }
    }
    std::vector<const char*> exprs;
    for (const std::string& e : owned) exprs.push_back(e.c_str());
    if (exprs.empty()) continue;
    std::string path = cache_dir.empty() ? "" : CachePath(cache_dir, cache_key, slot);
    if (!path.empty()) m->dbs_[slot] = LoadCached(path);
    if (m->dbs_[slot] == nullptr) {
      // A pattern Hyperscan refuses is named; with `every_refusal`, it is
      // left out and the rest compiled again, so that every refused pattern
      // is named in one run (up to kMaxRefusals).
      bool refused_here = false;
      for (;;) {
        hs_compile_error_t* error = nullptr;
        if (hs_compile_multi(exprs.data(), flags.data(), ids.data(),
                             static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK, nullptr,
                             &m->dbs_[slot], &error) == HS_SUCCESS) {
          break;
        }
        std::string reason = error && error->message ? error->message : "unknown error";
        int at = error ? error->expression : -1;
        if (error) hs_free_compile_error(error);
        if (at < 0 || static_cast<size_t>(at) >= exprs.size()) {
          // Hyperscan names no pattern (e.g. "Resource limit exceeded"):
          // the first that it refuses alone is the one, if any is.
          at = -1;
          for (size_t i = 0; i < exprs.size() && at < 0; ++i) {
            hs_database_t* alone = nullptr;
            hs_compile_error_t* alone_error = nullptr;
            if (hs_compile(exprs[i], flags[i], HS_MODE_BLOCK, nullptr, &alone, &alone_error) ==
                HS_SUCCESS) {
              hs_free_database(alone);
              continue;
            }
            at = static_cast<int>(i);
            if (alone_error && alone_error->message) reason = alone_error->message;
            if (alone_error) hs_free_compile_error(alone_error);
          }
          if (at < 0) {
            return Status::InvalidArgument("Hyperscan compile failed: " + reason + " (the " +
                                           std::to_string(exprs.size()) + " patterns of field " +
                                           rules::FieldName(static_cast<rules::Field>(slot / 2)) +
                                           (slot % 2 ? ", folded," : "") + " together)");
          }
        }
        Refusal r{m->expressions_[ids[at]].leaf, *written[at], reason};
        const std::string message =
            "Hyperscan compile failed on pattern '" + r.pattern + "': " + r.message;
        if (refusals) refusals->push_back(std::move(r));
        if (!refusals || !every_refusal) return Status::InvalidArgument(message);
        refused_here = true;
        owned.erase(owned.begin() + at);
        written.erase(written.begin() + at);
        flags.erase(flags.begin() + at);
        ids.erase(ids.begin() + at);
        exprs.clear();
        for (const std::string& e : owned) exprs.push_back(e.c_str());
        if (exprs.empty() || refusals->size() - refusals_before >= kMaxRefusals) break;
      }
      if (refused_here) {
        if (refusals->size() - refusals_before >= kMaxRefusals) break;
        continue;  // never cached or used: the build fails below
      }
      if (compiled) *compiled = true;
      if (!path.empty()) StoreCached(cache_dir, path, m->dbs_[slot]);
    }
    if (hs_alloc_scratch(m->dbs_[slot], &m->prototype_) != HS_SUCCESS) {
      return Status::Internal("Hyperscan could not allocate scratch space");
    }
  }
  if (refusals && refusals->size() > refusals_before) {
    const Refusal& r = (*refusals)[refusals_before];
    return Status::InvalidArgument("Hyperscan compile failed on pattern '" + r.pattern +
                                   "': " + r.message);
  }
  *out = std::move(m);
  return Status::Ok();
}

std::unique_ptr<Matcher::Scratch> Matcher::NewScratch() const {
  std::unique_ptr<Scratch> s(new Scratch());
  if (prototype_ && hs_clone_scratch(prototype_, &s->scratch_) != HS_SUCCESS) {
    s->scratch_ = nullptr;
  }
  return s;
}

namespace {
void FindLiteralSpans(const std::vector<std::string>& literals, std::string_view data,
                      size_t max_spans, std::vector<std::pair<uint32_t, uint32_t>>* spans);
}  // namespace

Status Matcher::Scan(int slot, std::string_view data, Scratch& scratch, MatchFn on_match,
                     void* context) const {
  if (sets_[slot]) {
    thread_local std::vector<int> matched;
    matched.clear();
    sets_[slot]->Match(re2::StringPiece(data.data(), data.size()), &matched);
    for (int i : matched) {
      const uint32_t leaf = set_leaf_[slot][i];
      if (!leaves_[leaf].literals.empty()) {
        // A phrase matched with approximate boundaries: checked here.
        thread_local std::vector<std::pair<uint32_t, uint32_t>> spans;
        spans.clear();
        FindLiteralSpans(leaves_[leaf].literals, data, 1, &spans);
        if (spans.empty()) continue;
      }
      on_match(leaf, kNoSpan, kNoSpan, context);
    }
    return Status::Ok();
  }
  const hs_database_t* db = dbs_[slot];
  if (db == nullptr) return Status::Ok();
  if (scratch.scratch_ == nullptr) return Status::Internal("no Hyperscan scratch space");
  if (data.size() > UINT32_MAX) return Status::InvalidArgument("field larger than 4 GiB");
  ScanContext ctx{this, data, on_match, context};
  hs_error_t rc = hs_scan(db, data.data(), static_cast<unsigned>(data.size()), 0, scratch.scratch_,
                          OnHyperscanMatch, &ctx);
  if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED) {
    return Status::Internal("hs_scan failed with code " + std::to_string(rc));
  }
  return Status::Ok();
}

namespace {

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// Leftmost, non-overlapping occurrences of any literal as whole words,
// ASCII case-insensitively: the semantics of rules::PhrasePattern.
void FindLiteralSpans(const std::vector<std::string>& literals, std::string_view data,
                      size_t max_spans, std::vector<std::pair<uint32_t, uint32_t>>* spans) {
  thread_local std::string lowered;
  thread_local std::vector<std::pair<uint32_t, uint32_t>> found;
  lowered.resize(data.size());
  std::transform(data.begin(), data.end(), lowered.begin(), LowerAscii);
  found.clear();
  for (const std::string& literal : literals) {
    if (literal.empty()) continue;
    const bool word_start = WordCharAt(literal, 0);
    const bool word_end = WordCharBefore(literal, literal.size());
    for (size_t at = lowered.find(literal); at != std::string::npos;
         at = lowered.find(literal, at + 1)) {
      size_t end = at + literal.size();
      if (word_start && WordCharBefore(lowered, at)) continue;
      if (word_end && WordCharAt(lowered, end)) continue;
      found.emplace_back(static_cast<uint32_t>(at), static_cast<uint32_t>(end));
    }
  }
  Matcher::SelectSpans(&found, max_spans, spans);
}

}  // namespace

void Matcher::SelectSpans(std::vector<std::pair<uint32_t, uint32_t>>* found, size_t max_spans,
                          std::vector<std::pair<uint32_t, uint32_t>>* spans) {
  std::sort(found->begin(), found->end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  });
  uint32_t next = 0;
  size_t count = 0;
  for (const auto& span : *found) {
    if (count >= max_spans) break;
    if (span.first < next) continue;
    spans->push_back(span);
    next = span.second;
    ++count;
  }
}

void Matcher::FindSpans(uint32_t leaf_id, std::string_view data, size_t max_spans,
                        std::vector<std::pair<uint32_t, uint32_t>>* spans) const {
  if (!leaves_[leaf_id].literals.empty()) {
    FindLiteralSpans(leaves_[leaf_id].literals, data, max_spans, spans);
    return;
  }
  const RE2& re = *re2_[leaf_id];
  re2::StringPiece input(data.data(), data.size());
  re2::StringPiece match;
  size_t pos = 0;
  size_t found = 0;
  while (pos <= data.size() && found < max_spans) {
    if (!re.Match(input, pos, data.size(), RE2::UNANCHORED, &match, 1)) break;
    uint32_t start = static_cast<uint32_t>(match.data() - data.data());
    uint32_t end = start + static_cast<uint32_t>(match.size());
    spans->emplace_back(start, end);
    ++found;
    pos = end > pos ? end : pos + 1;
  }
}

size_t Matcher::database_bytes() const {
  size_t total = 0;
  for (const hs_database_t* db : dbs_) {
    size_t size = 0;
    if (db && hs_database_size(db, &size) == HS_SUCCESS) total += size;
  }
  return total;
}

}  // namespace carewatch::match
