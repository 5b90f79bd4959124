// Moderation: what a platform's trust-and-safety systems call.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/common/thread_name.h"
#include "engine/server/request.h"
#include "engine/server/services.h"

namespace carewatch::server {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;

// Admits a unary call to wait for the ledger (a WaitingCall: each call
// waiting holds its request and answer, so a bounded number of them, and of
// their requests' bytes, and of both at most the caller's share). Returns
// what answers the call and gives its place back; refused, answers it and
// returns an empty function.
std::function<void(const grpc::Status&)> AdmitWaiting(Server::State& s, const Principal& p,
                                                      size_t request_bytes,
                                                      const UnaryAnswer& answer) {
  auto waiting = std::make_shared<WaitingCall>(s, p, static_cast<int64_t>(request_bytes));
  if (!waiting->ok()) {
    answer(waiting->refusal());
    return nullptr;
  }
  return [answer, waiting](const grpc::Status& st) {
    waiting->Release();
    answer(st);
  };
}

// Every Moderation method, each call on gRPC's thread until it is answered.
// The ledger's writer serves WriterModerationService, which replaces
// Evaluate with one that holds no thread while it waits for the commit; a
// queueing replica serves ReplicaModerationService, which replaces Evaluate
// and RecordAction so (their answers are the writer's).
class ModerationService : public v1::Moderation::Service {
 public:
  explicit ModerationService(Server::State* s) : s_(s) {}

  grpc::Status Evaluate(ServerContext* ctx, const v1::EvaluateRequest* req,
                        v1::EvaluateResponse* resp) override {
    return Serve(*s_, ctx, "Moderation/Evaluate", *req, [&](const Principal&) {
      duty::DutyEngine::Identifiers extracted;
      grpc::Status st = Submit(req->report(), resp->mutable_verdict(), nullptr, &extracted);
      if (st.ok()) st = ToGrpc(Link(req->report(), resp->verdict(), extracted));
      return st;
    });
  }

  grpc::Status EvaluateStream(
      ServerContext* ctx,
      grpc::ServerReaderWriter<v1::EvaluateResponse, v1::EvaluateRequest>* stream) override {
    return ServeStream(
        *s_, ctx, "Moderation/EvaluateStream",
        [&](const Principal& p, const MethodPolicy& policy) { return Stream(p, policy, stream); });
  }

  grpc::Status RecordAction(ServerContext* ctx, const v1::RecordActionRequest* req,
                            v1::RecordActionResponse* resp) override {
    return Serve(*s_, ctx, "Moderation/RecordAction", *req, [&](const Principal&) {
      std::vector<v1::Obligation> obligations;
      duty::ActionInput in{req->service_id(),         req->report_id(), req->action(),
                           req->taken_at().seconds(), req->actor(),     req->taken_at().nanos()};
      if (!req->has_taken_at()) in.taken_at = 0;
      uint64_t seq = 0;
      grpc::Status st = ToGrpc(s_->engine->RecordAction(in, &obligations, &seq));
      for (auto& o : obligations) *resp->add_obligations() = std::move(o);
      resp->set_ledger_seq(seq);
      return st;
    });
  }

