#ifndef CAREWATCH_ENGINE_SERVER_STATE_H_
#define CAREWATCH_ENGINE_SERVER_STATE_H_

// Internal to carewatchd: what the services share. Not an API.

#include <grpcpp/grpcpp.h>

#include <algorithm>
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

// What each caller holds of the caps every caller shares: open streams
// (max_streams), unary calls waiting for the ledger (max_waiting_calls) and
// their requests' bytes (max_waiting_bytes). A caller is a platform's
// service, all its tokens together, or any other principal on its own; one
// caller holds at most max_share_per_caller percent of each cap, so that it
// cannot take what every other caller needs (a platform opening every
// stream, or filling the ledger's queue). Memory: one entry per caller
// holding something, and callers are the tokens file's principals.
class CallerShares {
 public:
  struct Amount {
    int streams = 0;
    int calls = 0;
    int64_t bytes = 0;
  };
  // Each cap's share for one caller: at least one stream, one call and one
  // largest request.
  static Amount Limit(const ServerConfig& c) {
    const int64_t pct = c.max_share_per_caller;
    return {std::max<int>(1, static_cast<int>(c.max_streams * pct / 100)),
            std::max<int>(1, static_cast<int>(int64_t{c.max_waiting_calls} * pct / 100)),
            std::max<int64_t>(c.max_message_bytes, c.max_waiting_bytes / 100 * pct)};
  }
  static std::string CallerOf(const Principal& p) {
    return p.role == Role::kPlatform ? "service " + p.service_id : "principal " + p.name;
  }
  // Counts `a` for `caller` and returns "", or returns the setting of the cap
  // `a` would take the caller past and counts nothing.
  std::string Take(const std::string& caller, const Amount& a, const Amount& limit) {
    std::lock_guard<std::mutex> lock(mu_);
    Amount& h = held_[caller];
    const char* past = h.streams + a.streams > limit.streams ? "max_streams"
                       : h.calls + a.calls > limit.calls     ? "max_waiting_calls"
                       : h.bytes + a.bytes > limit.bytes     ? "max_waiting_bytes"
                                                             : nullptr;
    if (past) {
      if (h.streams == 0 && h.calls == 0 && h.bytes == 0) held_.erase(caller);
      return past;
    }
    h.streams += a.streams;
    h.calls += a.calls;
    h.bytes += a.bytes;
    return "";
  }
  void Give(const std::string& caller, const Amount& a) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(caller);
    if (it == held_.end()) return;
    it->second.streams -= a.streams;
    it->second.calls -= a.calls;
    it->second.bytes -= a.bytes;
    if (it->second.streams <= 0 && it->second.calls <= 0 && it->second.bytes <= 0) held_.erase(it);
  }
  // RESOURCE_EXHAUSTED for a caller refused at `cap` (a setting's name).
  static grpc::Status Refusal(const std::string& caller, const std::string& cap,
                              const ServerConfig& c) {
    return {grpc::StatusCode::RESOURCE_EXHAUSTED,
            caller + " holds its share of " + cap + " (max_share_per_caller " +
                std::to_string(c.max_share_per_caller) +
                "%); try again once some of its calls are answered"};
  }

 private:
  std::mutex mu_;
  std::map<std::string, Amount> held_;
};

// A caller's share of one stream, held for the stream's life.
class StreamShare {
 public:
  StreamShare(CallerShares& shares, const ServerConfig& c, const Principal& p)
      : shares_(shares), caller_(CallerShares::CallerOf(p)) {
    CallerShares::Amount one;
    one.streams = 1;
    cap_ = shares_.Take(caller_, one, CallerShares::Limit(c));
  }
  ~StreamShare() {
    if (!cap_.empty()) return;
    CallerShares::Amount one;
    one.streams = 1;
    shares_.Give(caller_, one);
  }
  StreamShare(const StreamShare&) = delete;
  StreamShare& operator=(const StreamShare&) = delete;
  bool ok() const { return cap_.empty(); }
  grpc::Status Refusal(const ServerConfig& c) const {
    return CallerShares::Refusal(caller_, cap_, c);
  }

 private:
  CallerShares& shares_;
  std::string caller_;
  std::string cap_;
};

struct Server::State {
  ServerConfig config;
  // EvaluateStream's shared workers, and how many streams are open.
  std::unique_ptr<WorkerPool> stream_pool;
  std::atomic<int> open_streams{0};
  // EvaluateStream streams that have sent a report and not ended.
  std::atomic<int> active_streams{0};
  // What each caller holds of max_streams, max_waiting_calls and
  // max_waiting_bytes (max_share_per_caller).
  CallerShares shares;
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
  // Whether a server with a sweeper has yet to finish its first sweep: until
  // then no deadline has been enforced since the start, and /readyz fails.
  bool first_sweep_pending = false;
  // Rules.Reload reaches the server through this.
  std::function<Status(std::vector<rules::Diagnostic>*)> reload;
};

// One unary call admitted to wait for the ledger (the writer's durable
// commit, or on a queueing replica the writer's answer): counted against
// max_waiting_calls, against max_waiting_bytes
// with its request's bytes, and against the caller's share of both, until
// Release or destruction. Refused past any of them, counting nothing.
class WaitingCall {
 public:
  WaitingCall(Server::State& s, const Principal& p, int64_t bytes) : s_(s), bytes_(bytes) {
    const int cap = s.config.max_waiting_calls;
    if (s.waiting_calls.fetch_add(1) >= cap) {
      s.waiting_calls.fetch_sub(1);
      refusal_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "too many calls waiting for the ledger (max_waiting_calls " +
                                  std::to_string(cap) + "); try again later");
      return;
    }
    if (s.waiting_bytes.fetch_add(bytes) + bytes > s.config.max_waiting_bytes) {
      s.waiting_bytes.fetch_sub(bytes);
      s.waiting_calls.fetch_sub(1);
      refusal_ =
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       "the calls waiting for the ledger hold too many bytes (max_waiting_bytes " +
                           std::to_string(s.config.max_waiting_bytes) + "); try again later");
      return;
    }
    held_.calls = 1;
    held_.bytes = bytes;
    caller_ = CallerShares::CallerOf(p);
    const std::string past = s.shares.Take(caller_, held_, CallerShares::Limit(s.config));
    if (!past.empty()) {
      s.waiting_bytes.fetch_sub(bytes);
      s.waiting_calls.fetch_sub(1);
      refusal_ = CallerShares::Refusal(caller_, past, s.config);
      return;
    }
    admitted_ = true;
  }
  ~WaitingCall() { Release(); }
  WaitingCall(const WaitingCall&) = delete;
  WaitingCall& operator=(const WaitingCall&) = delete;
  bool ok() const { return admitted_; }
  // RESOURCE_EXHAUSTED naming the cap or share the call met.
  const grpc::Status& refusal() const { return refusal_; }
  // The call is answered: it counts no more.
  void Release() {
    if (!admitted_) return;
    admitted_ = false;
    s_.waiting_bytes.fetch_sub(bytes_);
    s_.waiting_calls.fetch_sub(1);
    s_.shares.Give(caller_, held_);
  }

 private:
  Server::State& s_;
  int64_t bytes_;
  bool admitted_ = false;
  CallerShares::Amount held_;
  std::string caller_;
  grpc::Status refusal_;
};

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_STATE_H_
