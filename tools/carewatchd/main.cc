// carewatchd: the carewatch service.
#include <signal.h>

#include <iostream>
#include <thread>

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
