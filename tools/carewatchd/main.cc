// carewatchd: the carewatch service.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "engine/rules/duration.h"
#include "engine/server/metrics.h"
#include "engine/server/server.h"

int main(int argc, char** argv) {
  using carewatch::server::ServerConfig;
  CLI::App app{"carewatchd: duty-of-care compliance service"};
  std::string config_file;
  ServerConfig flags;
  app.add_option("--config", config_file, "YAML config file; flags override it");
  // Every setting is a flag too; only flags given override the file.
  auto* listen = app.add_option("--listen", flags.listen, "gRPC HOST:PORT");
  auto* rules = app.add_option("--rules", flags.rules, "Rule directory or pack (repeatable)");
  auto* accountability =
      app.add_option("--accountability", flags.accountability, "Accountability file (repeatable)");
  auto* ledger = app.add_option("--ledger", flags.ledger, "Ledger URL (sqlite:///path/ledger.db)");
  auto* tokens = app.add_option("--tokens", flags.tokens, "Tokens file (digests only)");
  auto* tls_cert = app.add_option("--tls-cert", flags.tls_cert, "TLS certificate (PEM)");
  auto* tls_key = app.add_option("--tls-key", flags.tls_key, "TLS private key (PEM)");
  auto* tls_ca =
      app.add_option("--tls-client-ca", flags.tls_client_ca, "CA for client certificates (mTLS)");
  auto* metrics = app.add_option("--metrics", flags.metrics,
                                 "HTTP HOST:PORT for /metrics /healthz /readyz ('' = off)");
  auto* signing =
      app.add_option("--signing-key", flags.signing_key, "Ed25519 key for checkpoints (PEM)");
  auto* hmac = app.add_option("--hmac-key", flags.hmac_key, "HMAC key file for field digests");
  auto* cache = app.add_option("--cache-dir", flags.cache_dir, "Compiled Hyperscan database cache");
  auto* max_msg = app.add_option("--max-message-bytes", flags.max_message_bytes, "Largest request");
  auto* max_field =
      app.add_option("--max-field-bytes", flags.max_field_bytes, "Largest text field or URL");
  auto* workers =
      app.add_option("--workers", flags.workers, "EvaluateStream worker threads (shared)");
  auto* max_streams =
      app.add_option("--max-streams", flags.max_streams, "EvaluateStream calls open at once");
  auto* sweep =
      app.add_option("--sweep-interval-ms", flags.sweep_interval_ms, "Deadline sweeper period");
  auto* origin = app.add_option("--origin", flags.origin,
                                "The log's origin: names the deployment in every checkpoint");
  bool lists_anywhere = false, insecure_plaintext = false, noop_service = false;
  auto* insecure = app.add_flag("--insecure-plaintext", insecure_plaintext,
                                "Allow plaintext gRPC on an address that is not loopback");
  auto* noop = app.add_flag("--noop-service", noop_service,
                            "Serve the benchmark-only Noop service (the transport's baseline)");
  auto* lists = app.add_flag("--lists-anywhere", lists_anywhere,
                             "Packs' list files may lie outside their pack's directory");
  std::string skew_text;
  auto* skew = app.add_option("--max-clock-skew", skew_text,
                              "Refuse claimed times later than server time + this (e.g. 5m)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  ServerConfig config;
  if (!config_file.empty()) {
    carewatch::Status s = carewatch::server::LoadConfigFile(config_file, &config);
    if (!s.ok()) {
      std::cerr << "carewatchd: config: " << s.message() << "\n";
      return 2;
    }
  }
  if (*listen) config.listen = flags.listen;
  if (*rules) config.rules = flags.rules;
  if (*accountability) config.accountability = flags.accountability;
  if (*ledger) config.ledger = flags.ledger;
  if (*tokens) config.tokens = flags.tokens;
  if (*tls_cert) config.tls_cert = flags.tls_cert;
  if (*tls_key) config.tls_key = flags.tls_key;
  if (*tls_ca) config.tls_client_ca = flags.tls_client_ca;
  if (*metrics) config.metrics = flags.metrics;
  if (*signing) config.signing_key = flags.signing_key;
  if (*hmac) config.hmac_key = flags.hmac_key;
  if (*cache) config.cache_dir = flags.cache_dir;
  if (*lists) config.lists_anywhere = lists_anywhere;
  if (*max_streams) config.max_streams = flags.max_streams;
  if (*insecure) config.insecure_plaintext = insecure_plaintext;
  if (*noop) config.noop_service = noop_service;
  if (*max_msg) config.max_message_bytes = flags.max_message_bytes;
  if (*max_field) config.max_field_bytes = flags.max_field_bytes;
  if (*workers) config.workers = flags.workers;
  if (*sweep) config.sweep_interval_ms = flags.sweep_interval_ms;
  if (*origin) config.origin = flags.origin;
  if (*skew) {
    std::string error;
    auto d = carewatch::rules::ParseDuration(skew_text, &error);
    if (!d) {
      std::cerr << "carewatchd: --max-clock-skew: " << error << "\n";
      return 2;
    }
    config.max_clock_skew_seconds = *d;
  }

  // Signals are taken by one thread with sigwait: SIGHUP reloads the rules,
  // SIGTERM and SIGINT drain and stop.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  carewatch::server::Server server(config);
  carewatch::Status s = server.Start();
  if (!s.ok()) {
    carewatch::server::Log("error", "cannot start: " + s.message());
    std::cerr << "carewatchd: " << s.message() << "\n";
    return 1;
  }
  std::thread signals([&] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        std::vector<std::string> diags;
        carewatch::Status r = server.Reload(&diags);
        for (const auto& d : diags) carewatch::server::Log("error", d);
        continue;
      }
      carewatch::server::Log("info", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server.Shutdown();
      return;
    }
  });
  server.Wait();
  signals.join();
  carewatch::server::Log("info", "stopped");
  return 0;
}
