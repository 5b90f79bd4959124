#include "engine/server/config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

#include "engine/rules/duration.h"

namespace carewatch::server {

namespace {

std::string Where(const std::string& path, const YAML::Node& n) {
  return path + ":" + std::to_string(n.Mark().line + 1) + ":" + std::to_string(n.Mark().column + 1);
}

bool ValidHostPort(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  std::string port = s.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5) return false;
  int p = std::stoi(port);
  return p >= 0 && p <= 65535;
}

}  // namespace

Status LoadConfigFile(const std::string& path, ServerConfig* c) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status::InvalidArgument(path + ": cannot read the config file");
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                   std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (!root || root.IsNull()) return Status::Ok();
  if (!root.IsMap()) return Status::InvalidArgument(path + ": the config must be a mapping");
  const std::set<std::string> known = {"listen",
                                       "rules",
                                       "accountability",
                                       "ledger",
                                       "tokens",
                                       "tls_cert",
                                       "tls_key",
                                       "tls_client_ca",
                                       "metrics",
                                       "signing_key",
                                       "hmac_key",
                                       "cache_dir",
                                       "max_message_bytes",
                                       "max_field_bytes",
                                       "max_urls",
                                       "max_hashes",
                                       "workers",
                                       "max_streams",
                                       "sweep_interval_ms",
                                       "max_clock_skew",
                                       "origin",
                                       "retention",
                                       "lists_anywhere",
                                       "insecure_plaintext",
                                       "noop_service"};
  try {
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (!known.count(key))
        return Status::InvalidArgument(Where(path, kv.first) + ": unknown setting '" + key + "'");
      auto str = [&]() -> std::string {
        if (!v.IsScalar()) throw YAML::TypedBadConversion<std::string>(v.Mark());
        return v.Scalar();
      };
      auto list = [&]() {
        std::vector<std::string> out;
        if (v.IsScalar())
          out.push_back(v.Scalar());
        else if (v.IsSequence())
          for (const auto& x : v) out.push_back(x.as<std::string>());
        else
          throw YAML::TypedBadConversion<std::string>(v.Mark());
        return out;
      };
      auto num = [&]() -> int64_t {
        std::string s = str();
        size_t used = 0;
        int64_t n = std::stoll(s, &used);
        if (used != s.size()) throw std::invalid_argument(s);
        return n;
      };
      try {
        if (key == "listen")
          c->listen = str();
        else if (key == "rules")
          c->rules = list();
        else if (key == "accountability")
          c->accountability = list();
        else if (key == "ledger")
          c->ledger = str();
        else if (key == "tokens")
          c->tokens = str();
        else if (key == "tls_cert")
          c->tls_cert = str();
        else if (key == "tls_key")
          c->tls_key = str();
        else if (key == "tls_client_ca")
          c->tls_client_ca = str();
        else if (key == "metrics")
          c->metrics = str();
        else if (key == "signing_key")
          c->signing_key = str();
        else if (key == "hmac_key")
          c->hmac_key = str();
        else if (key == "cache_dir")
          c->cache_dir = str();
        else if (key == "max_message_bytes")
          c->max_message_bytes = num();
        else if (key == "max_field_bytes")
          c->max_field_bytes = num();
        else if (key == "max_urls")
          c->max_urls = static_cast<int>(num());
        else if (key == "max_hashes")
          c->max_hashes = static_cast<int>(num());
        else if (key == "workers")
          c->workers = static_cast<int>(num());
        else if (key == "max_streams")
          c->max_streams = static_cast<int>(num());
        else if (key == "sweep_interval_ms")
          c->sweep_interval_ms = num();
        else if (key == "origin")
          c->origin = str();
        else if (key == "lists_anywhere" || key == "insecure_plaintext" || key == "noop_service") {
          std::string b = str();
          if (b != "true" && b != "false") throw std::invalid_argument(b);
          bool* flag = key == "lists_anywhere"       ? &c->lists_anywhere
                       : key == "insecure_plaintext" ? &c->insecure_plaintext
                                                     : &c->noop_service;
          *flag = b == "true";
        } else if (key == "retention") {
          std::string error;
          auto d = rules::ParseDuration(str(), &error);
          if (!d) return Status::InvalidArgument(Where(path, v) + ": retention: " + error);
          c->retention_seconds = *d;
        } else if (key == "max_clock_skew") {
          std::string error;
          auto d = rules::ParseDuration(str(), &error);
          if (!d) return Status::InvalidArgument(Where(path, v) + ": max_clock_skew: " + error);
          c->max_clock_skew_seconds = *d;
        }
      } catch (const std::exception&) {
        return Status::InvalidArgument(Where(path, v) + ": bad value for '" + key + "'");
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return Status::Ok();
}

// 127.0.0.0/8, ::1 and localhost.
static bool IsLoopback(const std::string& host_port) {
  std::string host = host_port.substr(0, host_port.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

Status ValidateConfig(const ServerConfig& c) {
  if (!ValidHostPort(c.listen))
    return Status::InvalidArgument("listen: '" + c.listen + "' is not HOST:PORT");
  if (!c.metrics.empty() && !ValidHostPort(c.metrics)) {
    return Status::InvalidArgument("metrics: '" + c.metrics + "' is not HOST:PORT");
  }
  if (c.rules.empty())
    return Status::InvalidArgument("rules: at least one rule directory is required");
  for (const auto& r : c.rules) {
    if (!std::filesystem::exists(r))
      return Status::InvalidArgument("rules: " + r + " does not exist");
  }
  for (const auto& a : c.accountability) {
    if (!std::filesystem::exists(a))
      return Status::InvalidArgument("accountability: " + a + " does not exist");
  }
  if (!std::filesystem::exists(c.tokens)) {
    return Status::InvalidArgument("tokens: " + c.tokens +
                                   " does not exist (create one with `carewatch token new`)");
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return Status::InvalidArgument("tls_cert and tls_key: give both or neither");
  }
  if (c.tls_cert.empty() && !c.insecure_plaintext && !IsLoopback(c.listen)) {
    return Status::InvalidArgument(
        "listen: " + c.listen +
        " is not a loopback address and TLS is off, so bearer tokens would cross the network "
        "in clear: set tls_cert and tls_key (or, behind a TLS-terminating proxy on a private "
        "network, insecure_plaintext: true / --insecure-plaintext)");
  }
  for (const auto& f : {c.tls_cert, c.tls_key, c.tls_client_ca}) {
    if (!f.empty() && !std::filesystem::exists(f))
      return Status::InvalidArgument("TLS file " + f + " does not exist");
  }
  if (!c.tls_client_ca.empty() && c.tls_cert.empty()) {
    return Status::InvalidArgument(
        "tls_client_ca needs tls_cert and tls_key (mTLS is TLS plus client certificates)");
  }
  if (c.max_message_bytes < 1024 || c.max_message_bytes > (1ll << 30)) {
    return Status::InvalidArgument("max_message_bytes: must be between 1024 and 1073741824");
  }
  if (c.max_field_bytes < 1 || c.max_field_bytes > c.max_message_bytes) {
    return Status::InvalidArgument("max_field_bytes: must be between 1 and max_message_bytes");
  }
  if (c.workers < 1 || c.workers > 256)
    return Status::InvalidArgument("workers: must be between 1 and 256");
  if (c.max_streams < 1 || c.max_streams > 4096)
    return Status::InvalidArgument("max_streams: must be between 1 and 4096");
  if (c.sweep_interval_ms < 10)
    return Status::InvalidArgument("sweep_interval_ms: must be at least 10");
  if (c.max_clock_skew_seconds < 0 || c.max_clock_skew_seconds > 86400)
    return Status::InvalidArgument("max_clock_skew: must be between 0s and 1d");
  if (c.retention_seconds < 86400 || c.retention_seconds > 10 * 366 * 86400)
    return Status::InvalidArgument("retention: must be between 1d and 3660d");
  if (c.max_urls < 0 || c.max_hashes < 0)
    return Status::InvalidArgument("max_urls/max_hashes: must not be negative");
  return Status::Ok();
}

}  // namespace carewatch::server
