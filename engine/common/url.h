#ifndef CAREWATCH_ENGINE_COMMON_URL_H_
#define CAREWATCH_ENGINE_COMMON_URL_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace carewatch {

// A URL reduced to what identifies the resource for list matching: one
// string, `key`, and where its parts are in it.
struct NormalizedUrl {
  // host + non-default port + path (none when it is "/") + ("?" query),
  // e.g. "example.test/a/b?x=1"
  std::string key;
  size_t host_size = 0;       // key[0, host_size): the host
  size_t authority_size = 0;  // the host and ":port"
  size_t path_size = 0;       // after the authority; 0 when the path is "/"

  // Lower case, IDNA ASCII, no "www.", no trailing dot.
  std::string_view host() const { return std::string_view(key).substr(0, host_size); }
  // Starts with '/', no trailing slash (except "/"), no dot segments.
  std::string_view path() const {
    return path_size == 0 ? std::string_view("/")
                          : std::string_view(key).substr(authority_size, path_size);
  }
  // Without '?'; empty if none.
  std::string_view query() const {
    const size_t q = authority_size + path_size;
    return q < key.size() ? std::string_view(key).substr(q + 1) : std::string_view();
  }
};

// A host name in its ASCII (punycode) form, lower case, without a trailing
// dot (UTS #46, nontransitional, with the Bidi rule); false when IDNA
// refuses it. Also the check of an email's domain and a profile URL's host.
bool HostToAscii(std::string_view host, std::string* out);

// Normalises the spellings a browser takes to the same place:
// - a scheme only at the start ("://" in a query is not one); http and
//   https also without slashes or with backslashes ("https:\\a.test");
//   no scheme is read as http;
// - the host percent-decoded, lower-cased, in IDNA ASCII (UTS #46: "bücher"
//   and "xn--bcher-kva" alike; a host IDNA refuses is kept as it is), a
//   leading "www." and trailing dots dropped; user info dropped; a host
//   whose last label is a number read as an IPv4 address in any form
//   browsers take ("3232235777", "0xc0.0250.1.1") and written dotted, or
//   no host when it is not a valid one;
// - the default ports (80, 443) dropped, leading zeros of a port dropped;
// - in the path, backslashes as slashes, percent-encoded unreserved
//   characters decoded (other escapes upper-cased, a '%' that starts no
//   escape written "%25"), "." and ".." segments resolved, a trailing
//   slash dropped;
// - in the path and the query, spaces, controls, non-ASCII bytes and
//   " < > ` { } percent-encoded, as browsers send them;
// - in the query, escapes as in the path (unreserved characters decoded,
//   other escapes upper-cased, a stray '%' written "%25"), nothing else
//   changed ('+', the order of parameters and escaped delimiters kept);
// - a fragment dropped.
// A host with a byte no host name may hold (space, '%', ':', '@', ...),
// or a port that is not a number up to 65535, is no URL.
// Returns nullopt for strings that have no host.
std::optional<NormalizedUrl> NormalizeUrl(std::string_view url);
// The same into `out`, reusing its storage; false when there is no host.
bool NormalizeUrl(std::string_view url, NormalizedUrl* out);

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_URL_H_
