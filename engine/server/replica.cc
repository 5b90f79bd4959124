#include "engine/server/replica.h"

#include <algorithm>
#include <chrono>

#include "engine/common/thread_name.h"
#include "engine/duty/duty_engine.h"
#include "engine/ledger/ledger.h"

namespace carewatch::server {

// QueuedResult.code holds gRPC's status codes (stable numbers, the API's
// own): the queueing replica answers its caller with them.
namespace {
struct CodeName {
  Status::Code code;
  int grpc;
};
constexpr CodeName kCodes[] = {
    {Status::Code::kOk, 0},
    {Status::Code::kInvalidArgument, 3},
    {Status::Code::kNotFound, 5},
    {Status::Code::kAlreadyExists, 6},
    {Status::Code::kResourceExhausted, 8},
    {Status::Code::kFailedPrecondition, 9},
    {Status::Code::kInternal, 13},
    {Status::Code::kUnavailable, 14},
    {Status::Code::kDataLoss, 15},
};
}  // namespace

void SetResultStatus(const Status& s, v1::QueuedResult* r) {
  int code = 13;
  for (const CodeName& c : kCodes) {
    if (c.code == s.code()) code = c.grpc;
  }
  r->set_code(code);
  r->set_message(s.message());
}

Status AnswerStatus(const v1::QueuedResult& r) {
  const std::string& m = r.message();
  switch (r.code()) {
    case 0:
      return Status::Ok();
    case 3:
      return Status::InvalidArgument(m);
    case 5:
      return Status::NotFound(m);
    case 6:
      return Status::AlreadyExists(m);
    case 8:
      return Status::ResourceExhausted(m);
    case 9:
      return Status::FailedPrecondition(m);
    case 14:
      return Status::Unavailable(m);
    case 15:
      return Status::DataLoss(m);
    default:
      return Status::Internal(
          m.empty() ? "the writer failed (code " + std::to_string(r.code()) + ")" : m);
  }
}

Status SequenceCommands(duty::DutyEngine& engine, signals::SignalEngine* signals,
                        const std::vector<ledger::QueuedRow>& rows,
                        std::vector<ledger::QueueAnswer>* answers) {
  struct Item {
    int64_t id = 0;
    v1::QueuedCommand cmd;
    v1::QueuedResult result;
    std::unique_ptr<duty::DutyEngine::Pending> pending;
  };
  auto fail = [](v1::QueuedResult* r, const Status& s) {
    r->Clear();
    SetResultStatus(s, r);
  };
  std::vector<Item> items(rows.size());
  Status transient;
  size_t n = 0;
  for (; n < rows.size(); ++n) {
    Item& it = items[n];
    it.id = rows[n].id;
    if (!it.cmd.ParseFromString(rows[n].body) ||
        it.cmd.command_case() == v1::QueuedCommand::COMMAND_NOT_SET) {
      fail(&it.result, Status::DataLoss("queued command " + std::to_string(it.id) +
                                        " is malformed; it was not recorded"));
      continue;
    }
    Status s;
    if (it.cmd.has_report()) {
      it.pending = std::make_unique<duty::DutyEngine::Pending>();
      s = engine.SubmitPrepared(it.cmd.report().prepared(), it.result.mutable_verdict(),
                                it.pending.get(), it.id);
    } else {
      const v1::RecordActionRequest& r = it.cmd.action();
      duty::ActionInput in{r.service_id(),         r.report_id(), r.action(),
                           r.taken_at().seconds(), r.actor(),     r.taken_at().nanos()};
      if (!r.has_taken_at()) in.taken_at = 0;
      in.queue_id = it.id;
      std::vector<v1::Obligation> obligations;
      uint64_t seq = 0;
      s = engine.RecordAction(in, &obligations, &seq);
      for (auto& o : obligations) *it.result.add_obligations() = std::move(o);
      it.result.set_ledger_seq(seq);
    }
    if (s.code() == Status::Code::kUnavailable) {
      // The ledger cannot take it now: it stays queued, with the rest of
      // the batch, for the next round.
      it.pending.reset();
      transient = s;
      break;
    }
    if (!s.ok()) {
      it.pending.reset();
      fail(&it.result, s);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    Item& it = items[i];
    if (it.pending) {
      Status d = it.pending->Wait();
      if (d.ok() && signals && it.cmd.report().tokens_size() > 0) {
        std::vector<std::pair<std::string, std::string>> tokens;
        for (const auto& t : it.cmd.report().tokens()) tokens.emplace_back(t.kind(), t.token());
        d = signals->SubmitLinkedTokens(it.cmd.report().prepared().service_id(),
                                        it.cmd.report().prepared().report_id(), it.result.verdict(),
                                        tokens);
      }
      if (d.code() == Status::Code::kUnavailable) {
        // Not durable: still queued (a command leaves the queue with its
        // batch or not at all); sequenced again next round.
        if (transient.ok()) transient = d;
        continue;
      }
      if (!d.ok()) fail(&it.result, d);
    }
    answers->push_back({it.id, ledger::SerializeDeterministic(it.result)});
  }
  return transient;
}

// ---- AnswerWaiter -----------------------------------------------------------

AnswerWaiter::AnswerWaiter(ledger::CommandQueue* queue) : queue_(queue) {
  poller_ = std::thread([this] {
    NameThisThread("cw-answers");
    Poll();
  });
}

AnswerWaiter::~AnswerWaiter() {
  Abort("this replica is stopping");
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  poll_cv_.notify_all();
  poller_.join();
}

void AnswerWaiter::Abort(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_.empty()) aborted_ = why;
  cv_.notify_all();
}

Status AnswerWaiter::Wait(int64_t id, int timeout_ms, v1::QueuedResult* out) {
  auto slot = std::make_shared<Slot>();
  std::unique_lock<std::mutex> lock(mu_);
  auto mine = waiting_.emplace(id, slot);
  poll_cv_.notify_one();
  const bool answered = cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                     [&] { return slot->done || !aborted_.empty(); });
  waiting_.erase(mine);
  if (slot->done) {
    *out = std::move(slot->result);
    return Status::Ok();
  }
  const std::string why = answered
                              ? aborted_
                              : "the ledger's writer did not answer within " +
                                    std::to_string(timeout_ms) + " ms (it may be changing over)";
  return Status::Unavailable("queued durably as command " + std::to_string(id) +
                             ", not answered: " + why +
                             "; a retry is safe (a report is answered with its verdict)");
}

