#ifndef CAREWATCH_ENGINE_MATCH_LISTS_H_
#define CAREWATCH_ENGINE_MATCH_LISTS_H_

#include <string>
#include <string_view>
#include <unordered_set>

#include "engine/rules/ruleset.h"

namespace carewatch::match {

// An exact-match list compiled for lookups. Immutable after construction,
// shared read-only between threads.
//
// URL lists: an entry with a query matches that exact URL; an entry with a
// path matches that path and everything below it ("a.test/x" matches
// "https://www.A.test/x/y", not "a.test/xy"); a bare host matches the host
// and its subdomains. Both sides are normalised first (url.h).
// Hash lists: hex digests compared case-insensitively.
class CompiledList {
 public:
  explicit CompiledList(const rules::ListDef& def);

  bool is_url() const { return is_url_; }
  // True when `value` (a URL or a hex digest) is on the list. Linear in the
  // length of `value`: only prefixes and parent domains no longer than the
  // list's longest entry are looked up (`probes`, when given, counts them).
  bool Contains(std::string_view value, size_t* probes = nullptr) const;
  size_t size() const { return entries_.size(); }

 private:
  bool is_url_;
  std::unordered_set<std::string> entries_;
  size_t longest_ = 0;  // bytes of the longest entry
};

}  // namespace carewatch::match

#endif  // CAREWATCH_ENGINE_MATCH_LISTS_H_
