#include "engine/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/common/digest.h"
#include "engine/common/utf8.h"
#include "engine/duty/rule_tests.h"
#include "engine/eval/report_json.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/keys.h"
#include "engine/rules/loader.h"

namespace carewatch::server {

namespace fs = std::filesystem;
using grpc::ServerContext;
using grpc::StatusCode;

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A fixed set of threads shared by every EvaluateStream: a stream queues
// its reports here instead of starting threads of its own. Tasks are short
// (check, evaluate, queue for the ledger; nobody waits for durability here).
class WorkerPool {
 public:
  // Throws std::system_error when a thread cannot be started.
  explicit WorkerPool(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  size_t threads() const { return threads_.size(); }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping, and every task done
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

struct Server::State {
  ServerConfig config;
  // EvaluateStream's shared workers, and how many streams are open.
  std::unique_ptr<WorkerPool> stream_pool;
  std::atomic<int> open_streams{0};
  TokenStore tokens;
  std::unique_ptr<ledger::Ledger> ledger;
  std::unique_ptr<duty::DutyEngine> engine;
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

  grpc::Status ToGrpc(const Status& s) const {
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
      default:
        return {StatusCode::INTERNAL, s.message()};
    }
  }

  // Authenticates the caller and checks the role; nothing is recorded for a
  // refused call.
  grpc::Status Authorize(ServerContext* ctx, std::initializer_list<Role> roles,
                         Principal* p) const {
    auto md = ctx->client_metadata();
    auto it = md.find("authorization");
    std::string header = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
    Status s = tokens.Authenticate(header, p);
    if (!s.ok()) return {StatusCode::UNAUTHENTICATED, s.message()};
    for (Role r : roles) {
      if (p->role == r) return grpc::Status::OK;
    }
    return {StatusCode::PERMISSION_DENIED,
            std::string("role ") + RoleName(p->role) + " may not call this method"};
  }

  grpc::Status CheckTenant(const Principal& p, const std::string& service_id) const {
    if (p.role == Role::kPlatform && service_id != p.service_id) {
      return {StatusCode::PERMISSION_DENIED,
              "principal " + p.name + " acts only for service " + p.service_id};
    }
    return grpc::Status::OK;
  }

  // Ids a platform sends (report_id, service_id, actor): required, at most
  // kMaxIdBytes of printable ASCII without spaces. Categorical values
  // (surface, reason, ..., action, attribute keys): at most
  // kMaxCategoryBytes of [a-z0-9_.-]. docs/api.md lists them.
  static constexpr size_t kMaxIdBytes = 256;
  static constexpr size_t kMaxCategoryBytes = 64;
  static constexpr int kMaxAttributes = 32;

  static grpc::Status CheckId(const std::string& name, const std::string& v, bool required) {
    if (v.empty()) {
      return required ? grpc::Status(StatusCode::INVALID_ARGUMENT, name + ": required")
                      : grpc::Status::OK;
    }
    if (v.size() > kMaxIdBytes) {
      return {StatusCode::INVALID_ARGUMENT, name + ": " + std::to_string(v.size()) +
                                                " bytes exceeds the limit of " +
                                                std::to_string(kMaxIdBytes)};
    }
    for (char c : v) {
      if (c < 0x21 || c > 0x7e) {
        return {StatusCode::INVALID_ARGUMENT,
                name + ": only printable ASCII without spaces (0x21-0x7E)"};
      }
    }
    return grpc::Status::OK;
  }

  static grpc::Status CheckCategory(const std::string& name, const std::string& v) {
    if (v.size() > kMaxCategoryBytes) {
      return {StatusCode::INVALID_ARGUMENT, name + ": " + std::to_string(v.size()) +
                                                " bytes exceeds the limit of " +
                                                std::to_string(kMaxCategoryBytes)};
    }
    for (char c : v) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
        return {StatusCode::INVALID_ARGUMENT, name + ": only [a-z0-9_.-]"};
      }
    }
    return grpc::Status::OK;
  }

  // The ids of an action, before anything else is looked at.
  static grpc::Status CheckAction(const v1::RecordActionRequest& r) {
    grpc::Status s = CheckId("service_id", r.service_id(), true);
    if (s.ok()) s = CheckId("report_id", r.report_id(), true);
    if (s.ok()) s = CheckId("actor", r.actor(), false);
    if (s.ok() && r.action().empty()) s = {StatusCode::INVALID_ARGUMENT, "action: required"};
    if (s.ok()) s = CheckCategory("action", r.action());
    return s;
  }

