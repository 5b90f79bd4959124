#include "engine/server/config.h"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <filesystem>
#include <iostream>
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

std::string Setting::Flag() const {
  std::string f = std::string("--") + key;
  for (char& c : f) {
    if (c == '_') c = '-';
  }
  return f;
}

const std::vector<Setting>& Settings() {
  using K = Setting::Kind;
  using C = ServerConfig;
  static const std::vector<Setting> kSettings = {
      {"listen", "gRPC HOST:PORT", K::kString, &C::listen},
      {"rules", "Rule directory or pack (repeatable)", K::kList, &C::rules},
      {"accountability", "Extra accountability file (repeatable)", K::kList, &C::accountability},
      {"ledger", "Ledger URL (sqlite:///path/ledger.db)", K::kString, &C::ledger},
      {"tokens", "Tokens file (digests only)", K::kString, &C::tokens},
      {"tls_cert", "TLS certificate (PEM)", K::kString, &C::tls_cert},
      {"tls_key", "TLS private key (PEM)", K::kString, &C::tls_key},
      {"tls_client_ca", "CA for client certificates (mTLS)", K::kString, &C::tls_client_ca},
      {"metrics", "HTTP HOST:PORT for /metrics /healthz /readyz ('' = off)", K::kString,
       &C::metrics},
      {"signing_key", "Ed25519 key for checkpoints (PEM; default beside the ledger)", K::kString,
       &C::signing_key},
      {"hmac_key", "HMAC key file for field digests (default beside the ledger)", K::kString,
       &C::hmac_key},
      {"cache_dir", "Cache of compiled Hyperscan databases and list indexes", K::kString,
       &C::cache_dir},
      {"max_message_bytes", "Largest request in bytes", K::kInt64, &C::max_message_bytes},
      {"max_field_bytes", "Largest text field or URL in bytes", K::kInt64, &C::max_field_bytes},
      {"max_urls", "Most URLs in one report", K::kInt, &C::max_urls},
      {"max_hashes", "Most hashes in one report", K::kInt, &C::max_hashes},
      {"workers", "EvaluateStream worker threads (shared by every stream)", K::kInt, &C::workers},
      {"max_streams", "EvaluateStream calls open at once", K::kInt, &C::max_streams},
      {"max_waiting_calls", "Unary Evaluate calls waiting for the ledger at once", K::kInt,
       &C::max_waiting_calls},
      {"max_waiting_bytes", "Bytes of the requests of the calls waiting for the ledger at once",
       K::kInt64, &C::max_waiting_bytes},
      {"max_share_per_caller",
       "Percentage of max_streams, max_waiting_calls and max_waiting_bytes one caller (a "
       "platform's service, or another principal) may hold at once",
       K::kInt, &C::max_share_per_caller},
      {"sweep_interval_ms", "Deadline sweeper period in milliseconds", K::kInt64,
       &C::sweep_interval_ms},
      {"max_clock_skew", "Refuse claimed times later than server time + this (e.g. 5m)",
       K::kDuration, &C::max_clock_skew_seconds},
      {"retention", "How long decided obligations and unflagged report ids are kept (e.g. 90d)",
       K::kDuration, &C::retention_seconds},
      {"origin", "The log's origin: names the deployment in every checkpoint", K::kString,
       &C::origin},
      {"compile_timeout_ms", "Longest wait for a posted rule set to compile (milliseconds)",
       K::kInt64, &C::compile_timeout_ms},
      {"strict_vocabulary",
       "Refuse reports with categorical values outside the vocabulary (else: a warning)", K::kBool,
       &C::strict_vocabulary},
      {"lists_anywhere", "Packs' list files may lie outside their pack's directory", K::kBool,
       &C::lists_anywhere},
      {"insecure_plaintext", "Allow plaintext gRPC on an address that is not loopback", K::kBool,
       &C::insecure_plaintext},
      {"noop_service", "Serve the benchmark-only Noop service (the transport's baseline)", K::kBool,
       &C::noop_service},
      {"standby",
       "If another carewatchd holds the ledger, wait and take over when it goes (else: refuse "
       "to start)",
       K::kBool, &C::standby},
      {"standby_idle",
       "A standby serves nothing until it takes over (else, on PostgreSQL, it queues Moderation "
       "calls for the writer meanwhile)",
       K::kBool, &C::standby_idle},
      {"queue_wait_ms", "How long a queued call waits for the writer's answer, in milliseconds",
       K::kInt64, &C::queue_wait_ms},
      {"max_queued", "Commands waiting for the writer past which a queueing replica refuses more",
       K::kInt64, &C::max_queued},
      {"signals_key", "OPRF key seed for signal tokens (default beside the ledger)", K::kString,
       &C::signals_key},
      {"signals_window", "Signal tokens of different services meet within this (e.g. 30d)",
       K::kDuration, &C::signals_window_seconds},
      {"signals_min_services", "Services that must hold a token before anyone is alerted", K::kInt,
       &C::signals_min_services},
      {"signals_retention", "Signal tokens are deleted this long after they were recorded",
       K::kDuration, &C::signals_retention_seconds},
      {"signals_daily_quota", "Blinded elements each service may have evaluated per UTC day",
       K::kInt64, &C::signals_daily_quota},
      {"signals_name_sharing",
       "Service that opted in to being named in other opted-in services' alerts (repeatable)",
       K::kList, &C::signals_name_sharing},
  };
  return kSettings;
}

