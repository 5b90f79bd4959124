#include "engine/server/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "engine/common/digest.h"

namespace carewatch::server {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kPlatform:
      return "platform";
    case Role::kRegulator:
      return "regulator";
    case Role::kRuleAuthor:
      return "rule_author";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

bool ParseRole(const std::string& s, Role* out) {
  if (s == "platform")
    *out = Role::kPlatform;
  else if (s == "regulator")
    *out = Role::kRegulator;
  else if (s == "rule_author")
    *out = Role::kRuleAuthor;
  else if (s == "admin")
    *out = Role::kAdmin;
  else
    return false;
  return true;
}

Status TokenStore::Load(const std::string& path, TokenStore* out) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap() || !root["tokens"] || !root["tokens"].IsSequence()) {
    return Status::InvalidArgument(
        path + ": expected `tokens:` with a list of {sha256, principal, role, service_id}");
  }
  TokenStore store;
  for (const auto& t : root["tokens"]) {
    std::string where = path + ":" + std::to_string(t.Mark().line + 1);
    if (!t.IsMap()) return Status::InvalidArgument(where + ": each token is a mapping");
    std::set<std::string> seen;
    for (const auto& kv : t) {
      std::string k = kv.first.as<std::string>("");
      if (k != "sha256" && k != "principal" && k != "role" && k != "service_id") {
        return Status::InvalidArgument(where + ": unknown key '" + k.substr(0, 40) + "'");
      }
      // YAML's first-wins reading of a repeated key would let a line say
      // two roles; a repeated key is refused.
      if (!seen.insert(k).second) {
        return Status::InvalidArgument(where + ": key '" + k + "' is given twice");
      }
    }
    auto get = [&](const char* k) {
      return t[k] && t[k].IsScalar() ? t[k].Scalar() : std::string();
    };
    std::string digest = get("sha256"), name = get("principal"), role = get("role");
    Principal p;
    p.name = name;
    p.service_id = get("service_id");
    if (digest.size() != 64 || digest.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return Status::InvalidArgument(
          where + ": sha256 must be 64 lower-case hex digits (the digest, never the token)");
    }
    if (name.empty()) return Status::InvalidArgument(where + ": principal is required");
    if (name.size() > 256) {
      return Status::InvalidArgument(where + ": principal is longer than 256 bytes");
    }
    if (!ParseRole(role, &p.role)) {
      return Status::InvalidArgument(where +
                                     ": role must be platform, regulator, rule_author or admin");
    }
    if (p.role == Role::kPlatform && p.service_id.empty()) {
      return Status::InvalidArgument(where + ": a platform token needs its service_id");
    }
    if (!store.by_digest_.emplace(digest, p).second) {
      return Status::InvalidArgument(where + ": the same token digest is listed twice");
    }
  }
  *out = std::move(store);
  return Status::Ok();
}

Status TokenStore::Authenticate(const std::string& authorization, Principal* out) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.empty())
    return Status::FailedPrecondition(
        "no token: send the header `authorization: Bearer TOKEN` (the CLI's --token)");
  if (authorization.compare(0, kBearer.size(), kBearer) != 0 ||
      authorization.size() == kBearer.size()) {
    return Status::FailedPrecondition("authorization must be `Bearer TOKEN`");
  }
  std::string digest = Sha256Hex(std::string_view(authorization).substr(kBearer.size()));
  auto it = by_digest_.find(digest);
  if (it == by_digest_.end()) return Status::FailedPrecondition("unknown token");
  *out = it->second;
  return Status::Ok();
}

std::string NewToken() {
  unsigned char raw[24];
  RAND_bytes(raw, sizeof raw);
  return "cw_" + HexEncode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
}

std::string TokenLine(const std::string& token, const std::string& principal, Role role,
                      const std::string& service_id) {
  // Written by a YAML emitter: whatever a principal's name holds, it is one
  // quoted scalar, never a key of its own.
  YAML::Emitter out;
  out << YAML::Flow << YAML::BeginMap << YAML::Key << "sha256" << YAML::Value << Sha256Hex(token)
      << YAML::Key << "principal" << YAML::Value << YAML::DoubleQuoted << principal << YAML::Key
      << "role" << YAML::Value << RoleName(role);
  if (!service_id.empty())
    out << YAML::Key << "service_id" << YAML::Value << YAML::DoubleQuoted << service_id;
  out << YAML::EndMap;
  return std::string("  - ") + out.c_str();
}

}  // namespace carewatch::server
