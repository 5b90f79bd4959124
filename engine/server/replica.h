#ifndef CAREWATCH_ENGINE_SERVER_REPLICA_H_
#define CAREWATCH_ENGINE_SERVER_REPLICA_H_

// Replicas on a PostgreSQL ledger (docs/operations.md "Replicas"). One
// replica writes the ledger (it holds the writer lock); every other replica
// serves Moderation calls too, through the ledger's unsequenced queue:
//
//  - A queueing replica checks and evaluates a report itself (the
//    expensive part), computes what its REPORT_FLAGGED event holds (digests,
//    never content) and its linked identifiers' signal tokens, stores that
//    durably in the queue, and waits for the writer's answer. An action is
//    queued as the request.
//  - The writer's sequencer takes queued commands in queue order, in
//    batches, and records each as the writer records its own calls (one log,
//    one tree, one order; duty state changes only in the writer), removing
//    each from the queue in the transaction that records it, then stores
//    the answers for the queueing replicas to read.
//
// A command is answered only once the writer has made it durable in the
// log, so an acknowledgement means what it means on the writer.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "carewatch/v1/report.pb.h"
#include "engine/common/status.h"
#include "engine/duty/duty_engine.h"
#include "engine/eval/evaluator.h"
#include "engine/ledger/pg_backend.h"
#include "engine/signals/signals.h"

namespace carewatch::server {

// An eventfd that ends a CommandQueue::WaitFor early (a new waiter, or
// stopping).
class WakeFd {
 public:
  WakeFd();
  ~WakeFd();
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;
  int fd() const { return fd_; }
  void Wake();
  void Drain();

 private:
  int fd_;
};

// How long a thread waiting for the queue's announcements waits before it
// reads the table anyway.
constexpr int kSafetyPollMs = 50;

// Waits for the writer's answers to commands this replica queued: one
// thread reads the answers table for every command waited on at once, each
// time the writer announces answers (PostgreSQL's LISTEN/NOTIFY) or a
// caller starts waiting, and every kSafetyPollMs.
class AnswerWaiter {
 public:
  explicit AnswerWaiter(ledger::CommandQueue* queue);
  ~AnswerWaiter();
  AnswerWaiter(const AnswerWaiter&) = delete;
  AnswerWaiter& operator=(const AnswerWaiter&) = delete;
  // Blocks until command `id` is answered (OK, `out` filled), `timeout_ms`
  // passed or Abort was called (Unavailable, saying the command is queued
  // durably and a retry is safe).
  Status Wait(int64_t id, int timeout_ms, v1::QueuedResult* out);
  // Wait without a thread: `done` is called once, with what Wait would
  // return and fill, from the waiter's own thread (or from this call, when
  // the waits were aborted). It must not block.
  using Done = std::function<void(const Status&, v1::QueuedResult)>;
  void WaitAsync(int64_t id, int timeout_ms, Done done);
  // Ends every wait now and every later one at once (the replica is
  // stopping or taking over as the writer).
  void Abort(const std::string& why);

 private:
  struct Slot {
    bool done = false;
    v1::QueuedResult result;
    Done callback;  // WaitAsync's; the waiter's thread removes the slot
    int64_t id = 0;
    int timeout_ms = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  // Removes the answered, expired (and, once aborted, every) WaitAsync
  // slot into `*ready` with the status each is answered with.
  void TakeAsync(std::vector<std::pair<std::shared_ptr<Slot>, Status>>* ready);
  static void Dispatch(std::vector<std::pair<std::shared_ptr<Slot>, Status>>* ready);
  // Why command `id` was not answered: `aborted` (the reason), or not
  // within `timeout_ms`.
  static Status Unanswered(int64_t id, const std::string& aborted, int timeout_ms);
  void Poll();
  // Reads the writer's announcements that came, without waiting (with
  // `lock` released meanwhile).
  void TakeAnnouncements(std::unique_lock<std::mutex>& lock);
  ledger::CommandQueue* queue_;
  std::mutex mu_;
  std::condition_variable cv_, poll_cv_;
  // Callers waiting, by command: a retry to this replica waits for the
  // same command as the first call.
  std::multimap<int64_t, std::shared_ptr<Slot>> waiting_;
  std::string aborted_;
  bool stop_ = false;
  WakeFd wake_;
  std::thread poller_;
};

// What a replica that is not the writer serves Moderation calls with.
struct QueueingReplica {
  QueueingReplica() = default;
  QueueingReplica(const QueueingReplica&) = delete;
  QueueingReplica& operator=(const QueueingReplica&) = delete;
  // Every wait ends (aborted), then every asynchronous push is committed and
  // its callback (which finds the waits aborted) called, before either goes.
  ~QueueingReplica() {
    if (answers) answers->Abort("this replica is stopping");
    if (queue) queue->StopPushes();
  }
  std::unique_ptr<ledger::CommandQueue> queue;
  std::unique_ptr<AnswerWaiter> answers;
  std::string name;  // "host:pid", recorded with each command
  std::string hmac_key;
  signals::TokenKey tokens;
  int64_t max_clock_skew_seconds = 300;
  std::function<int64_t()> now;
  int wait_ms = 10000;  // how long a call waits for the writer's answer
  // Commands waiting in the queue past which this replica queues no more
  // (RESOURCE_EXHAUSTED): while the writer is down, retried actions would
  // otherwise grow the queue without end.
  int64_t max_queued = 100000;
  mutable std::mutex mu;
  std::shared_ptr<const eval::Evaluator> evaluator;  // guarded by mu