 protected:
  grpc::Status Stream(const Principal& p, const MethodPolicy& policy,
                      grpc::ServerReaderWriter<v1::EvaluateResponse, v1::EvaluateRequest>* stream) {
    // A bounded number of streams at a time; each holds gRPC's handler
    // thread and, once it has a report, one responder thread.
    StreamSlot slot(s_->open_streams, s_->config.max_streams);
    if (!slot.ok()) {
      return grpc::Status(StatusCode::RESOURCE_EXHAUSTED,
                          "too many open streams (max_streams " +
                              std::to_string(s_->config.max_streams) + "); try again later");
    }
    // And at most the caller's share of them (max_share_per_caller).
    StreamShare share(s_->shares, s_->config, p);
    if (!share.ok()) return share.Refusal(s_->config);
    // Each condition has one waiter, so a hand-off wakes one thread.
    struct Answer {
      v1::EvaluateResponse resp;
      std::unique_ptr<duty::DutyEngine::Pending> pending;
      // A flagged report naming linked identifiers: turned into signals once
      // the report is durable, before it is answered.
      std::unique_ptr<v1::ContentReport> linked;
      duty::DutyEngine::Identifiers extracted;
      bool failed = false;
      // On a queueing replica: the writer's answer, complete (or failed).
      bool answered = false;
      int64_t bytes = 0;  // the request's size, counted until this is answered
    };
    struct StreamState {
      std::mutex mu;
      std::condition_variable answer_cv, space_cv;
      std::deque<Answer> answers;
      int in_flight = 0;  // read and not yet answered
      int64_t bytes = 0;  // their requests' sizes
      int tasks = 0;      // queued to the pool and not yet done
      bool reading_done = false;
    };
    constexpr int kMaxInFlight = 64;
    // Each stream's share of max_waiting_bytes for the requests of its reports
    // in flight; one report at a time is read whatever its size.
    const int64_t max_bytes =
        std::max<int64_t>(1, s_->config.max_waiting_bytes / s_->config.max_streams);
    auto state = std::make_shared<StreamState>();
    // The shared workers evaluate and queue reports for the ledger without
    // waiting for durability; this stream's responder answers each once its
    // events are durable, so every report in flight on the stream (up to
    // kMaxInFlight) can share one group commit.
    auto respond = [this, state, stream] {
      NameThisThread("cw-responder");
      for (;;) {
        Answer a;
        {
          std::unique_lock<std::mutex> lock(state->mu);
          state->answer_cv.wait(lock, [&] {
            return !state->answers.empty() || (state->reading_done && state->tasks == 0);
          });
          if (state->answers.empty()) return;
          a = std::move(state->answers.front());
          state->answers.pop_front();
        }
        if (!a.failed && !a.answered) {
          Status durable = a.pending->Wait();
          if (durable.ok() && a.linked) durable = Link(*a.linked, a.resp.verdict(), a.extracted);
          if (durable.ok()) {
            Counted(a.resp.verdict());
          } else {
            std::string id = a.resp.verdict().report_id();
            a.resp.Clear();
            a.resp.mutable_verdict()->set_report_id(id);
            a.resp.set_error(ToGrpc(durable).error_message());
          }
        }
        stream->Write(a.resp);
        std::lock_guard<std::mutex> lock(state->mu);
        --state->in_flight;
        state->bytes -= a.bytes;
        s_->stream_bytes.fetch_sub(a.bytes);
        state->space_cv.notify_one();
      }
    };
    std::thread responder;
    // Counted in active_streams from its first report to its end.
    struct Active {
      std::atomic<int>* count = nullptr;
      ~Active() {
        if (count) count->fetch_sub(1);
      }
    } active;
    static const int cpus = std::max(1u, std::thread::hardware_concurrency());
    grpc::Status result = grpc::Status::OK;
    v1::EvaluateRequest req;
    while (stream->Read(&req)) {
      // Another service's report ends the stream; a malformed one is
      // answered with its error and the stream goes on.
      grpc::Status t = CheckTenant(policy, p, TenantOf(req));
      if (!t.ok()) {
        result = t;
        break;
      }
      if (!responder.joinable()) {
        // Started with the first report: an idle stream holds no thread of
        // ours. A thread that cannot be started ends this stream only.
        try {
          responder = std::thread(respond);
        } catch (const std::system_error&) {
          result = {StatusCode::RESOURCE_EXHAUSTED, "cannot start a thread for this stream"};
          break;
        }
        active.count = &s_->active_streams;
        active.count->fetch_add(1);
      }
      const int64_t bytes = static_cast<int64_t>(req.ByteSizeLong());
      {
        std::unique_lock<std::mutex> lock(state->mu);
        state->space_cv.wait(lock, [&] {
          return state->in_flight == 0 ||
                 (state->in_flight < kMaxInFlight && state->bytes + bytes <= max_bytes);
        });
        ++state->in_flight;
        ++state->tasks;
        state->bytes += bytes;
        s_->stream_bytes.fetch_add(bytes);
      }
      // A report's answer, or its error, for the responder to write.
      auto deliver = [state](Answer a) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->answers.push_back(std::move(a));
        --state->tasks;
        state->answer_cv.notify_one();
      };
      auto failed = [bytes](const std::string& report_id, const grpc::Status& why) {
        Answer a;
        a.bytes = bytes;
        a.failed = true;
        a.resp.mutable_verdict()->set_report_id(report_id);
        a.resp.set_error(why.error_message());
        return a;
      };
      auto evaluate = [this, state, bytes, deliver, failed, request = std::move(req)]() mutable {
        grpc::Status rs = CheckRequest(s_->config, request);
        if (!rs.ok()) return deliver(failed(request.report().report_id(), rs));
        if (s_->replica) {
          // Kept until the push is committed, for its warnings.
          auto r = std::make_shared<const v1::EvaluateRequest>(std::move(request));
          // Queued without waiting for the queue's commit, and answered
          // when the writer's answer comes: no thread waits for either, so
          // every report in flight waits for the writer at once (each for
          // queue_wait_ms at most), and the responder writes the answers
          // in the order they come.
          s_->replica->PushReportAsync(
              r->report(), [this, bytes, deliver, failed, r](const Status& pushed, int64_t id) {
                const std::string& report_id = r->report().report_id();
                if (!pushed.ok()) return deliver(failed(report_id, ToGrpc(pushed)));
                s_->replica->AwaitAsync(
                    id, [this, bytes, deliver, failed, report_id, warnings = Warnings(r->report())](
                            const Status& q, v1::QueuedResult result) {
                      if (!q.ok()) return deliver(failed(report_id, ToGrpc(q)));
                      Answer a;
                      a.bytes = bytes;
                      a.answered = true;
                      *a.resp.mutable_verdict() = std::move(*result.mutable_verdict());
                      for (const auto& w : warnings) a.resp.mutable_verdict()->add_warnings(w);
                      Counted(a.resp.verdict());
                      deliver(std::move(a));
                    });
              });
          return;
        }
        Answer a;
        a.bytes = bytes;
        a.pending = std::make_unique<duty::DutyEngine::Pending>();
        rs = Submit(request.report(), a.resp.mutable_verdict(), a.pending.get(), &a.extracted);
        if (!rs.ok()) return deliver(failed(request.report().report_id(), rs));
        if (a.resp.verdict().flags_size() > 0 &&
            (request.report().linked_identifiers_size() > 0 || !a.extracted.empty()))
          a.linked = std::make_unique<v1::ContentReport>(request.report());
        deliver(std::move(a));
      };
      // Where the report is evaluated. With as many active streams as CPUs
      // or more, the streams keep the CPUs busy between them: each
      // evaluates its reports on its own thread, and a hand-off to a worker
      // would only add a thread switch a report. With fewer, the shared
      // workers spread one stream's reports over the CPUs. A queueing
      // replica always hands off: queueing waits for the database.
      const bool on_stream = !s_->replica && s_->active_streams.load() >= cpus;
      s_->metrics.CountStreamReport(on_stream);
      if (on_stream) {
        evaluate();
      } else {
        s_->stream_pool->Submit(std::move(evaluate));
      }
      req = v1::EvaluateRequest();
    }
    {
      std::lock_guard<std::mutex> lock(state->mu);
      state->reading_done = true;
    }
    state->answer_cv.notify_one();
    if (responder.joinable()) {
      responder.join();
    } else {
      // No responder (none started, or it could not be): wait for the tasks.
      std::unique_lock<std::mutex> lock(state->mu);
      state->answer_cv.wait(lock, [&] { return state->tasks == 0; });
    }
    return result;
  }