void AnswerWaiter::Poll() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (waiting_.empty()) {
      poll_cv_.wait(lock, [&] { return stop_ || !waiting_.empty(); });
      continue;
    }
    std::vector<int64_t> ids;
    ids.reserve(waiting_.size());
    for (const auto& [id, slot] : waiting_) {
      if (ids.empty() || ids.back() != id) ids.push_back(id);
    }
    lock.unlock();
    std::vector<ledger::QueueAnswer> answers;
    Status s = queue_->Answers(ids, &answers);  // a failure is tried again next round
    lock.lock();
    bool any = false;
    for (const auto& a : answers) {
      auto [from, to] = waiting_.equal_range(a.id);
      for (auto it = from; it != to; ++it) {
        Slot& slot = *it->second;
        if (!slot.result.ParseFromString(a.body)) {
          slot.result.Clear();
          SetResultStatus(Status::DataLoss("the writer's answer to command " +
                                           std::to_string(a.id) + " is malformed"),
                          &slot.result);
        }
        slot.done = true;
        any = true;
      }
    }
    if (any) cv_.notify_all();
    // Every few milliseconds while anyone waits: answers come in batches.
    poll_cv_.wait_for(lock, std::chrono::milliseconds(s.ok() ? 3 : 200));
  }
}

// ---- QueueingReplica --------------------------------------------------------

namespace {

int64_t Millis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Stamp(const std::string& replica, v1::QueuedCommand* c) {
  c->set_replica(replica);
  const int64_t ms = Millis();
  c->mutable_accepted_at()->set_seconds(ms / 1000);
  c->mutable_accepted_at()->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
}

}  // namespace

Status QueueingReplica::Room() {
  std::lock_guard<std::mutex> lock(depth_mu_);
  const int64_t ms = Millis();
  if (ms - depth_read_ms_ >= 1000) {
    int64_t d = 0;
    Status s = queue->Depth(&d);
    if (!s.ok()) return s;
    depth_ = d;
    depth_read_ms_ = ms;
  }
  if (depth_ < max_queued) return Status::Ok();
  return Status::ResourceExhausted("the queue holds " + std::to_string(depth_) +
                                   " commands the ledger's writer has not taken (max_queued " +
                                   std::to_string(max_queued) +
                                   "): the writer is down or behind; retry later");
}