  // Size and shape limits on a report, naming the field.
  grpc::Status CheckReport(const v1::ContentReport& r) const {
    grpc::Status ids = CheckId("report.report_id", r.report_id(), true);
    if (ids.ok()) ids = CheckId("report.service_id", r.service_id(), true);
    const std::pair<const char*, const std::string*> categories[] = {
        {"report.surface", &r.surface()},
        {"report.content_type", &r.content_type()},
        {"report.reporter_type", &r.reporter_type()},
        {"report.reason", &r.reason()},
        {"report.subject_age_band", &r.subject_age_band()}};
    for (const auto& [name, v] : categories) {
      if (ids.ok()) ids = CheckCategory(name, *v);
    }
    if (ids.ok() && r.attributes_size() > kMaxAttributes) {
      ids = {StatusCode::INVALID_ARGUMENT,
             "report.attributes: " + std::to_string(r.attributes_size()) +
                 " entries exceeds the limit of " + std::to_string(kMaxAttributes)};
    }
    for (const auto& [k, v] : r.attributes()) {
      if (ids.ok()) ids = CheckCategory("report.attributes key", k);
    }
    if (!ids.ok()) return ids;
    auto field = [&](const char* name, const std::string& v) -> grpc::Status {
      if (static_cast<int64_t>(v.size()) > config.max_field_bytes) {
        return {StatusCode::INVALID_ARGUMENT,
                std::string("report.") + name + ": " + std::to_string(v.size()) +
                    " bytes exceeds max_field_bytes " + std::to_string(config.max_field_bytes)};
      }
      if (!IsValidUtf8(v))
        return {StatusCode::INVALID_ARGUMENT, std::string("report.") + name + ": not valid UTF-8"};
      return grpc::Status::OK;
    };
    const std::pair<const char*, const std::string*> fields[] = {
        {"report_id", &r.report_id()},
        {"service_id", &r.service_id()},
        {"surface", &r.surface()},
        {"content_type", &r.content_type()},
        {"reporter_type", &r.reporter_type()},
        {"reason", &r.reason()},
        {"subject_age_band", &r.subject_age_band()},
        {"text", &r.text()},
        {"caption", &r.caption()},
        {"username", &r.username()},
        {"display_name", &r.display_name()},
        {"profile_bio", &r.profile_bio()}};
    for (const auto& [name, v] : fields) {
      grpc::Status s = field(name, *v);
      if (!s.ok()) return s;
    }
    if (r.urls_size() > config.max_urls) {
      return {StatusCode::INVALID_ARGUMENT, "report.urls: " + std::to_string(r.urls_size()) +
                                                " URLs exceeds max_urls " +
                                                std::to_string(config.max_urls)};
    }
    for (int i = 0; i < r.urls_size(); ++i) {
      grpc::Status s = field(("urls[" + std::to_string(i) + "]").c_str(), r.urls(i));
      if (!s.ok()) return s;
    }
    if (r.hashes_size() > config.max_hashes) {
      return {StatusCode::INVALID_ARGUMENT, "report.hashes: too many hashes (max_hashes " +
                                                std::to_string(config.max_hashes) + ")"};
    }
    for (int i = 0; i < r.hashes_size(); ++i) {
      const std::string& v = r.hashes(i).value();
      if (v.empty() || v.size() > 256 ||
          v.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
        return {StatusCode::INVALID_ARGUMENT,
                "report.hashes[" + std::to_string(i) + "].value: must be a hex digest"};
      }
    }
    int64_t attrs = 0;
    for (const auto& [k, v] : r.attributes()) attrs += k.size() + v.size();
    if (attrs > config.max_field_bytes) {
      return {StatusCode::INVALID_ARGUMENT, "report.attributes: larger than max_field_bytes"};
    }
    return grpc::Status::OK;
  }

  // Records the regulator's query before answering it.
  grpc::Status RecordAudit(const Principal& p, const char* method,
                           const google::protobuf::Message& req) {
    std::vector<v1::LedgerEvent> events(1);
    events[0].set_type(v1::AUDIT_ACCESS);
    events[0].mutable_time()->set_seconds(NowSeconds());
    events[0].mutable_recorded_at()->set_seconds(NowSeconds());
    events[0].set_format(2);
    auto* a = events[0].mutable_audit_access();
    a->set_principal(p.name);
    a->set_method(method);
    a->set_request_digest(Sha256Hex(req.SerializeAsString()));
    return ToGrpc(ledger->Append(&events));
  }
};

namespace {

// Times an RPC and counts it by status code.
class RpcScope {
 public:
  RpcScope(Metrics& m, const char* method)
      : m_(m), method_(method), start_(std::chrono::steady_clock::now()) {}
  grpc::Status Done(grpc::Status s) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    int code = static_cast<int>(s.error_code());
    m_.ObserveRpc(method_, code >= 0 && code <= 16 ? GrpcCodeName(code) : "UNKNOWN", secs);
    return s;
  }

 private:
  Metrics& m_;
  const char* method_;
  std::chrono::steady_clock::time_point start_;
};

void ToDiagnostics(const std::vector<rules::Diagnostic>& in,
                   google::protobuf::RepeatedPtrField<v1::Diagnostic>* out) {
  for (const auto& d : in) {
    v1::Diagnostic* x = out->Add();
    x->set_file(d.pos.file);
    x->set_line(d.pos.line);
    x->set_column(d.pos.col);
    x->set_severity(d.level == rules::Diagnostic::Level::kError ? "error" : "warning");
    x->set_message(d.message);
    x->set_rule_id(d.rule_id);
  }
}

// Loads posted pack files; list files resolve among the posted files.
// A compile slot for posted rule sets; `ok` false when all are taken.
constexpr int kMaxConcurrentCompiles = 1;
constexpr int kMaxPostedFiles = 64;
constexpr int kMaxDryRunReports = 1000;
class CompileSlot {
 public:
  explicit CompileSlot(std::atomic<int>& n) : n_(n), ok_(n.fetch_add(1) < kMaxConcurrentCompiles) {}
  ~CompileSlot() { n_.fetch_sub(1); }
  CompileSlot(const CompileSlot&) = delete;
  CompileSlot& operator=(const CompileSlot&) = delete;
  // OK, or why the posted rules are not taken now.
  grpc::Status Check(const v1::RulePackSet& set) const {
    if (set.files_size() > kMaxPostedFiles) {
      return {StatusCode::INVALID_ARGUMENT, "files: " + std::to_string(set.files_size()) +
                                                " exceeds the limit of " +
                                                std::to_string(kMaxPostedFiles)};
    }
    if (!ok_) {
      return {StatusCode::RESOURCE_EXHAUSTED, "another rule set is being compiled (at most " +
                                                  std::to_string(kMaxConcurrentCompiles) +
                                                  " at a time); try again shortly"};
    }
    return grpc::Status::OK;
  }

 private:
  std::atomic<int>& n_;
  bool ok_;
};

