#include "engine/server/replica.h"

#include <openssl/crypto.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "engine/common/digest.h"
#include "engine/common/thread_name.h"
#include "engine/duty/duty_engine.h"
#include "engine/ledger/keys.h"
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

std::string QueueKey(std::string_view hmac_key) {
  std::string key;
  (void)HexDecode(ledger::HmacSha256Hex(hmac_key, "carewatch queued command key v1"), &key);
  return key;
}

namespace {
// QueuedCommand field 5 (`mac`), 32 bytes: its tag and length.
constexpr char kSealPrefix[2] = {(5 << 3) | 2, 32};
constexpr size_t kSealBytes = 2 + 32;
}  // namespace

std::string SealCommand(std::string_view queue_key, std::string body) {
  std::string mac;
  (void)HexDecode(ledger::HmacSha256Hex(queue_key, body), &mac);
  body.append(kSealPrefix, 2);
  body += mac;
  return body;
}

bool SealedUnder(std::string_view queue_key, std::string_view body) {
  if (body.size() < kSealBytes) return false;
  const std::string_view sealed = body.substr(0, body.size() - kSealBytes);
  const std::string_view seal = body.substr(body.size() - kSealBytes);
  if (seal.substr(0, 2) != std::string_view(kSealPrefix, 2)) return false;
  std::string mac;
  if (!HexDecode(ledger::HmacSha256Hex(queue_key, sealed), &mac) || mac.size() != 32) return false;
  return CRYPTO_memcmp(mac.data(), seal.data() + 2, 32) == 0;
}

Status SequenceCommands(duty::DutyEngine& engine, signals::SignalEngine* signals,
                        const std::string& queue_key, const std::vector<ledger::QueuedRow>& rows,
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
    if (!SealedUnder(queue_key, rows[n].body)) {
      fail(&it.result, Status::FailedPrecondition(
                           "queued command " + std::to_string(it.id) +
                           " is not sealed by a carewatchd of this deployment (its queue key, "
                           "from hmac_key); it was not recorded"));
      continue;
    }
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

// ---- Waking a thread that waits for the queue -------------------------------

WakeFd::WakeFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
WakeFd::~WakeFd() {
  if (fd_ >= 0) ::close(fd_);
}
void WakeFd::Wake() {
  const uint64_t one = 1;
  if (fd_ >= 0 && ::write(fd_, &one, sizeof one) < 0) {
    // Already readable (the counter is far from full): the waiter wakes.
  }
}
void WakeFd::Drain() {
  uint64_t n;
  if (fd_ >= 0 && ::read(fd_, &n, sizeof n) < 0) {
    // Nothing to drain (EAGAIN).
  }
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
  wake_.Wake();
  poller_.join();
}

void AnswerWaiter::Abort(const std::string& why) {
  std::vector<std::pair<std::shared_ptr<Slot>, Status>> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_.empty()) aborted_ = why;
    cv_.notify_all();
    TakeAsync(&ready);
  }
  Dispatch(&ready);
}

Status AnswerWaiter::Unanswered(int64_t id, const std::string& aborted, int timeout_ms) {
  const std::string why = !aborted.empty()
                              ? aborted
                              : "the ledger's writer did not answer within " +
                                    std::to_string(timeout_ms) + " ms (it may be changing over)";
  return Status::Unavailable("queued durably as command " + std::to_string(id) +
                             ", not answered: " + why +
                             "; a retry is safe (a report is answered with its verdict)");
}

void AnswerWaiter::WaitAsync(int64_t id, int timeout_ms, Done done) {
  auto slot = std::make_shared<Slot>();
  slot->callback = std::move(done);
  slot->id = id;
  slot->timeout_ms = timeout_ms;
  slot->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string aborted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborted = aborted_;
    if (aborted.empty()) {
      waiting_.emplace(id, slot);
      poll_cv_.notify_one();
      wake_.Wake();
      return;
    }
  }
  slot->callback(Unanswered(id, aborted, timeout_ms), {});
}

void AnswerWaiter::TakeAsync(std::vector<std::pair<std::shared_ptr<Slot>, Status>>* ready) {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    Slot& slot = *it->second;
    if (!slot.callback || (!slot.done && aborted_.empty() && now < slot.deadline)) {
      ++it;
      continue;
    }
    ready->emplace_back(it->second,
                        slot.done ? Status::Ok() : Unanswered(slot.id, aborted_, slot.timeout_ms));
    it = waiting_.erase(it);
  }
}

void AnswerWaiter::Dispatch(std::vector<std::pair<std::shared_ptr<Slot>, Status>>* ready) {
  for (auto& [slot, status] : *ready) slot->callback(status, std::move(slot->result));
  ready->clear();
}

