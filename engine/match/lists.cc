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
  for (const std::string& e : entries_) longest_ = std::max(longest_, e.size());
}

bool CompiledList::Contains(std::string_view value, size_t* probes) const {
  thread_local std::string probe;
  size_t looked_up = 0;
  auto lookup = [&](const std::string& key) {
    ++looked_up;
    return entries_.count(key) > 0;
  };
  auto done = [&](bool found) {
    if (probes) *probes = looked_up;
    return found;
  };
  if (!is_url_) {
    if (value.size() > longest_) return done(false);
    probe.assign(value);
    std::transform(probe.begin(), probe.end(), probe.begin(), ::tolower);
    return done(lookup(probe));
  }
  thread_local NormalizedUrl u;
  if (!NormalizeUrl(value, &u)) return done(false);
  if (u.key.size() <= longest_ && lookup(u.key)) return done(true);
  // Path prefixes at segment boundaries, longest first, then the host and
  // its parent domains. Only keys no longer than the longest entry can be
  // on the list, so only those are copied and hashed: the walk is linear in
  // the URL's length however many segments or labels it has.
  size_t host_port_len = u.key.size() - (u.path == "/" ? 0 : u.path.size()) -
                         (u.query.empty() ? 0 : u.query.size() + 1);
  size_t path_len = u.path.size();
  while (path_len > 1) {
    if (host_port_len + path_len <= longest_) {
      probe.assign(u.key, 0, host_port_len);
      probe.append(u.path, 0, path_len);
      if (lookup(probe)) return done(true);
    }
    size_t slash = u.path.rfind('/', path_len - 1);
    path_len = slash == 0 ? 1 : slash;
  }
  std::string_view host(u.key.data(), host_port_len);
  while (!host.empty()) {
    if (host.size() <= longest_) {
      probe.assign(host);
      if (lookup(probe)) return done(true);
    }
    size_t dot = host.find('.');
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
    if (host.find('.') == std::string_view::npos) break;  // never match a bare TLD
  }
  return done(false);
}

}  // namespace carewatch::match
