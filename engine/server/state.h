#ifndef CAREWATCH_ENGINE_SERVER_STATE_H_
#define CAREWATCH_ENGINE_SERVER_STATE_H_

// Internal to carewatchd: what the services share. Not an API.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/duty/duty_engine.h"
#include "engine/ledger/ledger.h"
#include "engine/server/auth.h"
#include "engine/server/config.h"
#include "engine/server/metrics.h"
#include "engine/server/replica.h"
#include "engine/server/server.h"
#include "engine/signals/signals.h"

namespace carewatch::server {

int64_t NowSeconds();

// A fixed set of threads shared by every EvaluateStream: a stream queues
// its reports here instead of starting threads of its own. Tasks are short
// (check, evaluate, queue for the ledger; nobody waits for durability here).
class WorkerPool {
 public:
  // Throws std::system_error when a thread cannot be started.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  void Submit(std::function<void()> task);
  size_t threads() const { return threads_.size(); }

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// One of the `max_streams` stream slots (EvaluateStream, Signals.Subscribe:
// each open stream holds a thread), held for the stream's life.
class StreamSlot {
 public:
  StreamSlot(std::atomic<int>& open, int max) : open_(open) { ok_ = open_.fetch_add(1) < max; }
  ~StreamSlot() { open_.fetch_sub(1); }
  StreamSlot(const StreamSlot&) = delete;
  StreamSlot& operator=(const StreamSlot&) = delete;
  // False past max_streams: the stream is refused (RESOURCE_EXHAUSTED).
  bool ok() const { return ok_; }

 private:
  std::atomic<int>& open_;
  bool ok_ = false;
};

struct Server::State {
  ServerConfig config;
  // EvaluateStream's shared workers, and how many streams are open.
  std::unique_ptr<WorkerPool> stream_pool;
  std::atomic<int> open_streams{0};
  // EvaluateStream streams that have sent a report and not ended.
  std::atomic<int> active_streams{0};
  // Unary Evaluate calls admitted and not yet answered (max_waiting_calls).
  std::atomic<int> waiting_calls{0};
  // The bytes of their requests (max_waiting_bytes).
  std::atomic<int64_t> waiting_bytes{0};
  // The bytes of EvaluateStream requests read and not yet answered; each
  // stream holds at most max_waiting_bytes / max_streams (and one report).
  std::atomic<int64_t> stream_bytes{0};
  // Signals.Subscribe streams open per service: one platform cannot take
  // every stream slot by subscribing (kMaxSubscriptionsPerService).
  std::mutex subscriptions_mu;
  std::map<std::string, int> subscriptions;
  TokenStore tokens;
  std::unique_ptr<ledger::Ledger> ledger;
  std::unique_ptr<duty::DutyEngine> engine;
  std::unique_ptr<signals::SignalEngine> signals;
  // A ledger shared by replicas (PostgreSQL): the writer sequences the
  // queue; a replica that is not the writer has no ledger, engine or
  // signals, and serves Moderation calls through `replica` only.
  std::unique_ptr<ledger::CommandQueue> queue;
  std::unique_ptr<Sequencer> sequencer;
  std::unique_ptr<QueueingReplica> replica;
  Metrics metrics;
  std::mutex reload_mu;  // one reload at a time
  std::atomic<bool> reload_ok{true};
  std::atomic<int64_t> reload_time{0};
  std::atomic<int64_t> activated_at{0};
  std::atomic<bool> draining{false};
  // Rule sets being compiled for Validate, RunTests and DryRun: a Hyperscan
  // compile takes a core for up to seconds, so at most one at a time.
  std::atomic<int> compiling{0};
  // The sweeper's last error ("" while it succeeds): /readyz fails meanwhile.
  std::mutex sweep_mu;
  std::string sweep_error;
  // Rules.Reload reaches the server through this.
  std::function<Status(std::vector<std::string>*)> reload;
};

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_STATE_H_
