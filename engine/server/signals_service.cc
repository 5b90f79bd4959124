// Signals: cross-platform linkage (docs/signals.md). Platform role, each
// call for the caller's own service only.
#include "engine/server/request.h"
#include "engine/server/services.h"

namespace carewatch::server {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;

class SignalsService final : public v1::Signals::Service {
 public:
  explicit SignalsService(Server::State* s) : s_(s) {}

  grpc::Status BlindEvaluate(ServerContext* ctx, const v1::BlindEvaluateRequest* req,
                             v1::BlindEvaluateResponse* resp) override {
    return Serve(*s_, ctx, "Signals/BlindEvaluate", *req, [&](const Principal& p) {
      std::vector<std::string> in(req->blinded_elements().begin(), req->blinded_elements().end());
      std::vector<std::string> out;
      int64_t remaining = 0;
      grpc::Status st =
          ToGrpc(s_->signals->BlindEvaluate(req->service_id(), p.name, in, &out, &remaining));
      for (auto& e : out) resp->add_evaluated_elements(std::move(e));
      resp->set_quota_remaining(remaining);
      return st;
    });
  }

  grpc::Status SubmitSignals(ServerContext* ctx, const v1::SubmitSignalsRequest* req,
                             v1::SubmitSignalsResponse* resp) override {
    return Serve(*s_, ctx, "Signals/SubmitSignals", *req, [&](const Principal&) {
      std::vector<signals::SignalInput> in;
      for (const auto& sig : req->signals())
        in.push_back({sig.kind(), sig.token(), sig.category()});
      std::vector<v1::LinkageAlert> alerts;
      grpc::Status st =
          ToGrpc(s_->signals->Submit(req->service_id(), req->report_id(), in, &alerts));
      if (st.ok()) resp->set_accepted(req->signals_size());
      for (auto& a : alerts) *resp->add_alerts() = std::move(a);
      return st;
    });
  }

  grpc::Status Subscribe(ServerContext* ctx, const v1::SubscribeAlertsRequest* req,
                         grpc::ServerWriter<v1::LinkageAlert>* writer) override {
    return ServeStream(*s_, ctx, "Signals/Subscribe",
                       [&](const Principal& p, const MethodPolicy& policy) -> grpc::Status {
                         grpc::Status st = CheckRequest(s_->config, *req);
                         if (st.ok()) st = CheckTenant(policy, p, TenantOf(*req));
                         if (!st.ok()) return st;
                         // Counted with EvaluateStream: each open stream holds a thread.
                         StreamSlot slot(s_->open_streams, s_->config.max_streams);
                         if (!slot.ok())
                           return {StatusCode::RESOURCE_EXHAUSTED,
                                   "too many open streams (max_streams " +
                                       std::to_string(s_->config.max_streams) +
                                       "); try again later"};
                         StreamShare share(s_->shares, s_->config, p);
                         if (!share.ok()) return share.Refusal(s_->config);
                         // At most a few subscriptions per service, so that one platform
                         // cannot hold every stream slot.
                         struct Subscription {
                           Server::State* s;
                           std::string service;
                           bool ok = false;
                           ~Subscription() {
                             if (!ok) return;
                             std::lock_guard<std::mutex> lock(s->subscriptions_mu);
                             if (--s->subscriptions[service] == 0) s->subscriptions.erase(service);
                           }
                         } sub{s_, req->service_id()};
                         {
                           std::lock_guard<std::mutex> lock(s_->subscriptions_mu);
                           int& n = s_->subscriptions[req->service_id()];
                           if (n >= kMaxSubscriptionsPerService) {
                             if (n == 0) s_->subscriptions.erase(req->service_id());
                             return {StatusCode::RESOURCE_EXHAUSTED,
                                     "service " + req->service_id() + " already has " +
                                         std::to_string(kMaxSubscriptionsPerService) +
                                         " Subscribe streams open; close one first"};
                           }
                           ++n;
                           sub.ok = true;
                         }
                         uint64_t cursor = req->after_cursor();
                         uint64_t known = 0;  // every alert event up to this seq is readable
                         while (!ctx->IsCancelled() && !s_->draining) {
                           known = s_->signals->WaitForAlerts(known, 500);
                           for (;;) {
                             ledger::AlertQuery q;
                             q.service_id = req->service_id();
                             q.after_seq = cursor;
                             q.limit = 100;
                             std::vector<v1::LinkageAlert> alerts;
                             st = ToGrpc(s_->signals->ListAlerts(q, &alerts));
                             if (!st.ok()) return st;
                             for (const auto& a : alerts) {
                               if (!writer->Write(a))
                                 return grpc::Status::OK;  // the client went away
                               cursor = a.cursor();
                             }
                             if (alerts.size() < q.limit) break;
                           }
                         }
                         return grpc::Status::OK;
                       });
  }

  grpc::Status ListAlerts(ServerContext* ctx, const v1::ListAlertsRequest* req,
                          v1::ListAlertsResponse* resp) override {
    return Serve(*s_, ctx, "Signals/ListAlerts", *req, [&](const Principal&) {
      ledger::AlertQuery q;
      q.service_id = req->service_id();
      q.status = req->status();
      q.after_seq = req->after_cursor();
      q.limit = req->page_size() <= 0 ? 100 : std::min(req->page_size(), kMaxPageSize);
      std::vector<v1::LinkageAlert> alerts;
      grpc::Status st = ToGrpc(s_->signals->ListAlerts(q, &alerts));
      if (alerts.size() == q.limit) resp->set_next_cursor(alerts.back().cursor());
      for (auto& a : alerts) *resp->add_alerts() = std::move(a);
      return st;
    });
  }

  grpc::Status RecordLinkFeedback(ServerContext* ctx, const v1::LinkFeedbackRequest* req,
                                  v1::LinkFeedbackResponse* resp) override {
    return Serve(*s_, ctx, "Signals/RecordLinkFeedback", *req, [&](const Principal&) {
      int64_t taken_at = 0;
      if (req->has_taken_at()) {
        Status c =
            duty::CheckClaimedTime("taken_at", req->taken_at().seconds(), req->taken_at().nanos(),
                                   NowOf(), s_->config.max_clock_skew_seconds);
        if (!c.ok()) return ToGrpc(c);
        taken_at = req->taken_at().seconds();
      }
      std::vector<v1::Obligation> obligations;
      grpc::Status st = ToGrpc(s_->signals->Feedback(req->service_id(), req->alert_id(),
                                                     req->opinion(), req->actor(), taken_at,
                                                     resp->mutable_alert(), &obligations));
      for (auto& o : obligations) *resp->add_obligations() = std::move(o);
      return st;
    });
  }

  grpc::Status WithdrawSignals(ServerContext* ctx, const v1::WithdrawSignalsRequest* req,
                               v1::WithdrawSignalsResponse* resp) override {
    return Serve(*s_, ctx, "Signals/WithdrawSignals", *req, [&](const Principal&) {
      int signals = 0, alerts = 0;
      grpc::Status st = ToGrpc(s_->signals->Withdraw(req->service_id(), req->report_id(),
                                                     req->actor(), &signals, &alerts));
      resp->set_signals_withdrawn(signals);
      resp->set_own_alerts_withdrawn(alerts);
      return st;
    });
  }

 private:
  int64_t NowOf() const { return s_->config.clock ? s_->config.clock() : NowSeconds(); }
  Server::State* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewSignalsService(Server::State* s) {
  return std::make_unique<SignalsService>(s);
}

}  // namespace carewatch::server
