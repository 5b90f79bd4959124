// carewatchd: the carewatch service.
#include <signal.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/ledger/ledger.h"
#include "engine/ledger/pg_backend.h"
#include "engine/server/metrics.h"
#include "engine/server/server.h"

namespace cw = carewatch;

int main(int argc, char** argv) {
  cw::server::ServerConfig config;
  int exit_code = 0;
  if (!cw::server::ParseCommandLine(argc, argv, &config, &exit_code)) return exit_code;

  // Signals are taken here with sigtimedwait: SIGHUP reloads the rules,
  // SIGTERM and SIGINT drain and stop.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // One process, three states (docs/operations.md "Replicas"):
  //  - writer: holds the ledger and serves everything;
  //  - queueing replica (a standby on a PostgreSQL ledger another process
  //    writes, unless standby_idle): serves Moderation calls by queueing
  //    them for the writer, and takes over when the writer goes;
  //  - waiting (a standby that cannot queue, or a ledger it cannot reach):
  //    serves nothing, tries again every second.
  // A standby writer that loses the ledger to another writer (its
  // connection was lost and another process took the lock meanwhile) goes
  // back to being a standby. Without `standby`, a ledger in use is an error.
  enum class Mode { kWaiting, kWriter, kQueueing };
  Mode mode = Mode::kWaiting;
  std::unique_ptr<cw::server::Server> server;
  const bool may_queue =
      config.standby && !config.standby_idle && cw::ledger::IsPostgresUrl(config.ledger);
  std::string told;  // the last state logged, so each is said once
  bool started_once = false;
  auto say = [&](const std::string& what, const std::string& level, const std::string& msg,
                 const std::string& reason) {
    if (told == what) return;
    told = what;
    if (reason.empty()) {
      cw::server::Log(level.c_str(), msg);
    } else {
      cw::server::Log(level.c_str(), msg, {{"reason", reason}});
    }
  };
  bool wait = false;
  for (;;) {
    if (mode == Mode::kWaiting) {
      server = std::make_unique<cw::server::Server>(config);
      cw::Status s = server->Start();
      if (s.ok()) {
        mode = Mode::kWriter;
        if (started_once) cw::server::Log("info", "standby: took over the ledger");
        told.clear();
      } else {
        const bool held = cw::ledger::IsLedgerInUse(s);
        if (!config.standby || !(held || s.code() == cw::Status::Code::kUnavailable)) {
          cw::server::Log("error", "cannot start: " + s.message());
          std::cerr << "carewatchd: " << s.message() << "\n";
          return 1;
        }
        server.reset();
        if (held && may_queue) {
          auto q = std::make_unique<cw::server::Server>(config);
          cw::Status qs = q->StartQueueing();
          if (qs.ok()) {
            server = std::move(q);
            mode = Mode::kQueueing;
            told = "queueing";
          } else {
            say("queueing failed: " + qs.message(), "error",
                "standby: cannot queue calls for the writer; waiting", qs.message());
          }
        } else if (held) {
          say("held", "info", "standby: waiting to take over the ledger", s.message());
        } else {
          say("unreachable", "info", "standby: the ledger cannot be reached; waiting", s.message());
        }
      }
      started_once = true;
    }
    if (wait) {
      timespec second{1, 0};
      int sig = sigtimedwait(&set, nullptr, &second);
      if (sig == SIGTERM || sig == SIGINT) {
        cw::server::Log("info", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        if (server) server->Shutdown();
        cw::server::Log("info", mode == Mode::kWaiting ? "stopped while on standby" : "stopped");
        return 0;
      }
      if (sig == SIGHUP && server) {
        std::vector<cw::rules::Diagnostic> diags;
        (void)server->Reload(&diags);
        for (const auto& d : diags) cw::server::Log("error", d.ToString());
      }
    }
    wait = true;
    if (mode == Mode::kQueueing) {
      // Is the writer gone? Its lock says. The lock taken here is handed to
      // the ledger this replica opens as the writer, so that no other
      // replica takes it in between.
      std::unique_ptr<cw::ledger::WriterLock> probe;
      if (!cw::ledger::TryWriterLock(config.ledger, &probe).ok()) continue;
      cw::server::Log("info", "standby: the writer is gone; taking over the ledger");
      // Calls waiting here for the old writer's answers cannot have them
      // until this replica is the writer: they end at once (UNAVAILABLE;
      // their commands stay queued and are sequenced first).
      server->Shutdown(100);
      server = std::make_unique<cw::server::Server>(config);
      cw::Status s = server->Start(std::shared_ptr<cw::ledger::WriterLock>(std::move(probe)));
      if (s.ok()) {
        mode = Mode::kWriter;
        told.clear();
        cw::server::Log("info", "standby: took over the ledger");
      } else {
        cw::server::Log("error", "standby: cannot take over the ledger; waiting",
                        {{"reason", s.message()}});
        server.reset();
        mode = Mode::kWaiting;
        wait = false;
      }
    } else if (mode == Mode::kWriter && config.standby && server->LostLedger()) {
      cw::server::Log("error",
                      "the ledger was taken over by another carewatchd while this one could not "
                      "reach it; becoming a standby again");
      server->Shutdown(1000);
      server.reset();
      mode = Mode::kWaiting;
      wait = false;
    }
  }
}
