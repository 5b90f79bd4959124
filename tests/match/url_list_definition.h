#ifndef CAREWATCH_TESTS_MATCH_URL_LIST_DEFINITION_H_
#define CAREWATCH_TESTS_MATCH_URL_LIST_DEFINITION_H_

// A URL list's answer by its definition (engine/match/lists.h), written
// apart from CompiledList for tests and fuzz targets to check it against:
// every key looked up, none skipped for its length or its shape (the
// value's whole key, each path prefix at a segment boundary, its host and
// each parent domain but a bare TLD).

#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "engine/common/url.h"
#include "engine/rules/ruleset.h"

namespace carewatch::testing {

inline bool UrlListContainsByDefinition(const rules::ListDef& list, std::string_view value) {
  std::set<std::string, std::less<>> keys;
  for (size_t i = 0; i < list.entries.size(); ++i) {
    NormalizedUrl e;
    if (NormalizeUrl(list.entries[i], &e)) keys.insert(e.key);
  }
  NormalizedUrl u;
  if (!NormalizeUrl(value, &u)) return false;
  const std::string_view key = u.key;
  if (keys.count(key)) return true;
  const size_t end = u.authority_size + u.path_size;
  for (size_t i = end; i > u.authority_size; --i) {
    if ((i == end || key[i] == '/') && keys.count(key.substr(0, i))) return true;
  }
  std::string_view host = key.substr(0, u.authority_size);
  for (bool first = true;; first = false) {
    if ((first || host.find('.') != std::string_view::npos) && keys.count(host)) return true;
    const size_t dot = host.find('.');
    if (dot == std::string_view::npos) return false;
    host.remove_prefix(dot + 1);
  }
}

}  // namespace carewatch::testing

#endif  // CAREWATCH_TESTS_MATCH_URL_LIST_DEFINITION_H_
