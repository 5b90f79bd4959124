#include "engine/server/request.h"

#include <grpc/grpc_security.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "engine/common/digest.h"
#include "engine/common/utf8.h"
#include "engine/eval/evaluator.h"
#include "engine/ledger/derive.h"
#include "engine/rules/vocabulary.h"
#include "engine/signals/canonical.h"

namespace carewatch::server {

using grpc::StatusCode;

// ---- access ----------------------------------------------------------------

const std::vector<MethodPolicy>& MethodPolicies() {
  static const std::vector<MethodPolicy> kPolicies = {
      {"Moderation/Evaluate", "/carewatch.v1.Moderation/Evaluate", Access::kPlatform},
      {"Moderation/EvaluateStream", "/carewatch.v1.Moderation/EvaluateStream", Access::kPlatform},
      {"Moderation/RecordAction", "/carewatch.v1.Moderation/RecordAction", Access::kPlatform},
      {"Audit/ListBreaches", "/carewatch.v1.Audit/ListBreaches", Access::kRegulator},
      {"Audit/ListFindings", "/carewatch.v1.Audit/ListFindings", Access::kRegulator},
      {"Audit/GetEvidence", "/carewatch.v1.Audit/GetEvidence", Access::kRegulator},
      {"Audit/GetCheckpoint", "/carewatch.v1.Audit/GetCheckpoint", Access::kRegulator},
      {"Audit/GetConsistencyProof", "/carewatch.v1.Audit/GetConsistencyProof", Access::kRegulator},
      {"Audit/GetStats", "/carewatch.v1.Audit/GetStats", Access::kRegulator},
      {"Audit/GetEntries", "/carewatch.v1.Audit/GetEntries", Access::kRegulator},
      {"Audit/GetInclusionProof", "/carewatch.v1.Audit/GetInclusionProof", Access::kRegulator},
      {"Rules/Validate", "/carewatch.v1.Rules/Validate", Access::kRuleAuthor},
      {"Rules/RunTests", "/carewatch.v1.Rules/RunTests", Access::kRuleAuthor},
      {"Rules/DryRun", "/carewatch.v1.Rules/DryRun", Access::kRuleAuthor},
      {"Rules/GetActiveRuleset", "/carewatch.v1.Rules/GetActiveRuleset", Access::kRuleAuthor},
      {"Rules/Reload", "/carewatch.v1.Rules/Reload", Access::kAdmin},
      {"Audit/GetLinkageStats", "/carewatch.v1.Audit/GetLinkageStats", Access::kRegulator},
      {"Signals/BlindEvaluate", "/carewatch.v1.Signals/BlindEvaluate", Access::kPlatform},
      {"Signals/SubmitSignals", "/carewatch.v1.Signals/SubmitSignals", Access::kPlatform},
      {"Signals/Subscribe", "/carewatch.v1.Signals/Subscribe", Access::kPlatform},
      {"Signals/ListAlerts", "/carewatch.v1.Signals/ListAlerts", Access::kPlatform},
      {"Signals/RecordLinkFeedback", "/carewatch.v1.Signals/RecordLinkFeedback", Access::kPlatform},
      {"Signals/WithdrawSignals", "/carewatch.v1.Signals/WithdrawSignals", Access::kPlatform},
      {"Noop/Evaluate", "/carewatch.v1.Noop/Evaluate", Access::kBenchmark},
      {"Noop/EvaluateStream", "/carewatch.v1.Noop/EvaluateStream", Access::kBenchmark},
      {"Health/Check", "/grpc.health.v1.Health/Check", Access::kPublic},
      {"Health/Watch", "/grpc.health.v1.Health/Watch", Access::kPublic},
      {"ServerReflection/ServerReflectionInfo",
       "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Access::kPublic},
  };
  return kPolicies;
}

const MethodPolicy* FindPolicy(std::string_view path) {
  for (const auto& p : MethodPolicies()) {
    if (p.path == path) return &p;
  }
  return nullptr;
}

const MethodPolicy& PolicyOf(std::string_view name) {
  for (const auto& p : MethodPolicies()) {
    if (p.name == name) return p;
  }
  // A handler names a method that is not in the table: a programming error
  // that every test of that handler meets at once.
  std::abort();
}

static bool Allowed(Access a, Role r) {
  switch (a) {
    case Access::kPublic:
    case Access::kBenchmark:
      return true;
    case Access::kPlatform:
      return r == Role::kPlatform || r == Role::kAdmin;
    case Access::kRegulator:
      return r == Role::kRegulator || r == Role::kAdmin;
    case Access::kRuleAuthor:
      return r == Role::kRuleAuthor || r == Role::kAdmin;
    case Access::kAdmin:
      return r == Role::kAdmin;
  }
  return false;
}

grpc::Status Admit(const TokenStore& tokens, const MethodPolicy& policy,
                   std::string_view authorization, Principal* p) {
  if (policy.access == Access::kPublic) return grpc::Status::OK;
  Status s = tokens.Authenticate(std::string(authorization), p);
  if (!s.ok()) return {StatusCode::UNAUTHENTICATED, s.message()};
  if (!Allowed(policy.access, p->role)) {
    return {StatusCode::PERMISSION_DENIED,
            std::string("role ") + RoleName(p->role) + " may not call " + std::string(policy.name)};
  }
  return grpc::Status::OK;
}

grpc::Status AdmitCall(const Server::State& s, const MethodPolicy& policy,
                       grpc::ServerContextBase* ctx, Principal* p) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::string_view header =
      it == md.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  return Admit(s.tokens, policy, header, p);
}

namespace {

// The gate: runs on gRPC's transport thread when a call's headers arrive,
// before its message is read. Refusals are counted like any other call,
// under the method's name (or "unknown", so that made-up paths do not grow
// the metrics).
class TokenGate final : public grpc::AuthMetadataProcessor {
 public:
  TokenGate(const TokenStore* tokens, Metrics* metrics) : tokens_(tokens), metrics_(metrics) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& md, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    std::string_view path, authorization;
    for (const auto& [k, v] : md) {
      std::string_view key(k.data(), k.size()), value(v.data(), v.size());
      if (key == ":path") path = value;
      if (key == "authorization") authorization = value;
    }
    const MethodPolicy* policy = FindPolicy(path);
    grpc::Status st;
    if (!policy) {
      st = {StatusCode::UNIMPLEMENTED, "no such method"};
    } else {
      Principal p;
      st = Admit(*tokens_, *policy, authorization, &p);
    }
    if (!st.ok()) {
      metrics_->ObserveRpc(policy ? std::string(policy->name) : "unknown",
                           GrpcCodeName(static_cast<int>(st.error_code())), 0);
    }
    return st;
  }