  std::shared_ptr<const eval::Evaluator> Evaluator() const {
    std::lock_guard<std::mutex> lock(mu);
    return evaluator;
  }
  // Checks, evaluates and queues a report; `id` receives its queue id.
  Status PushReport(const v1::ContentReport& report, int64_t* id);
  // Queues an action.
  Status PushAction(const v1::RecordActionRequest& req, int64_t* id);
  // The same without waiting for the queue's commit: `done` once, with
  // what they return and the queue id, from the thread that committed it or
  // (on a refusal) from this call. It must not block.
  using Pushed = std::function<void(const Status&, int64_t id)>;
  void PushReportAsync(const v1::ContentReport& report, Pushed done);
  void PushActionAsync(const v1::RecordActionRequest& req, Pushed done);
  // The writer's answer to command `id` as a status (its code and message).
  Status Await(int64_t id, v1::QueuedResult* out);
  // The same without a thread: `done` once, from the answers' thread (it
  // must not block).
  void AwaitAsync(int64_t id, AnswerWaiter::Done done);

 private:
  // OK while the queue holds fewer than max_queued commands (its depth is
  // read at most once a second).
  Status Room();
  // A report checked, evaluated and sealed as a queued command; an action
  // sealed.
  Status PrepareReport(const v1::ContentReport& report, std::string* sealed, std::string* digest,
                       int64_t* accepted_at);
  Status PrepareAction(const v1::RecordActionRequest& req, std::string* sealed,
                       int64_t* accepted_at);
  std::mutex depth_mu_;
  int64_t depth_ = 0;
  int64_t depth_read_ms_ = 0;
};

// The writer's side: sequences queued commands until destroyed, woken by
// the queueing replicas' announcements (CommandQueue::WaitFor).
class Sequencer {
 public:
  // `record` sequences one batch of commands and returns their answers;
  // a transient failure (the ledger unreachable) leaves a command queued,
  // and the rest of its batch with it, for the next round.
  using Record = std::function<Status(const std::vector<ledger::QueuedRow>& rows,
                                      std::vector<ledger::QueueAnswer>* answers)>;
  // `on_error` hears of each failure when it begins, and of the recovery
  // (OK) when it ends.
  Sequencer(ledger::CommandQueue* queue, Record record, std::function<int64_t()> now,
            std::function<void(const Status&)> on_error);
  ~Sequencer();
  Sequencer(const Sequencer&) = delete;
  Sequencer& operator=(const Sequencer&) = delete;

 private:
  void Run();
  ledger::CommandQueue* queue_;
  Record record_;
  std::function<int64_t()> now_;
  std::function<void(const Status&)> on_error_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  WakeFd wake_;
  std::thread thread_;
};

// A QueuedResult's status (gRPC's code numbers) from a Status, and back.
void SetResultStatus(const Status& s, v1::QueuedResult* r);
Status AnswerStatus(const v1::QueuedResult& r);

// The writer records a batch of queued commands as it records the calls it
// serves itself (reports share group commits; an action waits for its own),
// and returns their answers. A command the ledger cannot take now
// (Unavailable) stays queued, with the rest of its batch. `signals` (may be
// null) records the tokens queued with flagged reports.
// Only commands sealed under `queue_key` (SealCommand) are recorded; any
// other is answered FAILED_PRECONDITION and recorded nowhere.
Status SequenceCommands(duty::DutyEngine& engine, signals::SignalEngine* signals,
                        const std::string& queue_key, const std::vector<ledger::QueuedRow>& rows,
                        std::vector<ledger::QueueAnswer>* answers);

// Queued commands are sealed by the replica that queues them: the writer
// records only what a carewatchd of this deployment queued, not rows that
// anyone with the database's credentials inserted (the platform runs the
// database; a queued report carries its verdict, which the writer cannot
// compute again without the content). The seal is an HMAC-SHA256 of the
// serialised command under the queue key, appended to it as QueuedCommand
// field 5 (`mac`), so that a writer of an older carewatchd still parses it.
//
// The queue key, derived from the deployment's HMAC key (hmac_key: every
// replica has the same file).
std::string QueueKey(std::string_view hmac_key);
// `body` (a serialised QueuedCommand without `mac`) with its seal.
std::string SealCommand(std::string_view queue_key, std::string body);
// Whether `body` ends in a seal of the rest under `queue_key`.
bool SealedUnder(std::string_view queue_key, std::string_view body);

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_REPLICA_H_
