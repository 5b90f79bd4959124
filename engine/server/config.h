#ifndef CAREWATCH_ENGINE_SERVER_CONFIG_H_
#define CAREWATCH_ENGINE_SERVER_CONFIG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "engine/common/status.h"

namespace carewatch::server {

// Every setting of carewatchd. Settings() lists each once, and that one
// table drives both the config file (key `max_streams`) and the command
// line (flag `--max-streams`); flags override the config file.
struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  std::vector<std::string> rules = {"rules"};  // directories or pack files
  std::vector<std::string> accountability;     // extra accountability files
  std::string ledger = "sqlite://data/ledger.db";
  std::string tokens = "data/tokens.yaml";
  std::string tls_cert, tls_key, tls_client_ca;  // TLS when cert+key; mTLS with a CA
  std::string metrics = "127.0.0.1:9464";        // HTTP: /metrics /healthz /readyz ("" = off)
  std::string signing_key;                       // default: beside the ledger
  std::string hmac_key;                          // default: beside the ledger
  std::string cache_dir = "data/hs-cache";       // compiled Hyperscan databases
  int64_t max_message_bytes = 16 << 20;
  int64_t max_field_bytes = 1 << 20;  // any one text field or URL
  int max_urls = 1000;
  int max_hashes = 1000;
  int workers = 8;       // EvaluateStream worker threads, shared by every stream
  int max_streams = 64;  // EvaluateStream calls open at once
  // Unary Evaluate calls waiting for the ledger at once (each holds its
  // request and answer, no thread); past it a call is refused.
  int max_waiting_calls = 1024;
  // And the bytes of their requests at once: the worst case of the count
  // alone (max_waiting_calls x max_message_bytes) is many GB.
  int64_t max_waiting_bytes = 256 << 20;
  // No one caller (a platform's service, all its tokens together; any other
  // principal on its own) holds more than this percentage of max_streams,
  // max_waiting_calls or max_waiting_bytes at once (at least one stream,
  // one call and one largest request): the rest stays for other callers.
  int max_share_per_caller = 50;
  int64_t sweep_interval_ms = 1000;
  // A claimed time (received_at, taken_at) later than server time + this is
  // refused. Config and flag take a duration ("5m").
  int64_t max_clock_skew_seconds = 300;
  // What carewatch keeps beside open work: decided obligations for the
  // systemic windows (no duty's window may be longer) and the ids of reports
  // that matched nothing, for idempotent retries. A duration ("90d").
  int64_t retention_seconds = 90 * 86400;
  // The log's origin: the first line of its checkpoints and the name of its
  // verifier key ("" : the one the ledger recorded, else derived from the
  // key). Name the deployment, e.g. "carewatch.example-social.com/ledger".
  std::string origin;
  // List files named by packs may lie outside their pack's directory.
  bool lists_anywhere = false;
  // Plaintext gRPC on an address that is not loopback (tokens in clear on
  // the network): refused unless this is set.
  bool insecure_plaintext = false;
  // The benchmark-only Noop service (answers any authenticated caller).
  bool noop_service = false;
  // When another carewatchd holds the ledger's writer lock: wait, and take
  // over when it goes (a hot standby), instead of refusing to start.
  bool standby = false;
  // A standby serves nothing until it takes over. Otherwise, on a
  // PostgreSQL ledger, it serves Moderation calls while it waits, queueing
  // them for the writer (docs/operations.md "Running N replicas").
  bool standby_idle = false;
  // How long a queued call waits for the writer's answer before it fails
  // (UNAVAILABLE; the command stays queued and a retry is safe).
  int64_t queue_wait_ms = 10000;
  // Commands waiting for the writer past which a queueing replica refuses
  // more (RESOURCE_EXHAUSTED) until the writer takes them.
  int64_t max_queued = 100000;
  // Rules.Validate, RunTests and DryRun wait at most this long for a posted
  // rule set to compile (one compiles at a time).
  int64_t compile_timeout_ms = 30000;
  // A report whose surface, content_type, reporter_type or subject_age_band
  // is outside the documented vocabulary: refused (INVALID_ARGUMENT) when
  // set, else evaluated with a warning in its verdict.
  bool strict_vocabulary = false;

  // Cross-platform signals (docs/signals.md).
  std::string signals_key;  // OPRF key seed; default beside the ledger (signals.key)
  int64_t signals_window_seconds = 30 * 86400;      // tokens meet within this
  int signals_min_services = 2;                     // services before an alert
  int64_t signals_retention_seconds = 180 * 86400;  // tokens deleted after this
  int64_t signals_daily_quota = 10000;              // BlindEvaluate elements per service per day
  std::vector<std::string> signals_name_sharing;    // services named to each other

  // Not a setting: the server's clock (unix seconds) for in-process tests.
  // Unset: the wall clock.
  std::function<int64_t()> clock;
};

// One setting: its config-file key (the flag is "--" + key with '-' for
// '_'), what it means, and the field it sets. Durations are written "90d",
// "5m"; booleans true/false (as flags: present or absent).
struct Setting {
  enum class Kind { kString, kList, kInt, kInt64, kBool, kDuration };
  const char* key;
  const char* help;
  Kind kind;
  std::variant<std::string ServerConfig::*, std::vector<std::string> ServerConfig::*,
               int ServerConfig::*, int64_t ServerConfig::*, bool ServerConfig::*>
      field;
  std::string Flag() const;
};
const std::vector<Setting>& Settings();

// Sets one setting from its text (one value; several for lists). The error
// says what was wrong with the value, without naming where it came from.
Status ApplySetting(const Setting& setting, const std::vector<std::string>& values,
                    ServerConfig* config);

// Reads a YAML config file; unknown keys and wrong types are errors naming
// file:line:col.
Status LoadConfigFile(const std::string& path, ServerConfig* config);

// carewatchd's command line: --config FILE, then every setting as a flag
// overriding the file. Returns false with `exit_code` set when the process
// should end (--help: 0; a bad flag or value: 2, message on stderr).
bool ParseCommandLine(int argc, char** argv, ServerConfig* config, int* exit_code);

// Checks the settings together (addresses, files that must exist, ranges).
Status ValidateConfig(const ServerConfig& config);

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_CONFIG_H_
