#include "engine/match/url.h"

#include <algorithm>
#include <cctype>

namespace carewatch::match {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsUnreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// ASCII only, whatever the locale (host names are compared as ASCII).
char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }
bool IsSpaceAscii(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Decodes %XX only where it encodes an unreserved character, and upper-cases
// the hex digits of the rest, so equivalent spellings compare equal.
void NormalizePercent(std::string_view s, std::string& out) {
  if (s.find('%') == std::string_view::npos) {  // nearly every path
    out.assign(s);
    return;
  }
  out.clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        unsigned char c = static_cast<unsigned char>(hi * 16 + lo);
        if (IsUnreserved(c)) {
          out += static_cast<char>(c);
        } else {
          out += '%';
          out += static_cast<char>(std::toupper(static_cast<unsigned char>(s[i + 1])));
          out += static_cast<char>(std::toupper(static_cast<unsigned char>(s[i + 2])));
        }
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
}

}  // namespace

std::optional<NormalizedUrl> NormalizeUrl(std::string_view url) {
  NormalizedUrl out;
  if (!NormalizeUrl(url, &out)) return std::nullopt;
  return out;
}

bool NormalizeUrl(std::string_view url, NormalizedUrl* out) {
  // Trim white space.
  while (!url.empty() && IsSpaceAscii(url.front())) url.remove_prefix(1);
  while (!url.empty() && IsSpaceAscii(url.back())) url.remove_suffix(1);
  std::string_view default_port;
  size_t scheme_end = url.find("://");
  if (scheme_end != std::string_view::npos) {
    std::string_view scheme = url.substr(0, scheme_end);
    auto is = [&](std::string_view name) {
      return scheme.size() == name.size() &&
             std::equal(scheme.begin(), scheme.end(), name.begin(),
                        [](char a, char b) { return LowerAscii(a) == b; });
    };
    if (is("http"))
      default_port = "80";
    else if (is("https"))
      default_port = "443";
    url.remove_prefix(scheme_end + 3);
  } else if (url.substr(0, 2) == "//") {
    url.remove_prefix(2);
  }
  size_t fragment = url.find('#');
  if (fragment != std::string_view::npos) url = url.substr(0, fragment);
  size_t authority_end = url.find_first_of("/?");
  std::string_view authority = url.substr(0, authority_end);
  std::string_view rest = authority_end == std::string_view::npos ? "" : url.substr(authority_end);
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);  // drop user info
  std::string_view port;
  size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
  }
  while (!authority.empty() && authority.back() == '.') authority.remove_suffix(1);
  std::string& host = out->host;
  host.resize(authority.size());
  std::transform(authority.begin(), authority.end(), host.begin(), LowerAscii);
  if (host.rfind("www.", 0) == 0) host.erase(0, 4);
  if (host.empty()) return false;
  if (port == default_port || port == "80" || port == "443") port = {};

  size_t q = rest.find('?');
  std::string_view path = rest.substr(0, q);
  if (q != std::string_view::npos) {
    out->query.assign(rest.substr(q + 1));
  } else {
    out->query.clear();
  }
  NormalizePercent(path, out->path);
  if (out->path.empty()) out->path = "/";
  while (out->path.size() > 1 && out->path.back() == '/') out->path.pop_back();
  std::string& key = out->key;
  key.assign(host);
  if (!port.empty()) {
    key += ':';
    key.append(port);
  }
  if (out->path != "/") key += out->path;
  if (!out->query.empty()) {
    key += '?';
    key += out->query;
  }
  return true;
}

}  // namespace carewatch::match