 private:
  const TokenStore* tokens_;
  Metrics* metrics_;
};

// Plaintext credentials that run the gate. gRPC's C++ InsecureServerCredentials
// cannot take a metadata processor, but its core credentials can.
class GatedInsecureCredentials final : public grpc::ServerCredentials {
 public:
  // The core credentials outlive this object (the server keeps them), so
  // they own a reference to the gate, dropped by `Destroy`.
  explicit GatedInsecureCredentials(std::shared_ptr<TokenGate> gate)
      : creds_(grpc_insecure_server_credentials_create()) {
    grpc_auth_metadata_processor p{&Process, &Destroy, new std::shared_ptr<TokenGate>(gate)};
    grpc_server_credentials_set_auth_metadata_processor(creds_, p);
  }
  ~GatedInsecureCredentials() override { grpc_server_credentials_release(creds_); }
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  static void Process(void* state, grpc_auth_context*, const grpc_metadata* md, size_t n,
                      grpc_process_auth_metadata_done_cb cb, void* user_data) {
    grpc::AuthMetadataProcessor::InputMetadata in;
    for (size_t i = 0; i < n; ++i) {
      in.emplace(grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].key)),
                                  GRPC_SLICE_LENGTH(md[i].key)),
                 grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].value)),
                                  GRPC_SLICE_LENGTH(md[i].value)));
    }
    grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
    grpc::Status st = (*static_cast<std::shared_ptr<TokenGate>*>(state))
                          ->Process(in, nullptr, &consumed, &response);
    cb(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(st.error_code()),
       st.ok() ? nullptr : st.error_message().c_str());
  }
  static void Destroy(void* state) { delete static_cast<std::shared_ptr<TokenGate>*>(state); }
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }
  grpc_server_credentials* creds_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> GatedCredentials(const ServerConfig& config,
                                                          const TokenStore* tokens,
                                                          Metrics* metrics) {
  auto gate = std::make_shared<TokenGate>(tokens, metrics);
  if (config.tls_cert.empty()) return std::make_shared<GatedInsecureCredentials>(gate);
  grpc::SslServerCredentialsOptions ssl(
      config.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_key_cert_pairs.push_back({ReadAll(config.tls_key), ReadAll(config.tls_cert)});
  if (!config.tls_client_ca.empty()) ssl.pem_root_certs = ReadAll(config.tls_client_ca);
  auto creds = grpc::SslServerCredentials(ssl);
  creds->SetAuthMetadataProcessor(gate);
  return creds;
}

grpc::Status ServedHere(const Server::State& s, const MethodPolicy& policy) {
  if (!s.replica || policy.name.substr(0, 11) == "Moderation/") return grpc::Status::OK;
  return {StatusCode::UNAVAILABLE,
          "this replica queues Moderation calls for the ledger's writer; " +
              std::string(policy.name) +
              " is answered by the writer replica (route it there, or retry)"};
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  switch (s.code()) {
    case Status::Code::kInvalidArgument:
      return {StatusCode::INVALID_ARGUMENT, s.message()};
    case Status::Code::kNotFound:
      return {StatusCode::NOT_FOUND, s.message()};
    case Status::Code::kFailedPrecondition:
      return {StatusCode::FAILED_PRECONDITION, s.message()};
    case Status::Code::kAlreadyExists:
      return {StatusCode::ALREADY_EXISTS, s.message()};
    case Status::Code::kUnavailable:
      return {StatusCode::UNAVAILABLE, s.message()};
    case Status::Code::kDataLoss:
      return {StatusCode::DATA_LOSS, s.message()};
    case Status::Code::kResourceExhausted:
      return {StatusCode::RESOURCE_EXHAUSTED, s.message()};
    default:
      return {StatusCode::INTERNAL, s.message()};
  }
}

grpc::Status RpcScope::Done(grpc::Status s) const {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  m_->ObserveRpc(std::string(method_), GrpcCodeName(static_cast<int>(s.error_code())), secs);
  return s;
}

grpc::Status CheckTenant(const MethodPolicy& policy, const Principal& p,
                         const std::string* service_id) {
  if (policy.access != Access::kPlatform) return grpc::Status::OK;
  if (!service_id) {
    return {StatusCode::INTERNAL, std::string(policy.name) + ": no service named in the request"};
  }
  if (p.role == Role::kPlatform && *service_id != p.service_id) {
    return {StatusCode::PERMISSION_DENIED,
            "principal " + p.name + " acts only for service " + p.service_id};
  }
  return grpc::Status::OK;
}

grpc::Status RecordAudit(Server::State& s, const Principal& p, const MethodPolicy& policy,
                         const google::protobuf::Message& req) {
  std::vector<v1::LedgerEvent> events(1);
  events[0].set_type(v1::AUDIT_ACCESS);
  events[0].mutable_time()->set_seconds(NowSeconds());
  events[0].mutable_recorded_at()->set_seconds(NowSeconds());
  events[0].set_format(2);
  auto* a = events[0].mutable_audit_access();
  a->set_principal(p.name);
  // "GetStats", as recorded since the first format.
  std::string_view name = policy.name.substr(policy.name.find('/') + 1);
  a->set_method(std::string(name));
  a->set_request_digest(Sha256Hex(req.SerializeAsString()));
  return ToGrpc(s.ledger->Append(&events));
}

// ---- request checks --------------------------------------------------------

namespace {

grpc::Status TooLarge(const std::string& name, size_t got, size_t limit, const char* unit) {
  std::string what = std::to_string(got) + (*unit ? " " : "") + unit;
  return {StatusCode::INVALID_ARGUMENT,
          name + ": " + what + " exceeds the limit of " + std::to_string(limit)};
}

grpc::Status CheckPageSize(int32_t n) {
  if (n < 0 || n > kMaxPageSize) {
    return {StatusCode::INVALID_ARGUMENT,
            "page_size: must be from 0 (the default) to " + std::to_string(kMaxPageSize)};
  }
  return grpc::Status::OK;
}

// Page tokens are decimal numbers or ids this service handed out: ids.
grpc::Status CheckToken(const std::string& t) { return CheckId("page_token", t, false); }

grpc::Status First(std::initializer_list<grpc::Status> all) {
  for (const auto& s : all) {
    if (!s.ok()) return s;
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status CheckId(const std::string& name, const std::string& v, bool required) {
  if (v.empty()) {
    return required ? grpc::Status(StatusCode::INVALID_ARGUMENT, name + ": required")
                    : grpc::Status::OK;
  }
  if (v.size() > kMaxIdBytes) return TooLarge(name, v.size(), kMaxIdBytes, "bytes");
  for (char c : v) {
    if (c < 0x21 || c > 0x7e) {
      return {StatusCode::INVALID_ARGUMENT,
              name + ": only printable ASCII without spaces (0x21-0x7E)"};
    }
  }
  return grpc::Status::OK;
}

grpc::Status CheckCategory(const std::string& name, const std::string& v) {
  if (v.size() > kMaxCategoryBytes) return TooLarge(name, v.size(), kMaxCategoryBytes, "bytes");
  for (char c : v) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
      return {StatusCode::INVALID_ARGUMENT, name + ": only [a-z0-9_.-]"};
    }
  }
  return grpc::Status::OK;
}

grpc::Status CheckReport(const ServerConfig& c, const v1::ContentReport& r,
                         const std::string& prefix) {
  grpc::Status ids = CheckId(prefix + "report_id", r.report_id(), true);
  if (ids.ok()) ids = CheckId(prefix + "service_id", r.service_id(), true);
  const std::pair<const char*, const std::string*> categories[] = {
      {"surface", &r.surface()},
      {"content_type", &r.content_type()},
      {"reporter_type", &r.reporter_type()},
      {"reason", &r.reason()},
      {"subject_age_band", &r.subject_age_band()}};
  for (const auto& [name, v] : categories) {
    if (ids.ok()) ids = CheckCategory(prefix + name, *v);
  }
  if (ids.ok() && r.attributes_size() > kMaxAttributes)
    ids = TooLarge(prefix + "attributes", r.attributes_size(), kMaxAttributes, "entries");
  for (const auto& [k, v] : r.attributes()) {
    if (ids.ok()) ids = CheckCategory(prefix + "attributes key", k);
  }
  if (!ids.ok()) return ids;
  auto field = [&](const std::string& name, const std::string& v) -> grpc::Status {
    if (static_cast<int64_t>(v.size()) > c.max_field_bytes) {
      return {StatusCode::INVALID_ARGUMENT, prefix + name + ": " + std::to_string(v.size()) +
                                                " bytes exceeds max_field_bytes " +
                                                std::to_string(c.max_field_bytes)};
    }
    if (!IsValidUtf8(v)) return {StatusCode::INVALID_ARGUMENT, prefix + name + ": not valid UTF-8"};
    return grpc::Status::OK;
  };
  for (rules::Field f : rules::kSingleTextFields) {
    grpc::Status s = field(rules::FieldName(f), *eval::SingleValue(r, f));
    if (!s.ok()) return s;
  }
  if (r.urls_size() > c.max_urls) {
    return {StatusCode::INVALID_ARGUMENT, prefix + "urls: " + std::to_string(r.urls_size()) +
                                              " URLs exceeds max_urls " +
                                              std::to_string(c.max_urls)};
  }
  for (int i = 0; i < r.urls_size(); ++i) {
    grpc::Status s = field("urls[" + std::to_string(i) + "]", r.urls(i));
    if (!s.ok()) return s;
  }
  if (r.hashes_size() > c.max_hashes) {
    return {StatusCode::INVALID_ARGUMENT,
            prefix + "hashes: too many hashes (max_hashes " + std::to_string(c.max_hashes) + ")"};
  }
  for (int i = 0; i < r.hashes_size(); ++i) {
    const std::string& v = r.hashes(i).value();
    if (v.empty() || v.size() > 256 ||
        v.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
      return {StatusCode::INVALID_ARGUMENT,
              prefix + "hashes[" + std::to_string(i) + "].value: must be a hex digest"};
    }
  }
  int64_t attrs = 0;
  for (const auto& [k, v] : r.attributes()) attrs += k.size() + v.size();
  if (attrs > c.max_field_bytes)
    return {StatusCode::INVALID_ARGUMENT, prefix + "attributes: larger than max_field_bytes"};
  // Review obligations of linkage alerts live under this prefix: carewatch
  // alone makes such reports.
  if (r.report_id().rfind(ledger::kLinkageReportPrefix, 0) == 0)
    return {StatusCode::INVALID_ARGUMENT,
            prefix + "report_id: ids starting 'linkage:' are carewatch's own (docs/signals.md)"};
  if (r.linked_identifiers_size() > kMaxLinkedIdentifiers)
    return TooLarge(prefix + "linked_identifiers", r.linked_identifiers_size(),
                    kMaxLinkedIdentifiers, "entries");
  for (int i = 0; i < r.linked_identifiers_size(); ++i) {
    std::string canonical;
    Status cs = signals::Canonicalize(r.linked_identifiers(i).kind(),
                                      r.linked_identifiers(i).value(), &canonical);
    if (!cs.ok())
      return {StatusCode::INVALID_ARGUMENT,
              prefix + "linked_identifiers[" + std::to_string(i) + "]: " + cs.message()};
  }
  return grpc::Status::OK;
}

std::vector<std::string> VocabularyWarnings(const v1::ContentReport& r, const std::string& prefix,
                                            std::vector<std::string>* fields) {
  const std::tuple<const char*, rules::Field, const std::string*> checked[] = {
      {"surface", rules::Field::kSurface, &r.surface()},
      {"content_type", rules::Field::kContentType, &r.content_type()},
      {"reporter_type", rules::Field::kReporterType, &r.reporter_type()},
      {"subject_age_band", rules::Field::kSubjectAgeBand, &r.subject_age_band()}};
  std::vector<std::string> out;
  for (const auto& [name, field, value] : checked) {
    if (value->empty()) continue;
    const auto& known = rules::KnownValues(field);
    if (std::find(known.begin(), known.end(), *value) != known.end()) continue;
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    out.push_back(prefix + name + ": '" + *value + "' is not in the vocabulary (" + list +
                  "); rules written for it will not match");
    if (fields) fields->push_back(name);
  }
  return out;
}

grpc::Status CheckRequest(const ServerConfig& c, const v1::EvaluateRequest& r) {
  grpc::Status s = CheckReport(c, r.report());
  if (s.ok() && c.strict_vocabulary) {
    std::vector<std::string> w = VocabularyWarnings(r.report(), "report.");
    if (!w.empty()) s = {StatusCode::INVALID_ARGUMENT, w[0] + " (strict_vocabulary)"};
  }
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::RecordActionRequest& r) {
  grpc::Status s = CheckId("service_id", r.service_id(), true);
  if (s.ok()) s = CheckId("report_id", r.report_id(), true);
  if (s.ok()) s = CheckId("actor", r.actor(), false);
  if (s.ok() && r.action().empty()) s = {StatusCode::INVALID_ARGUMENT, "action: required"};
  if (s.ok()) s = CheckCategory("action", r.action());
  if (s.ok() && r.action() == rules::kLinkWithdrawn)
    s = {StatusCode::INVALID_ARGUMENT,
         "action: link_withdrawn is recorded by carewatch when signals are withdrawn; use "
         "Signals.WithdrawSignals"};
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetLinkageStatsRequest& r) {
  grpc::Status s = CheckId("service_id", r.service_id(), false);
  if (s.ok() && !r.period().empty() && r.period() != "day" && r.period() != "month")
    s = {StatusCode::INVALID_ARGUMENT, "period: must be day, month or empty"};
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::BlindEvaluateRequest& r) {
  grpc::Status s = CheckId("service_id", r.service_id(), true);
  if (s.ok() && r.blinded_elements_size() == 0)
    s = {StatusCode::INVALID_ARGUMENT, "blinded_elements: at least one is required"};
  if (s.ok() && r.blinded_elements_size() > kMaxBlindedElements)
    s = TooLarge("blinded_elements", r.blinded_elements_size(), kMaxBlindedElements, "elements");
  for (int i = 0; s.ok() && i < r.blinded_elements_size(); ++i) {
    if (r.blinded_elements(i).size() != 32)
      s = {StatusCode::INVALID_ARGUMENT, "blinded_elements[" + std::to_string(i) +
                                             "]: must be 32 bytes (a ristretto255 element)"};
  }
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::SubmitSignalsRequest& r) {
  grpc::Status s = CheckId("service_id", r.service_id(), true);
  if (s.ok()) s = CheckId("report_id", r.report_id(), true);
  if (s.ok() && r.signals_size() == 0)
    s = {StatusCode::INVALID_ARGUMENT, "signals: at least one is required"};
  if (s.ok() && r.signals_size() > kMaxSignals)
    s = TooLarge("signals", r.signals_size(), kMaxSignals, "signals");
  for (int i = 0; s.ok() && i < r.signals_size(); ++i) {
    const std::string at = "signals[" + std::to_string(i) + "]";
    if (!signals::IsIdentifierKind(r.signals(i).kind()))
      s = {StatusCode::INVALID_ARGUMENT, at + ".kind: must be email, phone, handle or profile_url"};
    else if (r.signals(i).token().size() != 64)
      s = {StatusCode::INVALID_ARGUMENT, at + ".token: must be the 64-byte OPRF output"};
    else if (r.signals(i).category().empty())
      s = {StatusCode::INVALID_ARGUMENT, at + ".category: required (a duty id)"};
    else
      s = CheckCategory(at + ".category", r.signals(i).category());
  }
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::SubscribeAlertsRequest& r) {
  return CheckId("service_id", r.service_id(), true);
}

grpc::Status CheckRequest(const ServerConfig&, const v1::ListAlertsRequest& r) {
  grpc::Status s =
      First({CheckId("service_id", r.service_id(), true), CheckPageSize(r.page_size())});
  if (s.ok() && !r.status().empty() && r.status() != "open" && r.status() != "withdrawn")
    s = {StatusCode::INVALID_ARGUMENT, "status: must be open, withdrawn or empty"};
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::LinkFeedbackRequest& r) {
  grpc::Status s =
      First({CheckId("service_id", r.service_id(), true), CheckId("alert_id", r.alert_id(), true),
             CheckId("actor", r.actor(), false)});
  if (s.ok() && r.opinion() != "confirmed" && r.opinion() != "not_related" &&
      r.opinion() != "disputed")
    s = {StatusCode::INVALID_ARGUMENT, "opinion: must be confirmed, not_related or disputed"};
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::WithdrawSignalsRequest& r) {
  return First({CheckId("service_id", r.service_id(), true),
                CheckId("report_id", r.report_id(), true), CheckId("actor", r.actor(), false)});
}

grpc::Status CheckRequest(const ServerConfig&, const v1::ListBreachesRequest& r) {
  return First({CheckId("service_id", r.service_id(), false),
                CheckId("duty_id", r.duty_id(), false), CheckId("rule_id", r.rule_id(), false),
                CheckPageSize(r.page_size()), CheckToken(r.page_token())});
}

grpc::Status CheckRequest(const ServerConfig&, const v1::ListFindingsRequest& r) {
  grpc::Status s =
      First({CheckId("service_id", r.service_id(), false), CheckId("duty_id", r.duty_id(), false),
             CheckPageSize(r.page_size()), CheckToken(r.page_token())});
  if (s.ok() && !r.status().empty() && r.status() != "open" && r.status() != "closed")
    s = {StatusCode::INVALID_ARGUMENT, "status: must be open, closed or empty"};
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetEvidenceRequest& r) {
  return First({CheckId("finding_id", r.finding_id(), true), CheckPageSize(r.page_size()),
                CheckToken(r.page_token())});
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetCheckpointRequest&) {
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetConsistencyProofRequest&) {
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetStatsRequest& r) {
  grpc::Status s = First({CheckId("service_id", r.service_id(), false),
                          CheckPageSize(r.page_size()), CheckToken(r.page_token())});
  if (s.ok() && !r.period().empty() && r.period() != "month" && r.period() != "quarter" &&
      r.period() != "year")
    s = {StatusCode::INVALID_ARGUMENT, "period: must be month, quarter, year or empty (month)"};
  return s;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetEntriesRequest&) {
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetInclusionProofRequest&) {
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::RulePackSet& r) {
  if (r.files_size() > kMaxPostedFiles)
    return TooLarge("files", r.files_size(), kMaxPostedFiles, "");
  int64_t bytes = 0;
  for (int i = 0; i < r.files_size(); ++i) {
    const std::string name = "files[" + std::to_string(i) + "]";
    if (r.files(i).path().empty() || r.files(i).path().size() > 1024)
      return {StatusCode::INVALID_ARGUMENT, name + ".path: required, at most 1024 bytes"};
    if (!IsValidUtf8(r.files(i).path()))
      return {StatusCode::INVALID_ARGUMENT, name + ".path: not valid UTF-8"};
    bytes += r.files(i).content().size();
  }
  if (bytes > kMaxPostedBytes) return TooLarge("files", bytes, kMaxPostedBytes, "bytes in all");
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig& c, const v1::DryRunRequest& r) {
  if (r.reports_size() > kMaxDryRunReports)
    return TooLarge("reports", r.reports_size(), kMaxDryRunReports, "");
  grpc::Status s = CheckRequest(c, r.packs());
  if (!s.ok()) return {s.error_code(), "packs." + s.error_message()};
  for (int i = 0; i < r.reports_size(); ++i) {
    s = CheckReport(c, r.reports(i), "reports[" + std::to_string(i) + "].");
    if (!s.ok()) return s;
  }
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::GetActiveRulesetRequest&) {
  return grpc::Status::OK;
}

grpc::Status CheckRequest(const ServerConfig&, const v1::ReloadRequest&) {
  return grpc::Status::OK;
}

}  // namespace carewatch::server
