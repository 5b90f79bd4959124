// carewatchd: the carewatch service.
#include <signal.h>

#include <iostream>
#include <memory>
#include <thread>

#include "engine/ledger/ledger.h"
#include "engine/server/metrics.h"
#include "engine/server/server.h"

int main(int argc, char** argv) {
  carewatch::server::ServerConfig config;
  int exit_code = 0;
  if (!carewatch::server::ParseCommandLine(argc, argv, &config, &exit_code)) return exit_code;

  // Signals are taken by one thread with sigwait: SIGHUP reloads the rules,
  // SIGTERM and SIGINT drain and stop.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // A standby waits for the ledger's writer lock, checking every second,
  // and still stops on SIGTERM or SIGINT meanwhile.
  auto server = std::make_unique<carewatch::server::Server>(config);
  carewatch::Status s = server->Start();
  // It also waits out a ledger it cannot reach (a database server
  // restarting), saying so once each time the reason changes.
  std::string told;
  while (config.standby && (carewatch::ledger::IsLedgerInUse(s) ||
                            s.code() == carewatch::Status::Code::kUnavailable)) {
    const std::string why = carewatch::ledger::IsLedgerInUse(s) ? "held" : "unreachable";
    if (why != told) {
      carewatch::server::Log("info",
                             why == "held" ? "standby: waiting to take over the ledger"
                                           : "standby: the ledger cannot be reached; waiting",
                             {{"reason", s.message()}});
      told = why;
    }
    timespec second{1, 0};
    int sig = sigtimedwait(&set, nullptr, &second);
    if (sig == SIGTERM || sig == SIGINT) {
      carewatch::server::Log("info", "stopped while on standby");
      return 0;
    }
    server = std::make_unique<carewatch::server::Server>(config);
    s = server->Start();
    if (s.ok()) carewatch::server::Log("info", "standby: took over the ledger");
  }
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
        carewatch::Status r = server->Reload(&diags);
        for (const auto& d : diags) carewatch::server::Log("error", d);
        continue;
      }
      carewatch::server::Log("info", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server->Shutdown();
      return;
    }
  });
  server->Wait();
  signals.join();
  carewatch::server::Log("info", "stopped");
  return 0;
}
