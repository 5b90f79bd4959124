#include "engine/common/url.h"

#include <unicode/bytestream.h>
#include <unicode/idna.h>

#include <algorithm>
#include <cstdint>
#include <memory>

namespace carewatch {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char UpperHex(char c) { return (c >= 'a' && c <= 'f') ? static_cast<char>(c - ('a' - 'A')) : c; }

// Bytes a browser escapes in a path or query (WHATWG's percent-encode sets,
// less '#' and '?', which end them): controls, space, non-ASCII bytes and
// a few delimiters. Appended as %XX, so both spellings are one key.
constexpr bool NeedsEscape(unsigned char c) {
  return c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' ||
         c == '}';
}

// Byte classes, one table lookup a byte on the common paths below.
enum : uint8_t {
  kHostPlain = 1,   // a-z, 0-9, '-' and '.': kept as it is in a host
  kPathPlain = 2,   // kept as it is in a path (not '\\', '%' or escaped)
  kQueryPlain = 4,  // kept as it is in a query
  kForbiddenInHost = 8,
};
struct ByteClasses {
  uint8_t of[256];
  constexpr ByteClasses() : of{} {
    for (int c = 0; c < 256; ++c) {
      const auto b = static_cast<unsigned char>(c);
      uint8_t k = 0;
      if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.') k |= kHostPlain;
      if (!NeedsEscape(b) && c != '\\' && c != '%') k |= kPathPlain;
      if (!NeedsEscape(b)) k |= kQueryPlain;
      if (c <= 0x20 || c == 0x7f || c == '#' || c == '%' || c == '/' || c == ':' || c == '<' ||
          c == '>' || c == '?' || c == '@' || c == '[' || c == '\\' || c == ']' || c == '^' ||
          c == '|')
        k |= kForbiddenInHost;
      of[c] = k;
    }
  }
};
constexpr ByteClasses kClasses;

// Whether every byte of `s` is of class `k`.
bool AllOf(std::string_view s, uint8_t k) {
  uint8_t all = k;
  for (unsigned char c : s) all &= kClasses.of[c];
  return all != 0;
}

void AppendEscaped(unsigned char c, std::string& key) {
  if (!NeedsEscape(c)) {
    key += static_cast<char>(c);
    return;
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  key += '%';
  key += kHex[c >> 4];
  key += kHex[c & 15];
}

bool IsAlnumAscii(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsUnreserved(unsigned char c) {
  return IsAlnumAscii(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// ASCII only, whatever the locale (host names are compared as ASCII).
char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }
bool IsSpaceAscii(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

bool EqualsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (LowerAscii(s[i]) != lower[i]) return false;
  }
  return true;
}

// The length of a scheme and its ':' at the start of `url` (RFC 3986:
// ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"), or 0.
size_t SchemeLength(std::string_view url) {
  if (url.empty() || !((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
    return 0;
  for (size_t i = 1; i < url.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(url[i]);
    if (c == ':') return i + 1;
    if (!IsAlnumAscii(c) && c != '+' && c != '-' && c != '.') return 0;
  }
  return 0;
}

// Whether a host holds a byte no host name may (WHATWG's forbidden host
// code points, and '%' left undecoded). IPv6 addresses are parsed apart.
bool HasForbiddenHostByte(std::string_view host) {
  for (unsigned char c : host) {
    if (kClasses.of[c] & kForbiddenInHost) return true;
  }
  return false;
}

// WHATWG's "ends in a number": the last label is decimal digits or 0x hex.
bool EndsInNumber(std::string_view host) {
  const size_t dot = host.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return true;
  return last.size() >= 2 && last[0] == '0' && last[1] == 'x' &&
         std::all_of(last.begin() + 2, last.end(), [](char c) { return HexValue(c) >= 0; });
}

// WHATWG's IPv4 parser: one to four parts, each decimal, 0x hex or
// 0-led octal; the last fills the bytes the others leave. false when a part
// is no number or a value does not fit.
bool ParseIpv4(std::string_view host, std::string* dotted) {
  uint64_t parts[4];
  int n = 0;
  while (true) {
    const size_t dot = host.find('.');
    std::string_view part = host.substr(0, dot);
    if (n == 4 || part.empty()) return false;
    int base = 10;
    if (part.size() >= 2 && part[0] == '0' && part[1] == 'x') {
      base = 16;
      part.remove_prefix(2);
    } else if (part.size() >= 2 && part[0] == '0') {
      base = 8;
      part.remove_prefix(1);
    }
    uint64_t value = 0;
    for (char c : part) {
      const int digit = HexValue(c);
      if (digit < 0 || digit >= base) return false;
      value = value * base + digit;
      if (value > 0xFFFFFFFFull) return false;
    }
    parts[n++] = value;
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
  }
  uint64_t address = parts[n - 1];
  if (address >= (uint64_t{1} << (8 * (5 - n)))) return false;
  for (int i = 0; i < n - 1; ++i) {
    if (parts[i] > 255) return false;
    address += parts[i] << (8 * (3 - i));
  }
  dotted->clear();
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (shift != 24) *dotted += '.';
    *dotted += std::to_string((address >> shift) & 0xFF);
  }
  return true;
}

// WHATWG's IPv6 parser, on what is between the brackets: eight 16-bit
// pieces, "::" for one run of zeros, the last 32 bits in dotted decimal if
// wished. false when it is no IPv6 address.
bool ParseIpv6(std::string_view in, uint16_t address[8]) {
  std::fill(address, address + 8, 0);
  size_t p = 0;
  int piece = 0, compress = -1;
  auto at = [&](size_t i) { return i < in.size() ? in[i] : '\0'; };
  if (at(0) == ':') {
    if (at(1) != ':') return false;
    p = 2;
    compress = ++piece;
  }
  while (p < in.size()) {
    if (piece == 8) return false;
    if (in[p] == ':') {
      if (compress != -1) return false;
      ++p;
      compress = ++piece;
      continue;
    }
    int value = 0, length = 0;
    while (length < 4 && HexValue(at(p)) >= 0) {
      value = value * 16 + HexValue(at(p));
      ++p;
      ++length;
    }
    if (at(p) == '.') {  // the last two pieces as an IPv4 address
      if (length == 0 || piece > 6) return false;
      p -= length;
      int numbers = 0;
      while (p < in.size()) {
        if (numbers > 0) {
          if (in[p] != '.' || numbers >= 4) return false;
          ++p;
        }
        if (at(p) < '0' || at(p) > '9') return false;
        int part = -1;
        while (at(p) >= '0' && at(p) <= '9') {
          if (part == 0) return false;  // no leading zero
          part = (part < 0 ? 0 : part * 10) + (at(p) - '0');
          if (part > 255) return false;
          ++p;
        }
        address[piece] = static_cast<uint16_t>(address[piece] * 0x100 + part);
        if (++numbers == 2 || numbers == 4) ++piece;
      }
      if (numbers != 4) return false;
      break;
    }
    if (at(p) == ':') {
      if (++p == in.size()) return false;
    } else if (p < in.size()) {
      return false;
    }
    address[piece++] = static_cast<uint16_t>(value);
  }
  if (compress != -1) {
    for (int swaps = piece - compress, i = 7; i != 0 && swaps > 0; --i, --swaps)
      std::swap(address[i], address[compress + swaps - 1]);
  } else if (piece != 8) {
    return false;
  }
  return true;
}

// WHATWG's IPv6 serialiser: lower-case hex without leading zeros, the first
// longest run of two or more zero pieces as "::", in brackets.
void AppendIpv6(const uint16_t address[8], std::string& key) {
  int compress = -1, best = 1;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && address[j] == 0) ++j;
    if (j - i > best) {
      best = j - i;
      compress = i;
    }
    i = j == i ? i + 1 : j;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  key += '[';
  for (int i = 0; i < 8; ++i) {
    if (i == compress) {
      key += i == 0 ? "::" : ":";
      i += best - 1;
      continue;
    }
    bool digits = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      const int d = (address[i] >> shift) & 15;
      if (d == 0 && !digits && shift > 0) continue;
      digits = true;
      key += kHex[d];
    }
    if (i != 7) key += ':';
  }
  key += ']';
}

// Appends `host` to `key`, percent-decoded, lower-cased and in IDNA ASCII,
// without trailing dots or a leading "www."; false (and `key` as it was)
// when it is no host name.
bool AppendHost(std::string_view host, std::string& key) {
  const size_t start = key.size();
  // An IPv6 address in brackets, in its one serialisation ("[0:0::1]" and
  // "[::0001]" are "[::1]"); nothing in it is decoded.
  if (!host.empty() && host.front() == '[') {
    uint16_t address[8];
    if (host.size() < 2 || host.back() != ']' ||
        !ParseIpv6(host.substr(1, host.size() - 2), address))
      return false;
    AppendIpv6(address, key);
    return true;
  }
  // Nearly every host: lower-case letters, digits, '-' and '.', already
  // as the key holds it but for a trailing dot or "www.".
  const bool plain = AllOf(host, kHostPlain);
  if (plain) {
    key.append(host);
    host = {};
  }
  bool ascii = true;
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    // Escapes of what a host name may hold (and of UTF-8 bytes, for IDNA);
    // an escaped '/', ':' or '@' stays escaped.
    if (c == '%' && i + 2 < host.size()) {
      const int hi = HexValue(host[i + 1]), lo = HexValue(host[i + 2]);
      const unsigned char decoded = static_cast<unsigned char>(hi * 16 + lo);
      if (hi >= 0 && lo >= 0 && (IsUnreserved(decoded) || decoded >= 0x80)) {
        c = static_cast<char>(decoded);
        i += 2;
      }
    }
    ascii &= static_cast<unsigned char>(c) < 0x80;
    key += LowerAscii(c);
  }
  while (key.size() > start && key.back() == '.') key.pop_back();
  if (!ascii) {
    thread_local std::string converted;
    if (HostToAscii(std::string_view(key).substr(start), &converted)) {
      key.resize(start);
      key += converted;
    }
  }
  while (key.size() > start && key.back() == '.') key.pop_back();
  // A host whose last label is a number is an IPv4 address, in any of the
  // forms browsers take ("3232235777", "0xc0.0250.1.1", "192.168.257" are
  // all 192.168.1.1): written dotted-decimal, or no host when invalid.
  if (EndsInNumber(std::string_view(key).substr(start))) {
    std::string dotted;
    if (!ParseIpv4(std::string_view(key).substr(start), &dotted)) {
      key.resize(start);
      return false;
    }
    key.resize(start);
    key += dotted;
    return true;
  }
  size_t www = start;  // "www.www.a.test" is a.test too
  while (key.compare(www, 4, "www.") == 0) www += 4;
  key.erase(start, www - start);
  // A host "http" or "https" would read back as a scheme: no host a URL
  // names (only user info can leave one: "x@https:80").
  const std::string_view name = std::string_view(key).substr(start);
  if (name.empty() || name == "http" || name == "https" || (!plain && HasForbiddenHostByte(name))) {
    key.resize(start);
    return false;
  }
  return true;
}

// Appends the '%' at s[i] and what it starts to `key` as a key holds
// them: an escaped unreserved character decoded, another escape's hex
// digits upper-cased, a '%' that starts no escape written "%25" (kept bare,
// an escape decoded after it could make a new one: "%%66" would be "%f6",
// read again "%F6", and the key would not be its own key). Returns the
// bytes read.
size_t AppendPercent(std::string_view s, size_t i, std::string& key) {
  const int hi = i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
  const int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
  if (hi < 0 || lo < 0) {
    key += "%25";
    return 1;
  }
  const unsigned char decoded = static_cast<unsigned char>(hi * 16 + lo);
  if (IsUnreserved(decoded)) {
    key += static_cast<char>(decoded);
  } else {
    key += '%';
    key += UpperHex(s[i + 1]);
    key += UpperHex(s[i + 2]);
  }
  return 3;
}

// Appends the path to `key`: backslashes as slashes, percent-encoded
// unreserved characters decoded and the other escapes' hex digits
// upper-cased, "." and ".." segments resolved (RFC 3986 5.2.4; ".." never
// goes above the root), a trailing slash dropped. Appends nothing for "/".
void AppendPath(std::string_view path, std::string& key) {
  const size_t root = key.size();
  // Nearly every path: from '/', nothing to decode, escape or resolve.
  bool dot_segment = false;  // a segment starting with '.'
  for (size_t i = 1; i < path.size(); ++i) dot_segment |= path[i] == '.' && path[i - 1] == '/';
  if (!path.empty() && path.front() == '/' && AllOf(path, kPathPlain) && !dot_segment) {
    key.append(path);
    while (key.size() > root && key.back() == '/') key.pop_back();
    return;
  }
  // The segment being written starts after key[segment - 1], a '/'.
  size_t segment = std::string::npos;
  auto end_segment = [&]() {
    if (segment == std::string::npos) return;
    const std::string_view name = std::string_view(key).substr(segment);
    if (name == ".") {
      key.resize(segment - 1);
    } else if (name == "..") {
      key.resize(segment - 1);
      const size_t slash = key.rfind('/');
      key.resize(slash == std::string::npos || slash < root ? root : slash);
    }
  };
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '\\') c = '/';
    if (c == '/') {
      end_segment();
      key += '/';
      segment = key.size();
      continue;
    }
    if (segment == std::string::npos) {  // a path that does not start with '/'
      key += '/';
      segment = key.size();
    }
    if (c == '%') {
      i += AppendPercent(path, i, key) - 1;
      continue;
    }
    AppendEscaped(static_cast<unsigned char>(c), key);
  }
  end_segment();
  while (key.size() > root && key.back() == '/') key.pop_back();
}