Status AnswerWaiter::Wait(int64_t id, int timeout_ms, v1::QueuedResult* out) {
  auto slot = std::make_shared<Slot>();
  std::unique_lock<std::mutex> lock(mu_);
  auto mine = waiting_.emplace(id, slot);
  poll_cv_.notify_one();
  wake_.Wake();  // the poller may be waiting for the database, not on poll_cv_
  const bool answered = cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                     [&] { return slot->done || !aborted_.empty(); });
  waiting_.erase(mine);
  if (slot->done) {
    *out = std::move(slot->result);
    return Status::Ok();
  }
  return Unanswered(id, answered ? aborted_ : std::string(), timeout_ms);
}

void AnswerWaiter::Poll() {
  using Event = ledger::CommandQueue::Event;
  constexpr size_t kBusyWaiters = 16;
  constexpr int kGatherMs = 3;
  std::unique_lock<std::mutex> lock(mu_);
  // Whether this replica waits for the writer's announcements
  // (CommandQueue::SetWaiting): while few callers wait. With many, answers
  // are read every kGatherMs instead, and the writer need not announce.
  bool waiting = false;
  auto retry_waiting = std::chrono::steady_clock::now();  // when SetWaiting may be tried
  auto set_waiting = [&](bool w) {
    lock.unlock();
    Status s = queue_->SetWaiting(Event::kAnswered, w);
    lock.lock();
    waiting = w && s.ok();
    return s.ok();
  };
  while (!stop_) {
    if (waiting_.empty()) {
      // Nobody waits. The announcements that come meanwhile are read once a
      // second, so that they do not pile up behind this listener; after a
      // second with no caller the replica stops waiting for them.
      const bool caller = poll_cv_.wait_for(lock, std::chrono::seconds(1),
                                            [&] { return stop_ || !waiting_.empty(); });
      if (!caller && waiting) set_waiting(false);
      TakeAnnouncements(lock);
      continue;
    }
    // Drained before the ids are read: a caller registering after this
    // leaves the wake-up set, and the wait below returns at once for it.
    wake_.Drain();
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
    // Answered and expired WaitAsync calls are answered from here, unlocked.
    std::vector<std::pair<std::shared_ptr<Slot>, Status>> ready;
    TakeAsync(&ready);
    if (!ready.empty()) {
      lock.unlock();
      Dispatch(&ready);
      lock.lock();
    }
    if (!s.ok() || stop_) {
      poll_cv_.wait_for(lock, std::chrono::milliseconds(200));
      continue;
    }
    if (waiting_.size() >= kBusyWaiters) {
      // Many callers wait: answers are read every kGatherMs, not on every
      // announcement (each read wakes every caller to look at its slot).
      if (waiting) set_waiting(false);
      poll_cv_.wait_for(lock, std::chrono::milliseconds(kGatherMs), [&] { return stop_; });
      TakeAnnouncements(lock);
      continue;
    }
    if (!waiting) {
      // Read once more once waiting: answers stored before were not
      // announced. If it cannot wait, it reads every few milliseconds and
      // tries again in a few seconds.
      if (std::chrono::steady_clock::now() >= retry_waiting) {
        if (set_waiting(true)) continue;
        retry_waiting = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      }
      poll_cv_.wait_for(lock, std::chrono::milliseconds(kGatherMs));
      continue;
    }
    // Until the writer announces answers, a caller registers, or
    // kSafetyPollMs pass (a writer of an older carewatchd does not
    // announce).
    lock.unlock();
    bool happened = false;
    Status w = queue_->WaitFor(Event::kAnswered, kSafetyPollMs, wake_.fd(), &happened);
    lock.lock();
    if (!w.ok()) waiting = false;
  }
  if (waiting) set_waiting(false);
}