rules::LoadResult LoadPosted(const v1::RulePackSet& set) {
  std::map<std::string, std::string> files;
  std::vector<rules::SourceFile> packs;
  for (const auto& f : set.files()) {
    std::string path = fs::path(f.path()).lexically_normal().string();
    files[path] = f.content();
    bool yaml = path.size() > 5 &&
                (path.substr(path.size() - 5) == ".yaml" || path.substr(path.size() - 4) == ".yml");
    if (yaml) packs.push_back({path, f.content()});
  }
  return rules::LoadRuleSetFromSources(
      packs, [&](const std::string& p, std::string* error) -> std::optional<std::string> {
        auto it = files.find(fs::path(p).lexically_normal().string());
        if (it == files.end()) {
          *error = "not among the posted files";
          return std::nullopt;
        }
        return it->second;
      });
}

class ModerationService final : public v1::Moderation::Service {
 public:
  explicit ModerationService(Server::State* s) : s_(s) {}

  grpc::Status Evaluate(ServerContext* ctx, const v1::EvaluateRequest* req,
                        v1::EvaluateResponse* resp) override {
    RpcScope scope(s_->metrics, "Moderation/Evaluate");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kPlatform, Role::kAdmin}, &p);
    if (st.ok()) st = s_->CheckReport(req->report());
    if (st.ok()) st = s_->CheckTenant(p, req->report().service_id());
    if (st.ok()) st = Submit(req->report(), resp->mutable_verdict());
    return scope.Done(st);
  }

  grpc::Status EvaluateStream(
      ServerContext* ctx,
      grpc::ServerReaderWriter<v1::EvaluateResponse, v1::EvaluateRequest>* stream) override {
    RpcScope scope(s_->metrics, "Moderation/EvaluateStream");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kPlatform, Role::kAdmin}, &p);
    if (!st.ok()) return scope.Done(st);
    // A bounded number of streams at a time; each holds gRPC's handler
    // thread and, once it has a report, one responder thread.
    struct StreamCount {
      std::atomic<int>& n;
      ~StreamCount() { n.fetch_sub(1); }
    } count{s_->open_streams};
    if (s_->open_streams.fetch_add(1) >= s_->config.max_streams) {
      return scope.Done({StatusCode::RESOURCE_EXHAUSTED,
                         "too many open streams (max_streams " +
                             std::to_string(s_->config.max_streams) + "); try again later"});
    }
    // Each condition has one waiter, so a hand-off wakes one thread.
    struct Answer {
      v1::EvaluateResponse resp;
      std::unique_ptr<duty::DutyEngine::Pending> pending;
      bool failed = false;
    };
    struct StreamState {
      std::mutex mu;
      std::condition_variable answer_cv, space_cv;
      std::deque<Answer> answers;
      int in_flight = 0;  // read and not yet answered
      int tasks = 0;      // queued to the pool and not yet done
      bool reading_done = false;
    };
    constexpr int kMaxInFlight = 64;
    auto state = std::make_shared<StreamState>();
    // The shared workers evaluate and queue reports for the ledger without
    // waiting for durability; this stream's responder answers each once its
    // events are durable, so every report in flight on the stream (up to
    // kMaxInFlight) can share one group commit.
    auto respond = [this, state, stream] {
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
        if (!a.failed) {
          Status durable = a.pending->Wait();
          if (durable.ok()) {
            Counted(a.resp.verdict());
          } else {
            std::string id = a.resp.verdict().report_id();
            a.resp.Clear();
            a.resp.mutable_verdict()->set_report_id(id);
            a.resp.set_error(s_->ToGrpc(durable).error_message());
          }
        }
        stream->Write(a.resp);
        std::lock_guard<std::mutex> lock(state->mu);
        --state->in_flight;
        state->space_cv.notify_one();
      }
    };
    std::thread responder;
    grpc::Status result = grpc::Status::OK;
    v1::EvaluateRequest req;
    while (stream->Read(&req)) {
      grpc::Status t = s_->CheckTenant(p, req.report().service_id());
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
      }
      {
        std::unique_lock<std::mutex> lock(state->mu);
        state->space_cv.wait(lock, [&] { return state->in_flight < kMaxInFlight; });
        ++state->in_flight;
        ++state->tasks;
      }
      s_->stream_pool->Submit([this, state, r = std::move(req)] {
        Answer a;
        a.pending = std::make_unique<duty::DutyEngine::Pending>();
        grpc::Status rs = s_->CheckReport(r.report());
        if (rs.ok()) rs = Submit(r.report(), a.resp.mutable_verdict(), a.pending.get());
        if (!rs.ok()) {
          a.failed = true;
          a.resp.Clear();
          a.resp.mutable_verdict()->set_report_id(r.report().report_id());
          a.resp.set_error(rs.error_message());
        }
        std::lock_guard<std::mutex> lock(state->mu);
        state->answers.push_back(std::move(a));
        --state->tasks;
        state->answer_cv.notify_one();
      });
      req.Clear();
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
    return scope.Done(result);
  }

  grpc::Status RecordAction(ServerContext* ctx, const v1::RecordActionRequest* req,
                            v1::RecordActionResponse* resp) override {
    RpcScope scope(s_->metrics, "Moderation/RecordAction");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kPlatform, Role::kAdmin}, &p);
    if (st.ok()) st = Server::State::CheckAction(*req);
    if (st.ok()) st = s_->CheckTenant(p, req->service_id());
    if (st.ok()) {
      std::vector<v1::Obligation> obligations;
      duty::ActionInput in{req->service_id(),         req->report_id(), req->action(),
                           req->taken_at().seconds(), req->actor(),     req->taken_at().nanos()};
      if (!req->has_taken_at()) in.taken_at = 0;
      uint64_t seq = 0;
      st = s_->ToGrpc(s_->engine->RecordAction(in, &obligations, &seq));
      for (auto& o : obligations) *resp->add_obligations() = std::move(o);
      resp->set_ledger_seq(seq);
    }
    return scope.Done(st);
  }

 private:
  // With `pending`, the verdict is answered only once pending->Wait() is OK
  // (then Counted); without, on return.
  grpc::Status Submit(const v1::ContentReport& report, v1::Verdict* verdict,
                      duty::DutyEngine::Pending* pending = nullptr) {
    Status s = s_->engine->SubmitReport(report, verdict, pending);
    if (!s.ok()) return s_->ToGrpc(s);
    if (!pending) Counted(*verdict);
    return grpc::Status::OK;
  }
  void Counted(const v1::Verdict& verdict) {
    s_->metrics.CountReports(1);
    for (const auto& f : verdict.flags()) s_->metrics.CountFlag(f.rule_id());
  }
  Server::State* s_;
};

