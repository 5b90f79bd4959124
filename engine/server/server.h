#ifndef CAREWATCH_ENGINE_SERVER_SERVER_H_
#define CAREWATCH_ENGINE_SERVER_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/status.h"
#include "engine/duty/duty_engine.h"
#include "engine/ledger/ledger.h"
#include "engine/rules/diagnostic.h"
#include "engine/server/auth.h"
#include "engine/server/config.h"
#include "engine/server/metrics.h"

namespace grpc {
class Server;
}
namespace httplib {
class Server;
}

namespace carewatch::server {

// carewatchd: the gRPC services over the duty engine and the ledger, the
// deadline sweeper, and the HTTP endpoints for operations.
//
// Order of calls: Start -> (Reload from any thread) -> Shutdown -> destroy.
class Server {
 public:
  explicit Server(ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads tokens, rules and the ledger (rebuilding state from it) and starts
  // listening. Every bad setting is an error naming it.
  // `writer_lock` (may be null): a PostgreSQL ledger's writer lock this
  // process took already (a queueing replica taking over); the ledger keeps
  // it.
  Status Start(std::shared_ptr<ledger::WriterLock> writer_lock = nullptr);

  // Starts as a replica that is not the ledger's writer (another carewatchd
  // holds a PostgreSQL ledger): serves Moderation calls by queueing them
  // for the writer, and answers every other call UNAVAILABLE. To take over
  // when the writer goes, Shutdown this Server and Start a new one.
  Status StartQueueing();
  bool queueing() const;
  // True when this writer lost the ledger to another writer (its
  // connection was lost and another process took the lock meanwhile): it
  // can write no more and should stop.
  bool LostLedger() const;

  // Recompiles the rule directories off the request path and swaps the new
  // rule set in. On failure the last good one keeps serving; `diagnostics`
  // receives the errors, each at its file, line and column where it has
  // one (the loader's, and a pattern Hyperscan cannot build).
  Status Reload(std::vector<rules::Diagnostic>* diagnostics);

  // Graceful stop: refuses new calls, lets in-flight calls finish (up to
  // `grace_ms`), stops the sweeper and flushes the ledger.
  void Shutdown(int grace_ms = 10000);

  // Blocks until Shutdown has finished.
  void Wait();

  int grpc_port() const { return grpc_port_; }

  // Shared with the service implementations.
  struct State;

 private:
  // gRPC, the worker pool and the HTTP endpoints.
  Status Listen();
  // The first Reload at start: InvalidArgument listing the loader's errors.
  Status LoadRules();
  ServerConfig config_;
  std::unique_ptr<State> state_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_, sweeper_thread_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  int grpc_port_ = 0;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::atomic<bool> stopping_{false};
};

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_SERVER_H_
