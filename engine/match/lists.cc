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

CompiledList::CompiledList(const rules::ListDef& def)
    : is_url_(def.kind == rules::ListDef::Kind::kUrl) {
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
  thread_local std::string probe;
  if (!is_url_) {
    probe.assign(value);
    std::transform(probe.begin(), probe.end(), probe.begin(), ::tolower);
    return entries_.count(probe) > 0;
  }
  thread_local NormalizedUrl u;
  if (!NormalizeUrl(value, &u)) return false;
  if (entries_.count(u.key)) return true;
  // Path prefixes at segment boundaries, longest first, then the host and
  // its parent domains.
  size_t host_port_len = u.key.size() - (u.path == "/" ? 0 : u.path.size()) -
                         (u.query.empty() ? 0 : u.query.size() + 1);
  probe.assign(u.key, 0, host_port_len);
  size_t path_len = u.path.size();
  while (path_len > 1) {
    probe.resize(host_port_len);
    probe.append(u.path, 0, path_len);
    if (entries_.count(probe)) return true;
    size_t slash = u.path.rfind('/', path_len - 1);
    path_len = slash == 0 ? 1 : slash;
  }
  std::string_view host(u.key.data(), host_port_len);
  while (!host.empty()) {
    probe.assign(host);
    if (entries_.count(probe)) return true;
    size_t dot = host.find('.');
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
    if (host.find('.') == std::string_view::npos) break;  // never match a bare TLD
  }
  return false;
}

}  // namespace carewatch::match
