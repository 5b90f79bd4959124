#ifndef CAREWATCH_ENGINE_SERVER_REQUEST_H_
#define CAREWATCH_ENGINE_SERVER_REQUEST_H_

// The request path: every RPC carewatchd serves passes through here.
//
//  1. Before the request's body is read, the gate (an auth metadata
//     processor on the listening credentials) finds the method in the access
//     table, authenticates the bearer token and checks the caller's role.
//     A method missing from the table is refused, so a new RPC cannot be
//     served without an access rule.
//  2. Serve() (ServeStream() for streams) then admits the call again to
//     learn the principal, checks the request's sizes, ids and character
//     sets (one CheckRequest overload per request type: a request type
//     without one does not compile), checks the tenant, records a
//     regulator's query in the ledger before answering it, runs the
//     handler's body, and times and counts the result.

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/status.h"
#include "engine/server/auth.h"
#include "engine/server/config.h"
#include "engine/server/metrics.h"
#include "engine/server/state.h"

namespace carewatch::server {

// Who may call a method.
enum class Access {
  kPublic,      // no token: health checks and reflection (schema only)
  kPlatform,    // platform (its own service only) or admin
  kRegulator,   // regulator or admin; each call is recorded before it is answered
  kRuleAuthor,  // rule author or admin
  kAdmin,       // admin only
  kBenchmark,   // any authenticated principal (the Noop baseline service)
};

struct MethodPolicy {
  std::string_view name;  // "Moderation/Evaluate": metrics and logs
  std::string_view path;  // "/carewatch.v1.Moderation/Evaluate": the HTTP/2 :path
  Access access;
};

// Every method carewatchd serves, with its access rule.
const std::vector<MethodPolicy>& MethodPolicies();
// nullptr when the path is not in the table.
const MethodPolicy* FindPolicy(std::string_view path);

// Authenticates an "authorization" header value and checks the role the
// policy asks for. UNAUTHENTICATED or PERMISSION_DENIED naming the role.
grpc::Status Admit(const TokenStore& tokens, const MethodPolicy& policy,
                   std::string_view authorization, Principal* p);

// Listening credentials (TLS when the config has a certificate, else
// plaintext) with the gate installed.
std::shared_ptr<grpc::ServerCredentials> GatedCredentials(const ServerConfig& config,
                                                          const TokenStore* tokens,
                                                          Metrics* metrics);

grpc::Status ToGrpc(const Status& s);

// ---- request checks (limits listed in docs/api.md) -------------------------

// Ids (report, service, rule, duty, finding, actor): at most kMaxIdBytes of
// printable ASCII without spaces; empty allowed unless `required`.
// Categorical values: at most kMaxCategoryBytes of [a-z0-9_.-].
inline constexpr size_t kMaxIdBytes = 256;
inline constexpr size_t kMaxCategoryBytes = 64;
inline constexpr int kMaxAttributes = 32;
inline constexpr int kMaxPostedFiles = 64;
inline constexpr int64_t kMaxPostedBytes = 8 << 20;
inline constexpr int kMaxDryRunReports = 1000;
inline constexpr int kMaxPageSize = 1000;

grpc::Status CheckId(const std::string& name, const std::string& v, bool required);
grpc::Status CheckCategory(const std::string& name, const std::string& v);
grpc::Status CheckReport(const ServerConfig& c, const v1::ContentReport& r,
                         const std::string& prefix = "report.");

// The report's categorical values outside the documented vocabulary
// (surface, content_type, reporter_type, subject_age_band), one message
// each naming the field, the value and the vocabulary; `fields` gets the
// field names.
std::vector<std::string> VocabularyWarnings(const v1::ContentReport& r, const std::string& prefix,
                                            std::vector<std::string>* fields = nullptr);

grpc::Status CheckRequest(const ServerConfig& c, const v1::EvaluateRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::RecordActionRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::ListBreachesRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::ListFindingsRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetEvidenceRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetCheckpointRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetConsistencyProofRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetStatsRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetEntriesRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetInclusionProofRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::RulePackSet& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::DryRunRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetActiveRulesetRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::ReloadRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::GetLinkageStatsRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::BlindEvaluateRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::SubmitSignalsRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::SubscribeAlertsRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::ListAlertsRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::LinkFeedbackRequest& r);
grpc::Status CheckRequest(const ServerConfig& c, const v1::WithdrawSignalsRequest& r);

// Signals limits.
inline constexpr int kMaxBlindedElements = 100;
inline constexpr int kMaxSignals = 32;
inline constexpr int kMaxLinkedIdentifiers = 16;
inline constexpr int kMaxSubscriptionsPerService = 4;  // Signals.Subscribe streams open at once

// The service a request acts for; nullptr for requests not scoped to one.
template <typename Request>
const std::string* TenantOf(const Request&) {
  return nullptr;
}
inline const std::string* TenantOf(const v1::EvaluateRequest& r) {
  return &r.report().service_id();
}
inline const std::string* TenantOf(const v1::RecordActionRequest& r) { return &r.service_id(); }
inline const std::string* TenantOf(const v1::BlindEvaluateRequest& r) { return &r.service_id(); }
inline const std::string* TenantOf(const v1::SubmitSignalsRequest& r) { return &r.service_id(); }
inline const std::string* TenantOf(const v1::SubscribeAlertsRequest& r) { return &r.service_id(); }
inline const std::string* TenantOf(const v1::ListAlertsRequest& r) { return &r.service_id(); }
inline const std::string* TenantOf(const v1::LinkFeedbackRequest& r) { return &r.service_id(); }
inline const std::string* TenantOf(const v1::WithdrawSignalsRequest& r) { return &r.service_id(); }

// A platform acts only for its own service. A platform method whose request
// names no service is refused (INTERNAL): the table and TenantOf disagree.
grpc::Status CheckTenant(const MethodPolicy& policy, const Principal& p,
                         const std::string* service_id);

// ---- the wrapper -----------------------------------------------------------

// Times an RPC and counts it by status code. `method` outlives the scope
// (the names in MethodPolicies() do).
class RpcScope {
 public:
  RpcScope(Metrics& m, std::string_view method)
      : m_(&m), method_(method), start_(std::chrono::steady_clock::now()) {}
  grpc::Status Done(grpc::Status s) const;