// Appends the query to `key` as RFC 3986 (2.1, 2.3, 6.2.2) holds it
// equivalent: its escapes as AppendPercent writes them, the bytes browsers
// escape escaped; nothing else changed (not '+', not the order of
// parameters, not an escaped delimiter such as "%26").
void AppendQuery(std::string_view query, std::string& key) {
  if (query.find('%') == std::string_view::npos && AllOf(query, kQueryPlain)) {
    key.append(query);
    return;
  }
  for (size_t i = 0; i < query.size(); ++i) {
    if (query[i] == '%') {
      i += AppendPercent(query, i, key) - 1;
    } else {
      AppendEscaped(static_cast<unsigned char>(query[i]), key);
    }
  }
}

}  // namespace

bool HostToAscii(std::string_view host, std::string* out) {
  static const std::unique_ptr<icu::IDNA> idna = [] {
    UErrorCode err = U_ZERO_ERROR;
    std::unique_ptr<icu::IDNA> p(
        icu::IDNA::createUTS46Instance(UIDNA_NONTRANSITIONAL_TO_ASCII | UIDNA_CHECK_BIDI, err));
    return U_SUCCESS(err) ? std::move(p) : nullptr;
  }();
  if (!idna) return false;
  while (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  UErrorCode err = U_ZERO_ERROR;
  out->clear();
  icu::StringByteSink<std::string> sink(out);
  icu::IDNAInfo info;
  idna->nameToASCII_UTF8(icu::StringPiece(host.data(), static_cast<int32_t>(host.size())), sink,
                         info, err);
  return U_SUCCESS(err) && !info.hasErrors() && !out->empty();
}

std::optional<NormalizedUrl> NormalizeUrl(std::string_view url) {
  NormalizedUrl out;
  if (!NormalizeUrl(url, &out)) return std::nullopt;
  return out;
}

bool NormalizeUrl(std::string_view url, NormalizedUrl* out) {
  while (!url.empty() && IsSpaceAscii(url.front())) url.remove_prefix(1);
  while (!url.empty() && IsSpaceAscii(url.back())) url.remove_suffix(1);
  const size_t fragment = url.find('#');
  if (fragment != std::string_view::npos) url = url.substr(0, fragment);

  // A scheme only at the start. http and https (and no scheme, read as
  // http) take any slashes and backslashes after it, as browsers do; other
  // schemes need "//" for an authority.
  bool special = true;
  if (const size_t scheme = SchemeLength(url); scheme > 0) {
    const std::string_view name = url.substr(0, scheme - 1);
    if (EqualsLower(name, "http") || EqualsLower(name, "https")) {
      url.remove_prefix(scheme);
      while (!url.empty() && (url.front() == '/' || url.front() == '\\')) url.remove_prefix(1);
    } else if (url.substr(scheme, 2) == "//") {
      url.remove_prefix(scheme + 2);
      special = false;
    }
    // Else not a scheme but a host and port ("a.test:8080/x"), or a
    // scheme with no authority ("mailto:..."): read as it is.
  } else if (url.substr(0, 2) == "//") {
    url.remove_prefix(2);
  }

  // (A loop: find_first_of calls memchr over the set for every byte.)
  size_t authority_end = 0;
  while (authority_end < url.size() && url[authority_end] != '/' && url[authority_end] != '?' &&
         !(special && url[authority_end] == '\\'))
    ++authority_end;
  std::string_view authority = url.substr(0, authority_end);
  std::string_view rest = url.substr(authority_end);
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);  // drop user info
  std::string_view port;
  const size_t bracket = authority.rfind(']');
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
  }
  // A port is a number up to 65535; leading zeros dropped ("0443" is 443).
  for (char c : port) {
    if (c < '0' || c > '9') return false;
  }
  if (!port.empty()) {
    const size_t nonzero = port.find_first_not_of('0');
    port = nonzero == std::string_view::npos ? port.substr(port.size() - 1) : port.substr(nonzero);
    if (port.size() > 5 || (port.size() == 5 && port > "65535")) return false;
  }
  if (port == "80" || port == "443") port = {};

  std::string& key = out->key;
  key.clear();
  if (!AppendHost(authority, key)) return false;
  out->host_size = key.size();
  if (!port.empty()) {
    key += ':';
    key.append(port);
  }
  out->authority_size = key.size();
  const size_t q = rest.find('?');
  AppendPath(rest.substr(0, q), key);
  out->path_size = key.size() - out->authority_size;
  if (q != std::string_view::npos && q + 1 < rest.size()) {
    key += '?';
    AppendQuery(rest.substr(q + 1), key);
  }
  return true;
}

}  // namespace carewatch