Status QueueingReplica::PushReport(const v1::ContentReport& report, int64_t* id) {
  Status s = duty::DutyEngine::CheckReport(report, now(), max_clock_skew_seconds);
  if (!s.ok()) return s;
  s = Room();
  if (!s.ok()) return s;
  std::shared_ptr<const eval::Evaluator> e = Evaluator();
  if (!e) return Status::FailedPrecondition("no rule set is active");
  v1::QueuedCommand c;
  v1::QueuedReport* q = c.mutable_report();
  duty::DutyEngine::Identifiers extracted;
  s = duty::DutyEngine::Prepare(*e, hmac_key, report, q->mutable_prepared(), &extracted);
  if (!s.ok()) return s;
  std::vector<std::pair<std::string, std::string>> tokens;
  s = this->tokens.Linked(report, q->prepared().verdict(), extracted, &tokens);
  if (!s.ok()) return s;
  for (auto& [kind, token] : tokens) {
    v1::QueuedToken* t = q->add_tokens();
    t->set_kind(kind);
    t->set_token(token);
  }
  Stamp(name, &c);
  const std::string& digest = q->prepared().report_digest();
  std::string queued_digest;
  s = queue->Push(report.service_id(), report.report_id(), digest,
                  ledger::SerializeDeterministic(c), c.accepted_at().seconds(), id, &queued_digest);
  if (!s.ok()) return s;
  if (queued_digest != digest) {
    return Status::AlreadyExists("report " + report.report_id() + " of service " +
                                 report.service_id() +
                                 " was already submitted with other content (queued as command " +
                                 std::to_string(*id) + "); a report id names one report");
  }
  return Status::Ok();
}

Status QueueingReplica::PushAction(const v1::RecordActionRequest& req, int64_t* id) {
  Status s = Room();
  if (!s.ok()) return s;
  v1::QueuedCommand c;
  *c.mutable_action() = req;
  Stamp(name, &c);
  return queue->Push(req.service_id(), "", "", ledger::SerializeDeterministic(c),
                     c.accepted_at().seconds(), id, nullptr);
}

Status QueueingReplica::Await(int64_t id, v1::QueuedResult* out) {
  Status s = answers->Wait(id, wait_ms, out);
  if (!s.ok()) return s;
  return AnswerStatus(*out);
}

// ---- Sequencer --------------------------------------------------------------

Sequencer::Sequencer(ledger::CommandQueue* queue, Record record, std::function<int64_t()> now,
                     std::function<void(const Status&)> on_error)
    : queue_(queue),
      record_(std::move(record)),
      now_(std::move(now)),
      on_error_(std::move(on_error)) {
  thread_ = std::thread([this] {
    NameThisThread("cw-sequencer");
    Run();
  });
}

Sequencer::~Sequencer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Sequencer::Run() {
  constexpr size_t kBatch = 256;
  int64_t last_prune = 0;
  std::string last_error;
  int64_t idle_ms = 2;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    std::vector<ledger::QueuedRow> rows;
    Status s = queue_->Pull(kBatch, &rows);
    std::vector<ledger::QueueAnswer> answers;
    if (s.ok() && !rows.empty()) s = record_(rows, &answers);
    if (!answers.empty()) {
      // Answers are kept ten minutes: long past any caller's wait.
      const int64_t now = now_();
      const bool prune = now - last_prune >= 60;
      Status a = queue_->Answer(answers, now, prune ? now - 600 : 0);
      if (a.ok() && prune) last_prune = now;
      if (s.ok()) s = a;
    }
    // Each failure is said once, until it clears (the database restarting
    // would otherwise fill the log).
    if (!s.ok() && s.message() != last_error) on_error_(s);
    if (s.ok() && !last_error.empty()) on_error_(Status::Ok());
    last_error = s.ok() ? "" : s.message();
    // A full batch: more is waiting. Otherwise poll again shortly: every
    // 2 ms while commands come, backing off to every 50 ms while none do
    // (a writer without queueing replicas asks the database 20 times a
    // second, not 500).
    if (s.ok() && rows.size() == kBatch) continue;
    idle_ms = !s.ok() ? 200 : rows.empty() ? std::min<int64_t>(50, idle_ms * 2) : 2;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(idle_ms), [&] { return stop_; });
  }
}

}  // namespace carewatch::server
