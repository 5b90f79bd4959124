#include "engine/match/lists.h"

#include <algorithm>

#include "engine/match/url.h"

namespace carewatch::match {

namespace {
std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), ::tolower);
  return out;
}
}  // namespace

CompiledList::CompiledList(const rules::ListDef& def) : is_url_(def.kind == rules::ListDef::Kind::kUrl) {
  for (const std::string& e : def.entries) {
    if (is_url_) {
      auto u = NormalizeUrl(e);
      if (u) entries_.insert(u->key);
    } else {
      entries_.insert(Lower(e));
    }
  }
}

bool CompiledList::Contains(std::string_view value) const {
  if (!is_url_) return entries_.count(Lower(value)) > 0;
  auto u = NormalizeUrl(value);
  if (!u) return false;
  if (entries_.count(u->key)) return true;
  // Path prefixes at segment boundaries, longest first, then the host and
  // its parent domains.
  std::string host_port = u->key.substr(0, u->key.size() - (u->path == "/" ? 0 : u->path.size()) -
                                               (u->query.empty() ? 0 : u->query.size() + 1));
  std::string path = u->path;
  while (path.size() > 1) {
    if (entries_.count(host_port + path)) return true;
    size_t slash = path.rfind('/');
    path.resize(slash == 0 ? 1 : slash);
  }
  std::string_view host = host_port;
  while (!host.empty()) {
    if (entries_.count(std::string(host))) return true;
    size_t dot = host.find('.');
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
    if (host.find('.') == std::string_view::npos) break;  // never match a bare TLD
  }
  return false;
}

}  // namespace carewatch::match