  ModerationService() = default;  // for WriterModerationService, which sets s_

  // The report's vocabulary warnings, counted.
  std::vector<std::string> Warnings(const v1::ContentReport& report) {
    std::vector<std::string> fields;
    std::vector<std::string> warnings = VocabularyWarnings(report, "report.", &fields);
    for (const auto& f : fields) s_->metrics.CountUnknownValue(f);
    return warnings;
  }

  // With `pending`, the verdict is answered only once pending->Wait() is OK
  // (then Counted); without, on return.
  grpc::Status Submit(const v1::ContentReport& report, v1::Verdict* verdict,
                      duty::DutyEngine::Pending* pending = nullptr,
                      duty::DutyEngine::Identifiers* extracted = nullptr) {
    Status s = s_->engine->SubmitReport(report, verdict, pending, extracted);
    if (!s.ok()) return ToGrpc(s);
    for (auto& w : Warnings(report)) verdict->add_warnings(std::move(w));
    if (!pending) Counted(*verdict);
    return grpc::Status::OK;
  }
  // The report's linked identifiers become signal tokens (flagged reports
  // only); the identifiers themselves are dropped with the request.
  Status Link(const v1::ContentReport& report, const v1::Verdict& verdict,
              const duty::DutyEngine::Identifiers& extracted) {
    if (verdict.flags_size() == 0) return Status::Ok();
    if (report.linked_identifiers_size() == 0 && extracted.empty()) return Status::Ok();
    return s_->signals->SubmitLinked(report, verdict, extracted);
  }
  void Counted(const v1::Verdict& verdict) {
    s_->metrics.CountReports(1);
    for (const auto& f : verdict.flags()) s_->metrics.CountFlag(f.rule_id());
  }
  Server::State* s_ = nullptr;
};