class AuditService final : public v1::Audit::Service {
 public:
  explicit AuditService(Server::State* s) : s_(s) {}

  grpc::Status ListBreaches(ServerContext* ctx, const v1::ListBreachesRequest* req,
                            v1::ListBreachesResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/ListBreaches");
    Principal p;
    grpc::Status st = Begin(ctx, "ListBreaches", *req, &p);
    if (!st.ok()) return scope.Done(st);
    ledger::BreachQuery q;
    q.service_id = req->service_id();
    q.duty_id = req->duty_id();
    q.rule_id = req->rule_id();
    if (req->range().has_from()) q.from = req->range().from().seconds();
    if (req->range().has_to()) q.to = req->range().to().seconds();
    q.limit = PageSize(req->page_size());
    if (!req->page_token().empty()) {
      char* end = nullptr;
      q.after_seq = std::strtoull(req->page_token().c_str(), &end, 10);
      if (*end != '\0')
        return scope.Done(
            {StatusCode::INVALID_ARGUMENT, "page_token: not a token from this service"});
    }
    std::vector<std::pair<uint64_t, v1::Breach>> rows;
    st = s_->ToGrpc(s_->ledger->backend().QueryBreaches(q, &rows));
    for (auto& [seq, b] : rows) *resp->add_breaches() = std::move(b);
    if (rows.size() == q.limit) resp->set_next_page_token(std::to_string(rows.back().first));
    return scope.Done(st);
  }

  grpc::Status ListFindings(ServerContext* ctx, const v1::ListFindingsRequest* req,
                            v1::ListFindingsResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/ListFindings");
    Principal p;
    grpc::Status st = Begin(ctx, "ListFindings", *req, &p);
    if (!st.ok()) return scope.Done(st);
    if (!req->status().empty() && req->status() != "open" && req->status() != "closed") {
      return scope.Done({StatusCode::INVALID_ARGUMENT, "status: must be open, closed or empty"});
    }
    ledger::FindingQuery q;
    q.service_id = req->service_id();
    q.duty_id = req->duty_id();
    q.status = req->status();
    if (req->range().has_from()) q.from = req->range().from().seconds();
    if (req->range().has_to()) q.to = req->range().to().seconds();
    q.limit = PageSize(req->page_size());
    q.after_id = req->page_token();
    std::vector<v1::Finding> rows;
    st = s_->ToGrpc(s_->ledger->backend().QueryFindings(q, &rows));
    for (auto& f : rows) *resp->add_findings() = f;
    if (rows.size() == q.limit) resp->set_next_page_token(rows.back().finding_id());
    return scope.Done(st);
  }