void AnswerWaiter::TakeAnnouncements(std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  bool happened = false;
  // A failure closes the listener; the next wait listens again.
  (void)queue_->WaitFor(ledger::CommandQueue::Event::kAnswered, 0, -1, &happened);
  lock.lock();
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

Status QueueingReplica::PrepareReport(const v1::ContentReport& report, std::string* sealed,
                                      std::string* digest, int64_t* accepted_at) {
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
  *digest = q->prepared().report_digest();
  *accepted_at = c.accepted_at().seconds();
  *sealed = SealCommand(QueueKey(hmac_key), ledger::SerializeDeterministic(c));
  return Status::Ok();
}

namespace {

// A report queued under its id with other content than this one's.
Status OtherContent(const std::string& service_id, const std::string& report_id, int64_t id) {
  return Status::AlreadyExists("report " + report_id + " of service " + service_id +
                               " was already submitted with other content (queued as command " +
                               std::to_string(id) + "); a report id names one report");
}

}  // namespace

Status QueueingReplica::PushReport(const v1::ContentReport& report, int64_t* id) {
  std::string sealed, digest, queued_digest;
  int64_t accepted_at = 0;
  Status s = PrepareReport(report, &sealed, &digest, &accepted_at);
  if (!s.ok()) return s;
  s = queue->Push(report.service_id(), report.report_id(), digest, sealed, accepted_at, id,
                  &queued_digest);
  if (!s.ok()) return s;
  if (queued_digest != digest) return OtherContent(report.service_id(), report.report_id(), *id);
  return Status::Ok();
}

void QueueingReplica::PushReportAsync(const v1::ContentReport& report, Pushed done) {
  std::string sealed, digest;
  int64_t accepted_at = 0;
  Status s = PrepareReport(report, &sealed, &digest, &accepted_at);
  if (!s.ok()) return done(s, 0);
  queue->PushAsync(report.service_id(), report.report_id(), digest, sealed, accepted_at,
                   [done = std::move(done), digest, service_id = report.service_id(),
                    report_id = report.report_id()](const Status& st, int64_t id,
                                                    const std::string& queued_digest) {
                     if (!st.ok()) return done(st, id);
                     if (queued_digest != digest) {
                       return done(OtherContent(service_id, report_id, id), id);
                     }
                     done(Status::Ok(), id);
                   });
}

Status QueueingReplica::PrepareAction(const v1::RecordActionRequest& req, std::string* sealed,
                                      int64_t* accepted_at) {
  Status s = Room();
  if (!s.ok()) return s;
  v1::QueuedCommand c;
  *c.mutable_action() = req;
  Stamp(name, &c);
  *accepted_at = c.accepted_at().seconds();
  *sealed = SealCommand(QueueKey(hmac_key), ledger::SerializeDeterministic(c));
  return Status::Ok();
}

Status QueueingReplica::PushAction(const v1::RecordActionRequest& req, int64_t* id) {
  std::string sealed;
  int64_t accepted_at = 0;
  Status s = PrepareAction(req, &sealed, &accepted_at);
  if (!s.ok()) return s;
  return queue->Push(req.service_id(), "", "", sealed, accepted_at, id, nullptr);
}

void QueueingReplica::PushActionAsync(const v1::RecordActionRequest& req, Pushed done) {
  std::string sealed;
  int64_t accepted_at = 0;
  Status s = PrepareAction(req, &sealed, &accepted_at);
  if (!s.ok()) return done(s, 0);
  queue->PushAsync(
      req.service_id(), "", "", sealed, accepted_at,
      [done = std::move(done)](const Status& st, int64_t id, const std::string&) { done(st, id); });
}

Status QueueingReplica::Await(int64_t id, v1::QueuedResult* out) {
  Status s = answers->Wait(id, wait_ms, out);
  if (!s.ok()) return s;
  return AnswerStatus(*out);
}

void QueueingReplica::AwaitAsync(int64_t id, AnswerWaiter::Done done) {
  answers->WaitAsync(id, wait_ms, [done = std::move(done)](const Status& s, v1::QueuedResult r) {
    if (!s.ok()) return done(s, std::move(r));
    Status answered = AnswerStatus(r);
    done(answered, std::move(r));
  });
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
  wake_.Wake();
  thread_.join();
}

void Sequencer::Run() {
  constexpr size_t kBatch = 256;
  using Event = ledger::CommandQueue::Event;
  constexpr int kGatherMs = 2;
  constexpr size_t kBusyRows = 16;
  bool waiting = false;  // for the replicas' announcements (CommandQueue::SetWaiting)
  auto retry_waiting = std::chrono::steady_clock::now();  // when SetWaiting may be tried
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
    if (s.ok() && rows.size() >= kBusyRows) {
      // Commands are coming fast: they are read without waiting for
      // announcements, and replicas need not announce them.
      if (waiting) {
        waiting = false;
        (void)queue_->SetWaiting(Event::kQueued, false);
      }
      if (rows.size() == kBatch) continue;  // more is waiting
      // Gather for a moment, as a round of the writer's costs about the
      // same for one command as for many. The announcements that came
      // (other ledgers' on this database) are taken, not left to pile up.
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(kGatherMs), [&] { return stop_; });
      }
      bool happened = false;
      (void)queue_->WaitFor(Event::kQueued, 0, -1, &happened);
      continue;
    }
    if (s.ok() && !waiting && std::chrono::steady_clock::now() >= retry_waiting) {
      // Read once more once waiting: commands queued before were not
      // announced. If it cannot wait (its session lost, or the wait lock
      // still held by a writer going away), it polls and tries again in
      // a few seconds.
      waiting = queue_->SetWaiting(Event::kQueued, true).ok();
      if (waiting) continue;
      retry_waiting = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    } else if (s.ok() && waiting) {
      // Until a queueing replica announces commands (sent when they are
      // committed), the sequencer stops, or kSafetyPollMs pass (a replica
      // of an older carewatchd does not announce).
      bool happened = false;
      waiting = queue_->WaitFor(Event::kQueued, kSafetyPollMs, wake_.fd(), &happened).ok();
      if (waiting) continue;
    }
    // Without a listening connection, poll: every 2 ms while commands
    // come, backing off to every 50 ms while none do.
    idle_ms = !s.ok() ? 200 : rows.empty() ? std::min<int64_t>(50, idle_ms * 2) : 2;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(idle_ms), [&] { return stop_; });
  }
}

}  // namespace carewatch::server
