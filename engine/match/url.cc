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

// Decodes %XX only where it encodes an unreserved character, and upper-cases
// the hex digits of the rest, so equivalent spellings compare equal.
std::string NormalizePercent(std::string_view s) {
  std::string out;
  out.reserve(s.size());
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
  return out;
}

}  // namespace

std::optional<NormalizedUrl> NormalizeUrl(std::string_view url) {
  // Trim white space.
  while (!url.empty() && std::isspace(static_cast<unsigned char>(url.front()))) url.remove_prefix(1);
  while (!url.empty() && std::isspace(static_cast<unsigned char>(url.back()))) url.remove_suffix(1);
  std::string default_port;
  size_t scheme_end = url.find("://");
  if (scheme_end != std::string_view::npos) {
    std::string scheme(url.substr(0, scheme_end));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
    if (scheme == "http") default_port = "80";
    else if (scheme == "https") default_port = "443";
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
  std::string host(authority);
  std::string port;
  size_t colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']') == std::string::npos) {
    port = host.substr(colon + 1);
    host.resize(colon);
  }
  std::transform(host.begin(), host.end(), host.begin(), ::tolower);
  while (!host.empty() && host.back() == '.') host.pop_back();
  if (host.rfind("www.", 0) == 0) host.erase(0, 4);
  if (host.empty()) return std::nullopt;
  if (port == default_port || port == "80" || port == "443") port.clear();

  NormalizedUrl out;
  out.host = host;
  size_t q = rest.find('?');
  std::string_view path = rest.substr(0, q);
  if (q != std::string_view::npos) out.query = std::string(rest.substr(q + 1));
  out.path = NormalizePercent(path);
  if (out.path.empty()) out.path = "/";
  while (out.path.size() > 1 && out.path.back() == '/') out.path.pop_back();
  out.key = host + (port.empty() ? "" : ":" + port) + (out.path == "/" ? "" : out.path);
  if (!out.query.empty()) out.key += "?" + out.query;
  return out;
}

}  // namespace carewatch::match