 private:
  Metrics* m_;
  std::string_view method_;
  std::chrono::steady_clock::time_point start_;
};

// The policy of a method this binary serves, by name ("Audit/GetStats").
const MethodPolicy& PolicyOf(std::string_view name);

grpc::Status AdmitCall(const Server::State& s, const MethodPolicy& policy,
                       grpc::ServerContextBase* ctx, Principal* p);

// Records a regulator's query (AUDIT_ACCESS) before it is answered.
grpc::Status RecordAudit(Server::State& s, const Principal& p, const MethodPolicy& policy,
                         const google::protobuf::Message& req);

// On a queueing replica (state.h): OK for the Moderation methods it queues,
// else UNAVAILABLE saying the ledger's writer answers the method.
grpc::Status ServedHere(const Server::State& s, const MethodPolicy& policy);

// What every unary call passes before its body: admission, request checks,
// tenant, audit record.
template <typename Request>
grpc::Status AdmitUnary(Server::State& s, const MethodPolicy& policy, grpc::ServerContextBase* ctx,
                        const Request& req, Principal* p) {
  grpc::Status st = AdmitCall(s, policy, ctx, p);
  if (st.ok()) st = ServedHere(s, policy);
  // The benchmark baseline measures the transport: its request is not read.
  if (st.ok() && policy.access != Access::kBenchmark) st = CheckRequest(s.config, req);
  if (st.ok()) st = CheckTenant(policy, *p, TenantOf(req));
  if (st.ok() && policy.access == Access::kRegulator) st = RecordAudit(s, *p, policy, req);
  return st;
}

// One unary call: AdmitUnary, then the body, on gRPC's thread for the call.
template <typename Request, typename Body>
grpc::Status Serve(Server::State& s, grpc::ServerContext* ctx, std::string_view method,
                   const Request& req, Body&& body) {
  const MethodPolicy& policy = PolicyOf(method);
  RpcScope scope(s.metrics, policy.name);
  Principal p;
  grpc::Status st = AdmitUnary(s, policy, ctx, req, &p);
  if (st.ok()) st = body(p);
  return scope.Done(st);
}

// The answer to a unary call served with ServeAsync: call it once, from any
// thread; it times and counts the call, and sends the response.
class UnaryAnswer {
 public:
  UnaryAnswer(grpc::ServerUnaryReactor* reactor, RpcScope scope)
      : reactor_(reactor), scope_(scope) {}
  void operator()(const grpc::Status& s) const { reactor_->Finish(scope_.Done(s)); }

 private:
  grpc::ServerUnaryReactor* reactor_;
  RpcScope scope_;
};

// One unary call served through gRPC's callback API, so that no thread
// waits while its answer does (for a report, until it is durable): as
// Serve, but `body(principal, answer)` may return first and answers with
// `answer` later, exactly once. The request and response stay valid until
// then.
template <typename Request, typename Body>
grpc::ServerUnaryReactor* ServeAsync(Server::State& s, grpc::CallbackServerContext* ctx,
                                     std::string_view method, const Request& req, Body&& body) {
  const MethodPolicy& policy = PolicyOf(method);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  UnaryAnswer answer(reactor, RpcScope(s.metrics, policy.name));
  Principal p;
  grpc::Status st = AdmitUnary(s, policy, ctx, req, &p);
  if (st.ok()) {
    body(p, answer);
  } else {
    answer(st);
  }
  return reactor;
}

// One streaming call: admission, then the body, which checks each message
// with CheckRequest and CheckTenant.
template <typename Body>
grpc::Status ServeStream(Server::State& s, grpc::ServerContext* ctx, std::string_view method,
                         Body&& body) {
  const MethodPolicy& policy = PolicyOf(method);
  RpcScope scope(s.metrics, policy.name);
  Principal p;
  grpc::Status st = AdmitCall(s, policy, ctx, &p);
  if (st.ok()) st = ServedHere(s, policy);
  if (st.ok()) st = body(p, policy);
  return scope.Done(st);
}

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_REQUEST_H_