  grpc::Status GetEvidence(ServerContext* ctx, const v1::GetEvidenceRequest* req,
                           v1::GetEvidenceResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/GetEvidence");
    Principal p;
    grpc::Status st = Begin(ctx, "GetEvidence", *req, &p);
    if (!st.ok()) return scope.Done(st);
    if (req->finding_id().empty())
      return scope.Done({StatusCode::INVALID_ARGUMENT, "finding_id: required"});
    if (req->page_size() < 0 || req->page_size() > 1000)
      return scope.Done({StatusCode::INVALID_ARGUMENT, "page_size: at most 1000"});
    size_t offset = 0;
    if (!req->page_token().empty()) {
      char* end = nullptr;
      offset = std::strtoull(req->page_token().c_str(), &end, 10);
      if (*end != '\0' || req->tree_size() == 0 || offset > (1u << 30)) {
        return scope.Done({StatusCode::INVALID_ARGUMENT,
                           "page_token: not a token from this service (pass tree_size too)"});
      }
    }
    // The first page signs a checkpoint covering everything so far; the
    // others are proved against the same one.
    v1::Checkpoint checkpoint;
    Status s = CheckpointFor(req->tree_size(), &checkpoint);
    if (!s.ok()) return scope.Done(s_->ToGrpc(s));
    ledger::Evidence ev;
    s = ledger::BuildEvidence(
        s_->ledger->backend(),
        [&](uint64_t seq, uint64_t size, std::vector<ledger::Hash>* proof) {
          return s_->ledger->InclusionProof(seq, size, proof);
        },
        checkpoint, req->finding_id(), offset, PageSize(req->page_size(), 500), &ev);
    if (!s.ok()) return scope.Done(s_->ToGrpc(s));
    *resp->mutable_finding() = ev.finding;
    *resp->mutable_checkpoint() = ev.checkpoint;
    resp->set_total_events(static_cast<uint32_t>(ev.total));
    size_t bytes = 0;
    for (auto& item : ev.items) {
      // Bounded in bytes too: a page stops early and says where to go on.
      if (bytes > kMaxPageBytes) {
        resp->set_next_page_token(std::to_string(offset));
        return scope.Done(grpc::Status::OK);
      }
      v1::EvidenceEvent* e = resp->add_events();
      *e->mutable_event() = item.parsed;
      e->set_leaf_hash(item.event.leaf_hash);
      e->set_event_bytes(item.event.payload);
      for (auto& h : item.proof) e->add_inclusion_proof(h);
      bytes += 2 * item.event.payload.size() + 32 * (item.proof.size() + 1);
      ++offset;
    }
    if (ev.next_offset) resp->set_next_page_token(std::to_string(ev.next_offset));
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status GetEntries(ServerContext* ctx, const v1::GetEntriesRequest* req,
                          v1::GetEntriesResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/GetEntries");
    Principal p;
    grpc::Status st = Begin(ctx, "GetEntries", *req, &p);
    if (!st.ok()) return scope.Done(st);
    uint64_t size = s_->ledger->size();
    uint64_t end = req->end_seq() == 0 ? size : std::min<uint64_t>(req->end_seq(), size);
    if (req->start_seq() == 0 || req->start_seq() > size ||
        (req->end_seq() != 0 && req->end_seq() < req->start_seq())) {
      return scope.Done({StatusCode::INVALID_ARGUMENT,
                         "start_seq..end_seq: need 1 <= start_seq <= end_seq, within the log's " +
                             std::to_string(size) + " events"});
    }
    std::vector<ledger::StoredEvent> rows;
    uint64_t want = std::min<uint64_t>(end - req->start_seq() + 1, 1000);
    Status s = s_->ledger->backend().ReadEvents(req->start_seq(), want, &rows);
    if (!s.ok()) return scope.Done(s_->ToGrpc(s));
    size_t bytes = 0;
    uint64_t next = req->start_seq();
    for (auto& row : rows) {
      if (row.seq > end || (bytes > 0 && bytes + row.payload.size() > kMaxPageBytes)) break;
      bytes += row.payload.size();
      v1::LogEntry* e = resp->add_entries();
      e->set_seq(row.seq);
      e->set_event_bytes(std::move(row.payload));
      e->set_leaf_hash(row.leaf_hash);
      next = row.seq + 1;
    }
    resp->set_next_seq(next <= end ? next : 0);
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status GetInclusionProof(ServerContext* ctx, const v1::GetInclusionProofRequest* req,
                                 v1::GetInclusionProofResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/GetInclusionProof");
    Principal p;
    grpc::Status st = Begin(ctx, "GetInclusionProof", *req, &p);
    if (!st.ok()) return scope.Done(st);
    v1::Checkpoint checkpoint;
    Status s = CheckpointFor(req->tree_size(), &checkpoint);
    if (!s.ok()) return scope.Done(s_->ToGrpc(s));
    if (req->seq() == 0 || req->seq() > checkpoint.tree_size()) {
      return scope.Done(
          {StatusCode::INVALID_ARGUMENT, "seq: must be from 1 to the checkpoint's size " +
                                             std::to_string(checkpoint.tree_size())});
    }
    std::vector<ledger::Hash> proof;
    s = s_->ledger->InclusionProof(req->seq(), checkpoint.tree_size(), &proof);
    std::vector<ledger::StoredEvent> rows;
    if (s.ok()) s = s_->ledger->backend().ReadEvents(req->seq(), 1, &rows);
    if (s.ok() && (rows.empty() || rows[0].seq != req->seq()))
      s = Status::DataLoss("event " + std::to_string(req->seq()) + " is missing");
    if (!s.ok()) return scope.Done(s_->ToGrpc(s));
    resp->mutable_entry()->set_seq(rows[0].seq);
    resp->mutable_entry()->set_event_bytes(rows[0].payload);
    resp->mutable_entry()->set_leaf_hash(rows[0].leaf_hash);
    *resp->mutable_checkpoint() = checkpoint;
    for (auto& h : proof) resp->add_proof(h);
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status GetCheckpoint(ServerContext* ctx, const v1::GetCheckpointRequest* req,
                             v1::GetCheckpointResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/GetCheckpoint");
    Principal p;
    grpc::Status st = Begin(ctx, "GetCheckpoint", *req, &p);
    if (!st.ok()) return scope.Done(st);
    Status s = s_->ledger->Flush();
    if (s.ok()) s = s_->ledger->LatestCheckpoint(resp->mutable_checkpoint());
    resp->set_public_key_pem(s_->ledger->key().PublicPem());
    resp->set_verifier_key(s_->ledger->VerifierKey());
    return scope.Done(s_->ToGrpc(s));
  }

  grpc::Status GetConsistencyProof(ServerContext* ctx, const v1::GetConsistencyProofRequest* req,
                                   v1::GetConsistencyProofResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/GetConsistencyProof");
    Principal p;
    grpc::Status st = Begin(ctx, "GetConsistencyProof", *req, &p);
    if (!st.ok()) return scope.Done(st);
    std::vector<ledger::Hash> proof;
    Status s =
        s_->ledger->ConsistencyProof(req->first_tree_size(), req->second_tree_size(), &proof);
    for (auto& h : proof) resp->add_proof(h);
    return scope.Done(s_->ToGrpc(s));
  }

  grpc::Status GetStats(ServerContext* ctx, const v1::GetStatsRequest* req,
                        v1::GetStatsResponse* resp) override {
    RpcScope scope(s_->metrics, "Audit/GetStats");
    Principal p;
    grpc::Status st = Begin(ctx, "GetStats", *req, &p);
    if (!st.ok()) return scope.Done(st);
    std::vector<ledger::PeriodStats> stats;
    std::vector<std::string> services;
    Status s = ledger::ComputeStats(
        s_->ledger->backend(), req->service_id(), req->period().empty() ? "month" : req->period(),
        req->range().has_from() ? req->range().from().seconds() : INT64_MIN,
        req->range().has_to() ? req->range().to().seconds() : INT64_MAX, &stats, &services);
    for (const auto& x : stats) ledger::ToProto(x, resp->add_periods());
    for (const auto& x : services) resp->add_services(x);
    return scope.Done(s_->ToGrpc(s));
  }

 private:
  static constexpr size_t kMaxPageBytes = 2 << 20;  // well under the 4 MiB default limit
  // The signed checkpoint of `tree_size` events; 0: sign one covering
  // everything durable now.
  Status CheckpointFor(uint64_t tree_size, v1::Checkpoint* out) {
    if (tree_size != 0) return s_->ledger->CheckpointAt(tree_size, out);
    Status s = s_->ledger->Flush();
    return s.ok() ? s_->ledger->LatestCheckpoint(out) : s;
  }
  static size_t PageSize(int32_t n, int32_t fallback = 100) {
    return n <= 0 ? fallback : std::min(n, 1000);
  }
  grpc::Status Begin(ServerContext* ctx, const char* method, const google::protobuf::Message& req,
                     Principal* p) {
    grpc::Status st = s_->Authorize(ctx, {Role::kRegulator, Role::kAdmin}, p);
    if (!st.ok()) return st;
    return s_->RecordAudit(*p, method, req);
  }
  Server::State* s_;
};

class RulesService final : public v1::Rules::Service {
 public:
  RulesService(Server::State* s, Server* server) : s_(s), server_(server) {}

  grpc::Status Validate(ServerContext* ctx, const v1::RulePackSet* req,
                        v1::ValidateResponse* resp) override {
    RpcScope scope(s_->metrics, "Rules/Validate");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kRuleAuthor, Role::kAdmin}, &p);
    if (!st.ok()) return scope.Done(st);
    CompileSlot slot(s_->compiling);
    if (st = slot.Check(*req); !st.ok()) return scope.Done(st);
    rules::LoadResult r = LoadPosted(*req);
    ToDiagnostics(r.diagnostics, resp->mutable_diagnostics());
    if (r.ruleset) {
      std::unique_ptr<eval::Evaluator> e;
      Status s = eval::Evaluator::Create(r.ruleset, {}, &e);
      if (!s.ok()) {
        auto* d = resp->add_diagnostics();
        d->set_severity("error");
        d->set_message(s.message());
      } else {
        resp->set_ok(true);
        resp->set_version(r.ruleset->version());
      }
    }
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status RunTests(ServerContext* ctx, const v1::RulePackSet* req,
                        v1::RunTestsResponse* resp) override {
    RpcScope scope(s_->metrics, "Rules/RunTests");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kRuleAuthor, Role::kAdmin}, &p);
    if (!st.ok()) return scope.Done(st);
    CompileSlot slot(s_->compiling);
    if (st = slot.Check(*req); !st.ok()) return scope.Done(st);
    rules::LoadResult r = LoadPosted(*req);
    ToDiagnostics(r.diagnostics, resp->mutable_diagnostics());
    if (!r.ruleset) return scope.Done(grpc::Status::OK);
    std::unique_ptr<eval::Evaluator> e;
    Status s = eval::Evaluator::Create(r.ruleset, {}, &e);
    if (!s.ok()) return scope.Done({StatusCode::INVALID_ARGUMENT, s.message()});
    duty::RuleTestSummary sum = duty::RunRuleTests(*e);
    resp->set_passed(sum.passed);
    resp->set_failed(sum.failed);
    for (const auto& f : sum.failures) resp->add_failures(f.ToString());
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status DryRun(ServerContext* ctx, const v1::DryRunRequest* req,
                      v1::DryRunResponse* resp) override {
    RpcScope scope(s_->metrics, "Rules/DryRun");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kRuleAuthor, Role::kAdmin}, &p);
    if (!st.ok()) return scope.Done(st);
    if (req->reports_size() > kMaxDryRunReports) {
      return scope.Done({StatusCode::INVALID_ARGUMENT,
                         "reports: " + std::to_string(req->reports_size()) +
                             " exceeds the limit of " + std::to_string(kMaxDryRunReports)});
    }
    std::shared_ptr<const eval::Evaluator> e = s_->engine->evaluator();
    if (req->packs().files_size() > 0) {
      CompileSlot slot(s_->compiling);
      if (st = slot.Check(req->packs()); !st.ok()) return scope.Done(st);
      rules::LoadResult r = LoadPosted(req->packs());
      ToDiagnostics(r.diagnostics, resp->mutable_diagnostics());
      if (!r.ruleset) return scope.Done(grpc::Status::OK);
      std::unique_ptr<eval::Evaluator> fresh;
      Status s = eval::Evaluator::Create(r.ruleset, {}, &fresh);
      if (!s.ok()) return scope.Done({StatusCode::INVALID_ARGUMENT, s.message()});
      e = std::move(fresh);
    }
    for (int i = 0; i < req->reports_size(); ++i) {
      grpc::Status rs = s_->CheckReport(req->reports(i));
      if (!rs.ok()) {
        return scope.Done({StatusCode::INVALID_ARGUMENT,
                           "reports[" + std::to_string(i) + "]." + rs.error_message().substr(7)});
      }
      Status s = e->Evaluate(req->reports(i), resp->add_verdicts());
      if (!s.ok())
        return scope.Done(
            {StatusCode::INVALID_ARGUMENT, "reports[" + std::to_string(i) + "]: " + s.message()});
    }
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status GetActiveRuleset(ServerContext* ctx, const v1::GetActiveRulesetRequest*,
                                v1::GetActiveRulesetResponse* resp) override {
    RpcScope scope(s_->metrics, "Rules/GetActiveRuleset");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kRuleAuthor, Role::kAdmin}, &p);
    if (!st.ok()) return scope.Done(st);
    auto e = s_->engine->evaluator();
    const rules::RuleSet& rs = e->ruleset();
    resp->set_version(rs.version());
    for (const auto& pk : rs.packs()) resp->add_packs(pk.name + "@" + pk.version);
    resp->set_rules(static_cast<int>(rs.rules().size()));
    resp->set_duties(static_cast<int>(rs.duties().size()));
    resp->mutable_activated_at()->set_seconds(s_->activated_at.load());
    return scope.Done(grpc::Status::OK);
  }

  grpc::Status Reload(ServerContext* ctx, const v1::ReloadRequest*,
                      v1::ReloadResponse* resp) override {
    RpcScope scope(s_->metrics, "Rules/Reload");
    Principal p;
    grpc::Status st = s_->Authorize(ctx, {Role::kAdmin}, &p);
    if (!st.ok()) return scope.Done(st);
    std::vector<std::string> diags;
    Status s = server_->Reload(&diags);
    resp->set_ok(s.ok());
    resp->set_version(s_->engine->evaluator()->ruleset().version());
    for (const auto& d : diags) {
      auto* x = resp->add_diagnostics();
      x->set_severity("error");
      x->set_message(d);
    }
    if (!s.ok() && diags.empty()) {
      auto* x = resp->add_diagnostics();
      x->set_severity("error");
      x->set_message(s.message());
    }
    return scope.Done(grpc::Status::OK);
  }

 private:
  Server::State* s_;
  Server* server_;
};

