#ifndef CAREWATCH_ENGINE_MATCH_URL_H_
#define CAREWATCH_ENGINE_MATCH_URL_H_

#include <optional>
#include <string>
#include <string_view>

namespace carewatch::match {

// A URL reduced to what identifies the resource for list matching.
struct NormalizedUrl {
  std::string host;   // lower case, no "www.", no trailing dot
  std::string path;   // starts with '/', no trailing slash (except "/")
  std::string query;  // without '?', empty if none
  // host + non-default port + path + ("?" query), e.g. "example.test/a/b?x=1"
  std::string key;
};

// Normalises scheme (http, https or none), case of host, a leading "www.",
// default ports (80, 443), a trailing slash, a fragment, and percent-encoded
// unreserved characters in the path. Returns nullopt for strings that have
// no host.
std::optional<NormalizedUrl> NormalizeUrl(std::string_view url);
// The same into `out`, reusing its storage; false when there is no host.
bool NormalizeUrl(std::string_view url, NormalizedUrl* out);

}  // namespace carewatch::match

#endif  // CAREWATCH_ENGINE_MATCH_URL_H_