Status ApplySetting(const Setting& setting, const std::vector<std::string>& values,
                    ServerConfig* c) {
  using K = Setting::Kind;
  if (setting.kind != K::kList && values.size() != 1)
    return Status::InvalidArgument("takes one value");
  const std::string& v = values.empty() ? std::string() : values[0];
  auto integer = [&](int64_t lo, int64_t hi, int64_t* out) -> Status {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec == std::errc::result_out_of_range)
      return Status::InvalidArgument(v + " is out of range");
    if (v.empty() || ec != std::errc() || end != v.data() + v.size())
      return Status::InvalidArgument("'" + v.substr(0, 40) + "' is not a whole number");
    if (n < lo || n > hi) return Status::InvalidArgument(v + " is out of range");
    *out = n;
    return Status::Ok();
  };
  switch (setting.kind) {
    case K::kString:
      c->*std::get<std::string ServerConfig::*>(setting.field) = v;
      return Status::Ok();
    case K::kList:
      c->*std::get<std::vector<std::string> ServerConfig::*>(setting.field) = values;
      return Status::Ok();
    case K::kInt: {
      int64_t n = 0;
      Status s = integer(INT32_MIN, INT32_MAX, &n);
      if (s.ok()) c->*std::get<int ServerConfig::*>(setting.field) = static_cast<int>(n);
      return s;
    }
    case K::kInt64: {
      int64_t n = 0;
      Status s = integer(INT64_MIN + 1, INT64_MAX, &n);
      if (s.ok()) c->*std::get<int64_t ServerConfig::*>(setting.field) = n;
      return s;
    }
    case K::kBool:
      if (v != "true" && v != "false")
        return Status::InvalidArgument("'" + v.substr(0, 40) + "' is not true or false");
      c->*std::get<bool ServerConfig::*>(setting.field) = v == "true";
      return Status::Ok();
    case K::kDuration: {
      std::string error;
      auto d = rules::ParseDuration(v, &error);
      if (!d) return Status::InvalidArgument(error);
      c->*std::get<int64_t ServerConfig::*>(setting.field) = *d;
      return Status::Ok();
    }
  }
  return Status::InvalidArgument("unknown kind of setting");
}

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
  try {
    std::set<std::string> seen;
    for (const auto& kv : root) {
      if (!kv.first.IsScalar())
        return Status::InvalidArgument(Where(path, kv.first) + ": a setting's name is a word");
      std::string key = kv.first.Scalar();
      const YAML::Node& v = kv.second;
      const Setting* setting = nullptr;
      for (const auto& s : Settings()) {
        if (key == s.key) setting = &s;
      }
      if (!setting) {
        return Status::InvalidArgument(Where(path, kv.first) + ": unknown setting '" +
                                       key.substr(0, 64) + "'");
      }
      if (!seen.insert(key).second)
        return Status::InvalidArgument(Where(path, kv.first) + ": '" + key + "' is given twice");
      std::vector<std::string> values;
      if (v.IsScalar()) {
        values.push_back(v.Scalar());
      } else if (v.IsSequence() && setting->kind == Setting::Kind::kList) {
        for (const auto& x : v) {
          if (!x.IsScalar())
            return Status::InvalidArgument(Where(path, x) + ": " + key + ": a list of paths");
          values.push_back(x.Scalar());
        }
      } else {
        return Status::InvalidArgument(Where(path, v) + ": bad value for '" + key + "'");
      }
      Status s = ApplySetting(*setting, values, c);
      if (!s.ok()) return Status::InvalidArgument(Where(path, v) + ": " + key + ": " + s.message());
    }
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return Status::Ok();
}

bool ParseCommandLine(int argc, char** argv, ServerConfig* config, int* exit_code) {
  CLI::App app{"carewatchd: duty-of-care compliance service"};
  std::string config_file;
  app.add_option("--config", config_file, "YAML config file; flags override it");
  // Every setting is a flag too; only flags given override the file.
  const auto& settings = Settings();
  std::vector<std::vector<std::string>> given(settings.size());
  std::vector<CLI::Option*> options(settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    const Setting& s = settings[i];
    if (s.kind == Setting::Kind::kBool) {
      options[i] = app.add_flag(s.Flag(), s.help);
    } else if (s.kind == Setting::Kind::kList) {
      options[i] = app.add_option(s.Flag(), given[i], s.help);
    } else {
      options[i] = app.add_option(s.Flag(), given[i], s.help)
                       ->expected(1)
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e) == 0 ? 0 : 2;
    return false;
  }
  ServerConfig c;
  if (!config_file.empty()) {
    Status s = LoadConfigFile(config_file, &c);
    if (!s.ok()) {
      std::cerr << "carewatchd: config: " << s.message() << "\n";
      *exit_code = 2;
      return false;
    }
  }
  for (size_t i = 0; i < settings.size(); ++i) {
    if (options[i]->count() == 0) continue;
    std::vector<std::string> values =
        settings[i].kind == Setting::Kind::kBool ? std::vector<std::string>{"true"} : given[i];
    Status s = ApplySetting(settings[i], values, &c);
    if (!s.ok()) {
      std::cerr << "carewatchd: " << settings[i].Flag() << ": " << s.message() << "\n";
      *exit_code = 2;
      return false;
    }
  }
  *config = std::move(c);
  return true;
}