class NoopService final : public v1::Noop::Service {
 public:
  explicit NoopService(Server::State* s) : s_(s) {}
  grpc::Status Evaluate(ServerContext* ctx, const v1::EvaluateRequest* req,
                        v1::EvaluateResponse* resp) override {
    Principal p;
    grpc::Status st = s_->Authorize(
        ctx, {Role::kPlatform, Role::kAdmin, Role::kRegulator, Role::kRuleAuthor}, &p);
    if (st.ok()) resp->mutable_verdict()->set_report_id(req->report().report_id());
    return st;
  }
  grpc::Status EvaluateStream(
      ServerContext* ctx,
      grpc::ServerReaderWriter<v1::EvaluateResponse, v1::EvaluateRequest>* stream) override {
    Principal p;
    grpc::Status st = s_->Authorize(
        ctx, {Role::kPlatform, Role::kAdmin, Role::kRegulator, Role::kRuleAuthor}, &p);
    if (!st.ok()) return st;
    v1::EvaluateRequest req;
    v1::EvaluateResponse resp;
    while (stream->Read(&req)) {
      resp.mutable_verdict()->set_report_id(req.report().report_id());
      stream->Write(resp);
    }
    return grpc::Status::OK;
  }

 private:
  Server::State* s_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Server::Server(ServerConfig config)
    : config_(std::move(config)), state_(std::make_unique<State>()) {
  state_->config = config_;
}

Server::~Server() {
  if (!done_) Shutdown(1000);
}

Status Server::Reload(std::vector<std::string>* diagnostics) {
  std::lock_guard<std::mutex> lock(state_->reload_mu);
  std::vector<std::string> paths = config_.rules;
  paths.insert(paths.end(), config_.accountability.begin(), config_.accountability.end());
  rules::LoadOptions load_options;
  load_options.lists_anywhere = config_.lists_anywhere;
  rules::LoadResult loaded = rules::LoadRuleSet(paths, load_options);
  for (const auto& d : loaded.diagnostics) {
    if (d.level == rules::Diagnostic::Level::kError && diagnostics)
      diagnostics->push_back(d.ToString());
  }
  state_->reload_time = NowSeconds();
  if (!loaded.ruleset) {
    state_->reload_ok = false;
    Log("error", "reload failed; the previous rule set keeps serving",
        {{"errors", std::to_string(diagnostics ? diagnostics->size() : 0)}});
    return Status::InvalidArgument("rule set did not load");
  }
  eval::EvaluatorOptions options;
  options.cache_dir = config_.cache_dir;
  std::unique_ptr<eval::Evaluator> e;
  Status s = eval::Evaluator::Create(loaded.ruleset, options, &e);
  if (!s.ok()) {
    state_->reload_ok = false;
    if (diagnostics) diagnostics->push_back(s.message());
    return s;
  }
  std::string version = e->ruleset().version();
  s = state_->engine->Activate(std::move(e));
  state_->reload_ok = s.ok();
  if (s.ok()) {
    state_->activated_at = NowSeconds();
    Log("info", "rule set active", {{"version", version}});
  }
  return s;
}

Status Server::Start() {
  Status s = ValidateConfig(config_);
  if (!s.ok()) return s;
  s = TokenStore::Load(config_.tokens, &state_->tokens);
  if (!s.ok()) return s;
  ledger::LedgerOptions lo;
  lo.url = config_.ledger;
  lo.signing_key_path = config_.signing_key;
  lo.origin = config_.origin;
  s = ledger::Ledger::Open(lo, &state_->ledger);
  if (!s.ok()) return Status::InvalidArgument("ledger: " + s.message());
  {
    // The verifier key is public: written beside the ledger for the
    // deployment to publish.
    std::string path = ledger::LedgerDirectory(config_.ledger) + "/deployment.vkey";
    std::ofstream(path, std::ios::trunc) << state_->ledger->VerifierKey() << "\n";
  }
  std::string hmac_path = config_.hmac_key;
  if (hmac_path.empty()) hmac_path = ledger::LedgerDirectory(config_.ledger) + "/hmac.key";
  duty::DutyEngineOptions options;
  options.now = config_.clock ? config_.clock : NowSeconds;
  options.max_clock_skew_seconds = config_.max_clock_skew_seconds;
  options.retention_seconds = config_.retention_seconds;
  s = ledger::LoadOrCreateHmacKey(hmac_path, &options.hmac_key);
  if (!s.ok()) return Status::InvalidArgument("hmac_key: " + s.message());
  state_->engine = std::make_unique<duty::DutyEngine>(state_->ledger.get(), options);
  s = state_->engine->Recover();
  if (!s.ok()) return Status::DataLoss("ledger: " + s.message());
  std::vector<std::string> diags;
  s = Reload(&diags);
  if (!s.ok()) {
    std::string all;
    for (const auto& d : diags) all += "\n  " + d;
    return Status::InvalidArgument("rules: " + s.message() + all);
  }

  try {
    state_->stream_pool = std::make_unique<WorkerPool>(config_.workers);
  } catch (const std::system_error& e) {
    return Status::Unavailable(std::string("workers: cannot start threads: ") + e.what());
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!config_.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        config_.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                      : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_key_cert_pairs.push_back({ReadAll(config_.tls_key), ReadAll(config_.tls_cert)});
    if (!config_.tls_client_ca.empty()) ssl.pem_root_certs = ReadAll(config_.tls_client_ca);
    creds = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(config_.listen, creds, &grpc_port_);
  // gRPC sets SO_REUSEPORT by default: a second carewatchd on the same port
  // would start silently and take half the connections. It fails instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  // gRPC's sync server ends a handler thread when more than MAX_POLLERS
  // are idle (default 2) and starts one when none is: with calls that wait
  // for a durable commit, that was a thread created and destroyed per call,
  // half of carewatchd's throughput (docs/performance.md). Up to 32 idle
  // threads are kept instead.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 32);
  // gRPC's sync server runs a thread per call in progress; past this many
  // it answers RESOURCE_EXHAUSTED instead of starting more (each open
  // stream holds one). Streams are also counted (max_streams).
  grpc::ResourceQuota quota("carewatchd");
  quota.SetMaxThreads(config_.max_streams + 192);
  builder.SetResourceQuota(quota);
  services_.push_back(std::make_unique<ModerationService>(state_.get()));
  services_.push_back(std::make_unique<AuditService>(state_.get()));
  services_.push_back(std::make_unique<RulesService>(state_.get(), this));
  if (config_.noop_service) services_.push_back(std::make_unique<NoopService>(state_.get()));
  for (auto& svc : services_) builder.RegisterService(svc.get());
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || grpc_port_ == 0)
    return Status::Unavailable("listen: cannot listen on " + config_.listen);
  grpc_->GetHealthCheckService()->SetServingStatus(true);

  sweeper_thread_ = std::thread([this] {
    while (!stopping_) {
      Status st = state_->engine->Sweep(config_.clock ? config_.clock() : NowSeconds());
      {
        // Never ignored: a failed sweep enforces no deadline, so it is logged
        // (once per distinct error), counted and makes /readyz fail.
        std::lock_guard<std::mutex> lock(state_->sweep_mu);
        if (!st.ok()) {
          state_->metrics.CountSweepError();
          if (state_->sweep_error != st.message()) Log("error", "sweeper: " + st.message());
          state_->sweep_error = st.message();
        } else if (!state_->sweep_error.empty()) {
          Log("info", "sweeper: recovered");
          state_->sweep_error.clear();
        }
      }
      std::unique_lock<std::mutex> lock(done_mu_);
      done_cv_.wait_for(lock, std::chrono::milliseconds(config_.sweep_interval_ms),
                        [this] { return stopping_.load(); });
    }
  });

  if (!config_.metrics.empty()) {
    http_ = std::make_unique<httplib::Server>();
    State* st = state_.get();
    http_->Get("/metrics", [st](const httplib::Request&, httplib::Response& res) {
      Metrics::Gauges g;
      auto c = st->engine->counts();
      g.ledger_size = st->ledger->size();
      g.ledger_write_retries = st->ledger->write_retries();
      g.open = c.open;
      g.met = c.met;
      g.discharged = c.discharged;
      g.breached = c.breached;
      g.findings_open = c.findings_open;
      auto e = st->engine->evaluator();
      g.ruleset_version = e ? e->ruleset().version() : "";
      g.last_reload_ok = st->reload_ok;
      g.last_reload_time = st->reload_time;
      res.set_content(st->metrics.Render(g), "text/plain; version=0.0.4");
    });
    http_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    http_->Get("/readyz", [st](const httplib::Request&, httplib::Response& res) {
      Status h = st->ledger->health();
      std::string sweep_error;
      {
        std::lock_guard<std::mutex> lock(st->sweep_mu);
        sweep_error = st->sweep_error;
      }
      std::string why = st->draining               ? "draining"
                        : !h.ok()                  ? "not ready: " + h.message()
                        : !sweep_error.empty()     ? "not ready: sweeper: " + sweep_error
                        : !st->engine->evaluator() ? "not ready: no rule set"
                                                   : "";
      res.status = why.empty() ? 200 : 503;
      res.set_content((why.empty() ? "ready" : why) + "\n", "text/plain");
    });
    size_t colon = config_.metrics.rfind(':');
    std::string host = config_.metrics.substr(0, colon);
    int port = std::stoi(config_.metrics.substr(colon + 1));
    if (!http_->bind_to_port(host.c_str(), port)) {
      grpc_->Shutdown();
      return Status::Unavailable("metrics: cannot listen on " + config_.metrics);
    }
    http_thread_ = std::thread([this] { http_->listen_after_bind(); });
  }
  Log("info", "carewatchd serving",
      {{"grpc",
        config_.listen.substr(0, config_.listen.rfind(':')) + ":" + std::to_string(grpc_port_)},
       {"metrics", config_.metrics},
       {"ledger", config_.ledger},
       {"verifier_key", state_->ledger->VerifierKey()},
       {"ruleset", state_->engine->evaluator()->ruleset().version()},
       {"tokens", std::to_string(state_->tokens.size())}});
  return Status::Ok();
}

void Server::Shutdown(int grace_ms) {
  if (stopping_.exchange(true)) {
    Wait();
    return;
  }
  state_->draining = true;
  Log("info", "draining: no new calls; finishing those in flight");
  if (grpc_) {
    grpc_->GetHealthCheckService()->SetServingStatus(false);
    grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
  }
  done_cv_.notify_all();
  if (sweeper_thread_.joinable()) sweeper_thread_.join();
  state_->stream_pool.reset();  // every stream has ended with gRPC's shutdown
  if (state_->ledger) {
    Status s = state_->ledger->Flush();
    Log(s.ok() ? "info" : "error",
        s.ok() ? "ledger flushed" : "ledger flush failed: " + s.message(),
        {{"events", std::to_string(state_->ledger->size())}});
  }
  if (http_) http_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_ = true;
  }
  done_cv_.notify_all();
}

void Server::Wait() {
  std::unique_lock<std::mutex> lock(done_mu_);
  done_cv_.wait(lock, [this] { return done_; });
}

}  // namespace carewatch::server