// As the ledger's writer serves it: unary Evaluate through gRPC's callback
// API. A report is evaluated and queued for the ledger on gRPC's thread,
// and answered from the ledger's finisher thread once durable, so no thread
// waits for the commit (one blocked per call in flight made the sync
// server's thread hand-offs a large part of a report's cost:
// docs/performance.md).
class WriterModerationService final
    : public v1::Moderation::WithCallbackMethod_Evaluate<ModerationService> {
 public:
  explicit WriterModerationService(Server::State* s) { s_ = s; }

  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const v1::EvaluateRequest* req,
                                     v1::EvaluateResponse* resp) override {
    return ServeAsync(*s_, ctx, "Moderation/Evaluate", *req,
                      [&](const Principal& p, const UnaryAnswer& answer) {
                        auto done = AdmitWaiting(*s_, p, req->ByteSizeLong(), answer);
                        if (done) Admitted(*req, resp->mutable_verdict(), std::move(done));
                      });
  }

 private:
  // Evaluates and queues an admitted report; `answer` once it is durable.
  void Admitted(const v1::EvaluateRequest& req, v1::Verdict* verdict,
                std::function<void(const grpc::Status&)> answer) {
    auto pending = std::make_unique<duty::DutyEngine::Pending>();
    duty::DutyEngine::Identifiers extracted;
    grpc::Status st = Submit(req.report(), verdict, pending.get(), &extracted);
    if (!st.ok()) return answer(st);
    if (verdict->flags_size() > 0 &&
        (req.report().linked_identifiers_size() > 0 || !extracted.empty())) {
      // Linking waits for the signals' own commit: on a worker, never on the
      // ledger's finisher (Ledger::Ticket::OnDone).
      std::shared_ptr<duty::DutyEngine::Pending> wait = std::move(pending);
      s_->stream_pool->Submit(
          [this, wait, &req, verdict, answer, extracted = std::move(extracted)] {
            Status durable = wait->Wait();
            if (durable.ok()) durable = Link(req.report(), *verdict, extracted);
            if (durable.ok()) Counted(*verdict);
            answer(ToGrpc(durable));
          });
      return;
    }
    pending->Then([this, verdict, answer](const Status& durable) {
      if (durable.ok()) Counted(*verdict);
      answer(ToGrpc(durable));
    });
  }
};

// As a queueing replica serves them: unary Evaluate and RecordAction through
// gRPC's callback API too. A shared worker checks, evaluates and queues the
// report or action without waiting for the queue's commit (the queue's
// pusher commits it with whatever else is queued), and the replica's
// answers thread sends the writer's answer, so no thread waits for either:
// the calls waiting are bounded by max_waiting_calls, as on the writer, not
// by gRPC's threads or the workers.
class ReplicaModerationService final
    : public v1::Moderation::WithCallbackMethod_RecordAction<
          v1::Moderation::WithCallbackMethod_Evaluate<ModerationService>> {
 public:
  explicit ReplicaModerationService(Server::State* s) { s_ = s; }

  // An action is queued as the request and answered as Evaluate is.
  grpc::ServerUnaryReactor* RecordAction(grpc::CallbackServerContext* ctx,
                                         const v1::RecordActionRequest* req,
                                         v1::RecordActionResponse* resp) override {
    return ServeAsync(
        *s_, ctx, "Moderation/RecordAction", *req,
        [&](const Principal& p, const UnaryAnswer& answer) {
          auto done = AdmitWaiting(*s_, p, req->ByteSizeLong(), answer);
          if (!done) return;
          s_->stream_pool->Submit([this, req, resp, done] {
            s_->replica->PushActionAsync(
                *req, [this, resp, done](const Status& pushed, int64_t id) {
                  if (!pushed.ok()) return done(ToGrpc(pushed));
                  s_->replica->AwaitAsync(id, [resp, done](const Status& q, v1::QueuedResult r) {
                    if (!q.ok()) return done(ToGrpc(q));
                    *resp->mutable_obligations() = std::move(*r.mutable_obligations());
                    resp->set_ledger_seq(r.ledger_seq());
                    done(grpc::Status::OK);
                  });
                });
          });
        });
  }

  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const v1::EvaluateRequest* req,
                                     v1::EvaluateResponse* resp) override {
    return ServeAsync(
        *s_, ctx, "Moderation/Evaluate", *req, [&](const Principal& p, const UnaryAnswer& answer) {
          auto done = AdmitWaiting(*s_, p, req->ByteSizeLong(), answer);
          if (!done) return;
          s_->stream_pool->Submit([this, req, verdict = resp->mutable_verdict(), done] {
            s_->replica->PushReportAsync(req->report(), [this, req, verdict, done](
                                                            const Status& pushed, int64_t id) {
              if (!pushed.ok()) return done(ToGrpc(pushed));
              s_->replica->AwaitAsync(id, [this, verdict, done, warnings = Warnings(req->report())](
                                              const Status& q, v1::QueuedResult r) {
                if (!q.ok()) return done(ToGrpc(q));
                *verdict = std::move(*r.mutable_verdict());
                for (const auto& w : warnings) verdict->add_warnings(w);
                Counted(*verdict);
                done(grpc::Status::OK);
              });
            });
          });
        });
  }
};

}  // namespace

std::unique_ptr<grpc::Service> NewModerationService(Server::State* s) {
  if (s->replica) return std::make_unique<ReplicaModerationService>(s);
  return std::make_unique<WriterModerationService>(s);
}

}  // namespace carewatch::server