// 127.0.0.0/8, ::1 and localhost.
static bool IsLoopback(const std::string& host_port) {
  std::string host = host_port.substr(0, host_port.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

namespace {
// Whether `path` names something; "" when it does, else why not. Never
// throws: a path the system refuses (too long, not a path) is an answer too.
std::string Missing(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return "";
  return ec ? "cannot be checked (" + ec.message() + ")" : "does not exist";
}
}  // namespace

Status ValidateConfig(const ServerConfig& c) {
  if (!ValidHostPort(c.listen))
    return Status::InvalidArgument("listen: '" + c.listen + "' is not HOST:PORT");
  if (!c.metrics.empty() && !ValidHostPort(c.metrics)) {
    return Status::InvalidArgument("metrics: '" + c.metrics + "' is not HOST:PORT");
  }
  if (c.rules.empty())
    return Status::InvalidArgument("rules: at least one rule directory is required");
  for (const auto& r : c.rules) {
    if (std::string why = Missing(r); !why.empty())
      return Status::InvalidArgument("rules: " + r + " " + why);
  }
  for (const auto& a : c.accountability) {
    if (std::string why = Missing(a); !why.empty())
      return Status::InvalidArgument("accountability: " + a + " " + why);
  }
  if (std::string why = Missing(c.tokens); !why.empty()) {
    return Status::InvalidArgument("tokens: " + c.tokens + " " + why +
                                   " (create one with `carewatch token new`)");
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
    if (std::string why = f.empty() ? "" : Missing(f); !why.empty())
      return Status::InvalidArgument("TLS file " + f + " " + why);
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
  if (c.max_waiting_calls < 1 || c.max_waiting_calls > 1000000)
    return Status::InvalidArgument("max_waiting_calls: must be between 1 and 1000000");
  if (c.max_waiting_bytes < c.max_message_bytes || c.max_waiting_bytes > (1ll << 40)) {
    return Status::InvalidArgument(
        "max_waiting_bytes: must be between max_message_bytes (one largest request) and "
        "1099511627776");
  }
  if (c.max_share_per_caller < 1 || c.max_share_per_caller > 100)
    return Status::InvalidArgument("max_share_per_caller: must be between 1 and 100 (percent)");
  if (c.queue_wait_ms < 100 || c.queue_wait_ms > 600000)
    return Status::InvalidArgument("queue_wait_ms: must be between 100 and 600000");
  if (c.max_queued < 1 || c.max_queued > 100000000)
    return Status::InvalidArgument("max_queued: must be between 1 and 100000000");
  if (c.sweep_interval_ms < 10)
    return Status::InvalidArgument("sweep_interval_ms: must be at least 10");
  if (c.max_clock_skew_seconds < 0 || c.max_clock_skew_seconds > 86400)
    return Status::InvalidArgument("max_clock_skew: must be between 0s and 1d");
  if (c.retention_seconds < 86400 || c.retention_seconds > 10 * 366 * 86400)
    return Status::InvalidArgument("retention: must be between 1d and 3660d");
  if (c.signals_window_seconds < 60 || c.signals_window_seconds > 366 * 86400)
    return Status::InvalidArgument("signals_window: must be between 1m and 366d");
  if (c.signals_retention_seconds < c.signals_window_seconds ||
      c.signals_retention_seconds > 10 * 366 * 86400)
    return Status::InvalidArgument(
        "signals_retention: must be at least signals_window and at most 3660d");
  if (c.signals_min_services < 2 || c.signals_min_services > 100)
    return Status::InvalidArgument("signals_min_services: must be between 2 and 100");
  if (c.signals_daily_quota < 0 || c.signals_daily_quota > 100000000)
    return Status::InvalidArgument("signals_daily_quota: must be between 0 and 100000000");
  if (c.max_urls < 0 || c.max_hashes < 0)
    return Status::InvalidArgument("max_urls/max_hashes: must not be negative");
  if (c.compile_timeout_ms < 1 || c.compile_timeout_ms > 600000)
    return Status::InvalidArgument("compile_timeout_ms: must be between 1 and 600000");
  return Status::Ok();
}

}  // namespace carewatch::server
