#ifndef CAREWATCH_ENGINE_SERVER_AUTH_H_
#define CAREWATCH_ENGINE_SERVER_AUTH_H_

#include <map>
#include <string>

#include "engine/common/status.h"

namespace carewatch::server {

enum class Role { kPlatform, kRegulator, kRuleAuthor, kAdmin };
const char* RoleName(Role r);

struct Principal {
  std::string name;
  Role role = Role::kPlatform;
  std::string service_id;  // platforms only: the one service they act for
};

// Bearer tokens, kept only as SHA-256 digests. Tokens are never logged.
class TokenStore {
 public:
  // Reads a tokens file (YAML: tokens: [{sha256, principal, role, service_id}]).
  static Status Load(const std::string& path, TokenStore* out);
  // Looks up an "authorization" header value ("Bearer TOKEN").
  // Unauthenticated when absent, malformed or unknown.
  Status Authenticate(const std::string& authorization, Principal* out) const;
  size_t size() const { return by_digest_.size(); }

 private:
  std::map<std::string, Principal> by_digest_;
};

// A new random token and its tokens-file line.
std::string NewToken();
std::string TokenLine(const std::string& token, const std::string& principal, Role role,
                      const std::string& service_id);
bool ParseRole(const std::string& s, Role* out);

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_AUTH_H_
