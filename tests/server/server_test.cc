// carewatchd over loopback: a real process, a real SQLite ledger, real gRPC.
#include "engine/server/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/ledger/evidence.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/note.h"
#include "engine/ledger/verify.h"
#include "engine/rules/loader.h"
#include "engine/server/auth.h"
#include "engine/server/request.h"
#include "engine/signals/client.h"
#include "tests/test_ledger.h"

namespace carewatch {
namespace {

namespace fs = std::filesystem;
using grpc::StatusCode;

// A port nothing listens on now, below the kernel's ephemeral ports
// (32768-60999 by default): outgoing connections (other tests' clients)
// and listeners on port 0 take those, so a port from there can be taken
// between this check and carewatchd's bind.
int FreePort() {
  thread_local std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> port(20000, 31999);
  for (int tries = 0;; ++tries) {
    const int p = port(pick);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(p));
    const bool free = bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(s);
    if (free || tries == 100) return p;
  }
}

int64_t Now() { return std::time(nullptr); }

class Daemon {
 public:
  // `name` tells replicas sharing `dir` (tokens and keys) apart: their logs
  // and caches.
  Daemon(std::string dir, std::string ledger, std::string name = "")
      : dir_(std::move(dir)), ledger_(std::move(ledger)), name_(std::move(name)) {}
  ~Daemon() { Kill(SIGKILL); }

  void Start(const std::string& rules, std::vector<std::string> extra = {}) {
    Launch(rules, std::move(extra));
    for (int i = 0; i < 200; ++i) {
      if (Ready()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "carewatchd did not become ready; log:\n" << Log();
  }

  // Whether /readyz answers 200 now.
  bool Ready() const {
    httplib::Client http("127.0.0.1", metrics_port_);
    http.set_connection_timeout(1);
    auto res = http.Get("/readyz");
    return res && res->status == 200;
  }

  // Starts carewatchd without waiting for it to be ready.
  void Launch(const std::string& rules, std::vector<std::string> extra = {}) {
    port_ = FreePort();
    metrics_port_ = FreePort();
    std::vector<std::string> args = {CAREWATCHD_PATH,
                                     "--listen",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "--metrics",
                                     "127.0.0.1:" + std::to_string(metrics_port_),
                                     "--rules",
                                     rules,
                                     "--ledger",
                                     ledger_,
                                     "--tokens",
                                     dir_ + "/tokens.yaml",
                                     "--cache-dir",
                                     dir_ + "/cache" + name_,
                                     "--max-field-bytes",
                                     "65536",
                                     "--sweep-interval-ms",
                                     "100"};
    if (carewatch::testing::OnPostgres()) {
      // A database server's ledger has no directory: the keys are named.
      for (const auto& [flag, file] :
           {std::pair{"--signing-key", "/ledger.key"}, std::pair{"--hmac-key", "/hmac.key"},
            std::pair{"--signals-key", "/signals.key"}}) {
        args.push_back(flag);
        args.push_back(dir_ + file);
      }
    }
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      int log = open(LogPath().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(log, STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(CAREWATCHD_PATH, argv.data());
      _exit(127);
    }
  }

  // Sends `sig` and waits for the process; returns its exit status.
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return status;
  }
  void Signal(int sig) { kill(pid_, sig); }
  // Whether the process is still running (not exited, not a zombie).
  bool Running() {
    int status = 0;
    return pid_ > 0 && waitpid(pid_, &status, WNOHANG) == 0;
  }

  std::string LogPath() const {
    return dir_ + "/carewatchd" + (name_.empty() ? "" : "-" + name_) + ".log";
  }
  std::string Log() const {
    std::ifstream in(LogPath());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string Address() const { return "127.0.0.1:" + std::to_string(port_); }
  int Port() const { return port_; }
  pid_t Pid() const { return pid_; }
  std::string Metrics() const {
    httplib::Client http("127.0.0.1", metrics_port_);
    auto res = http.Get("/metrics");
    return res ? res->body : "";
  }
  uint64_t LedgerEvents() const { return Metric("carewatch_ledger_events"); }
  // A metric without labels; 0 when it is not there.
  uint64_t Metric(const std::string& name) const {
    std::string m = Metrics();
    size_t at = m.find("\n" + name + " ");
    return at == std::string::npos ? 0 : std::stoull(m.substr(at + name.size() + 2));
  }
  // Waits (10 s at most) for a metric without labels to read `value`;
  // whether it did. For what a test cannot see from its side (calls
  // admitted and waiting, streams open), instead of a guessed sleep.
  bool AwaitMetric(const std::string& name, uint64_t value) const {
    for (int i = 0; i < 500; ++i) {
      if (Metric(name) == value) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Metric(name) == value;
  }

 private:
  std::string dir_, ledger_, name_;
  pid_t pid_ = 0;
  int port_ = 0, metrics_port_ = 0;
};

class AsyncEvaluations;

class ServerTest : public ::testing::Test {
  friend class AsyncEvaluations;  // its reports are Flaggable's

 protected:
  // A carewatchd in this process on the fixture's ledger, rules and
  // tokens, serving /readyz and /metrics on `metrics_port`, sweeping every
  // 20 ms.
  server::ServerConfig InProcessConfig(int metrics_port) const {
    server::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics = "127.0.0.1:" + std::to_string(metrics_port);
    config.rules = {rules_};
    config.ledger = "sqlite://" + dir_ + "/ledger.db";
    config.tokens = dir_ + "/tokens.yaml";
    config.cache_dir = dir_ + "/cache";
    config.sweep_interval_ms = 20;
    return config;
  }

  void SetUp() override {
    dir_ = ::testing::TempDir() + "/cw-server-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream tokens(dir_ + "/tokens.yaml");
    tokens << "tokens:\n";
    auto add = [&](const std::string& name, server::Role role, const std::string& service) {
      std::string t = server::NewToken();
      tokens << server::TokenLine(t, name, role, service) << "\n";
      return t;
    };
    platform_a_ = add("tns-a", server::Role::kPlatform, "svc-a");
    platform_b_ = add("tns-b", server::Role::kPlatform, "svc-b");
    regulator_ = add("regulator", server::Role::kRegulator, "");
    author_ = add("author", server::Role::kRuleAuthor, "");
    admin_ = add("admin", server::Role::kAdmin, "");
    tokens.close();
    // A copy of the shipped rules, so reload tests can break them.
    rules_ = dir_ + "/rules";
    fs::copy(CAREWATCH_SOURCE_DIR "/rules", rules_, fs::copy_options::recursive);
    ledger_url_ = carewatch::testing::FreshLedgerUrl(dir_);
    daemon_ = std::make_unique<Daemon>(dir_, ledger_url_);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "carewatchd's log:\n" << daemon_->Log();
    daemon_.reset();
    if (!getenv("CW_KEEP")) fs::remove_all(dir_);
  }

  void StartDaemon() {
    daemon_->Start(rules_);
    channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
    moderation_ = v1::Moderation::NewStub(channel_);
    audit_ = v1::Audit::NewStub(channel_);
    rules_stub_ = v1::Rules::NewStub(channel_);
    signals_ = v1::Signals::NewStub(channel_);
  }

  // Waits (up to 10 s) for a replica started with --standby to say it
  // serves as a queueing replica.
  static bool ServesAsAQueueingReplica(Daemon& replica) {
    for (int i = 0; i < 200 && replica.Log().find("queueing replica") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return replica.Log().find("serving as a queueing replica") != std::string::npos;
  }

  // Runs carewatchd with `args` to its end, stopped after `timeout_seconds`
  // (exit status 124): a carewatchd that starts after all fails the test
  // instead of hanging it. Returns its exit status and everything it printed.
  std::pair<int, std::string> RunCarewatchd(const std::string& args, int timeout_seconds = 60) {
    std::string cmd = "timeout " + std::to_string(timeout_seconds) + " " + CAREWATCHD_PATH + " " +
                      args + " > " + dir_ + "/out.txt 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream in(dir_ + "/out.txt");
    std::stringstream ss;
    ss << in.rdbuf();
    return {WEXITSTATUS(rc), ss.str()};
  }

  // A pack of 3,000 regexes: a few seconds to compile.
  static std::string SlowPack() {
    std::string pack =
        "pack: big\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24h, actions: "
        "[remove_content]}\nrules:\n";
    for (int i = 0; i < 3000; ++i) {
      pack += "  - {id: r" + std::to_string(i) +
              ", duty: d, severity: low, when: {field: text, regex: 'w" + std::to_string(i) +
              "[a-z]{2,9}q(x|y)+z'}}\n";
    }
    return pack;
  }

  static void Auth(grpc::ClientContext* ctx, const std::string& token) {
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  }

  // Streams one flaggable report `id` of svc-a (platform A) on an
  // EvaluateStream and, once it is answered and while the stream is still
  // open, runs `while_open`; then ends the stream.
  void StreamOneReport(const std::string& id, const std::function<void()>& while_open = {}) {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    auto stream = moderation_->EvaluateStream(&ctx);
    v1::EvaluateRequest req;
    *req.mutable_report() = Flaggable(id, "svc-a");
    ASSERT_TRUE(stream->Write(req));
    v1::EvaluateResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    if (while_open) while_open();
    stream->WritesDone();
    while (stream->Read(&resp)) {
    }
    ASSERT_TRUE(stream->Finish().ok());
  }

  // A report that the shipped specialist-referral rule flags.
  static v1::ContentReport Flaggable(const std::string& id, const std::string& service,
                                     int64_t at = 0) {
    v1::ContentReport r;
    r.set_report_id(id);
    r.set_service_id(service);
    r.mutable_received_at()->set_seconds(at ? at : Now());
    r.set_reporter_type("hotline");
    r.set_reason("csam");
    r.set_content_type("image");
    r.set_text("reported by a hotline");
    return r;
  }

  grpc::Status Evaluate(const std::string& token, const v1::ContentReport& r,
                        v1::EvaluateResponse* resp = nullptr) {
    grpc::ClientContext ctx;
    Auth(&ctx, token);
    v1::EvaluateRequest req;
    *req.mutable_report() = r;
    v1::EvaluateResponse ignored;
    return moderation_->Evaluate(&ctx, req, resp ? resp : &ignored);
  }

  std::string dir_, rules_;
  std::string ledger_url_;  // SQLite in dir_, or PostgreSQL (tests/test_ledger.h)
  std::string platform_a_, platform_b_, regulator_, author_, admin_;
  std::unique_ptr<Daemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Moderation::Stub> moderation_;
  std::unique_ptr<v1::Audit::Stub> audit_;
  std::unique_ptr<v1::Rules::Stub> rules_stub_;
  std::unique_ptr<v1::Signals::Stub> signals_;
};

TEST_F(ServerTest, RoleRpcTenantMatrix) {
  StartDaemon();
  using Call = std::function<grpc::Status(const std::string& token)>;
  auto unary = [&](auto method, auto stub, auto req, auto resp) {
    return [=, this](const std::string& token) mutable {
      grpc::ClientContext ctx;
      Auth(&ctx, token);
      return ((*stub).*method)(&ctx, req, &resp);
    };
  };
  v1::RecordActionRequest action;
  action.set_service_id("svc-a");
  action.set_report_id("nothing");
  action.set_action("remove_content");
  action.mutable_taken_at()->set_seconds(Now());
  v1::GetConsistencyProofRequest cons;
  cons.set_first_tree_size(1);
  cons.set_second_tree_size(1);
  v1::GetEvidenceRequest ev;
  ev.set_finding_id("fd-none");
  v1::GetEntriesRequest entries;
  entries.set_start_seq(1);
  entries.set_end_seq(1);
  v1::GetInclusionProofRequest prove;
  prove.set_seq(1);
  v1::BlindEvaluateRequest blind;
  blind.set_service_id("svc-a");
  blind.add_blinded_elements(std::string(32, '\x01'));  // not an element: refused after auth
  v1::SubmitSignalsRequest submit;
  submit.set_service_id("svc-a");
  submit.set_report_id("m-signals");
  auto* sig = submit.add_signals();
  sig->set_kind("handle");
  sig->set_token(std::string(64, 'x'));
  sig->set_category("csea.grooming-response");
  v1::ListAlertsRequest list;
  list.set_service_id("svc-a");
  v1::LinkFeedbackRequest feedback;
  feedback.set_service_id("svc-a");
  feedback.set_alert_id("none");
  feedback.set_opinion("confirmed");
  v1::WithdrawSignalsRequest withdraw;
  withdraw.set_service_id("svc-a");
  withdraw.set_report_id("none");
  int counter = 0;
  std::map<std::string, std::pair<Call, std::set<std::string>>> rpcs = {
      {"Evaluate",
       {[&](const std::string& t) {
          return Evaluate(t, Flaggable("m" + std::to_string(counter++), "svc-a"));
        },
        {"platform_a", "admin"}}},
      {"RecordAction",
       {unary(&v1::Moderation::Stub::RecordAction, moderation_.get(), action,
              v1::RecordActionResponse()),
        {"platform_a", "admin"}}},
      {"ListBreaches",
       {unary(&v1::Audit::Stub::ListBreaches, audit_.get(), v1::ListBreachesRequest(),
              v1::ListBreachesResponse()),
        {"regulator", "admin"}}},
      {"ListFindings",
       {unary(&v1::Audit::Stub::ListFindings, audit_.get(), v1::ListFindingsRequest(),
              v1::ListFindingsResponse()),
        {"regulator", "admin"}}},
      {"GetEvidence",
       {unary(&v1::Audit::Stub::GetEvidence, audit_.get(), ev, v1::GetEvidenceResponse()),
        {"regulator", "admin"}}},
      {"GetCheckpoint",
       {unary(&v1::Audit::Stub::GetCheckpoint, audit_.get(), v1::GetCheckpointRequest(),
              v1::GetCheckpointResponse()),
        {"regulator", "admin"}}},
      {"GetConsistencyProof",
       {unary(&v1::Audit::Stub::GetConsistencyProof, audit_.get(), cons,
              v1::GetConsistencyProofResponse()),
        {"regulator", "admin"}}},
      {"GetStats",
       {unary(&v1::Audit::Stub::GetStats, audit_.get(), v1::GetStatsRequest(),
              v1::GetStatsResponse()),
        {"regulator", "admin"}}},
      {"GetEntries",
       {unary(&v1::Audit::Stub::GetEntries, audit_.get(), entries, v1::GetEntriesResponse()),
        {"regulator", "admin"}}},
      {"GetInclusionProof",
       {unary(&v1::Audit::Stub::GetInclusionProof, audit_.get(), prove,
              v1::GetInclusionProofResponse()),
        {"regulator", "admin"}}},
      {"Validate",
       {unary(&v1::Rules::Stub::Validate, rules_stub_.get(), v1::RulePackSet(),
              v1::ValidateResponse()),
        {"author", "admin"}}},
      {"RunTests",
       {unary(&v1::Rules::Stub::RunTests, rules_stub_.get(), v1::RulePackSet(),
              v1::RunTestsResponse()),
        {"author", "admin"}}},
      {"DryRun",
       {unary(&v1::Rules::Stub::DryRun, rules_stub_.get(), v1::DryRunRequest(),
              v1::DryRunResponse()),
        {"author", "admin"}}},
      {"GetActiveRuleset",
       {unary(&v1::Rules::Stub::GetActiveRuleset, rules_stub_.get(), v1::GetActiveRulesetRequest(),
              v1::GetActiveRulesetResponse()),
        {"author", "admin"}}},
      {"Reload",
       {unary(&v1::Rules::Stub::Reload, rules_stub_.get(), v1::ReloadRequest(),
              v1::ReloadResponse()),
        {"admin"}}},
      {"GetLinkageStats",
       {unary(&v1::Audit::Stub::GetLinkageStats, audit_.get(), v1::GetLinkageStatsRequest(),
              v1::GetLinkageStatsResponse()),
        {"regulator", "admin"}}},
      {"BlindEvaluate",
       {unary(&v1::Signals::Stub::BlindEvaluate, signals_.get(), blind,
              v1::BlindEvaluateResponse()),
        {"platform_a", "admin"}}},
      {"SubmitSignals",
       {unary(&v1::Signals::Stub::SubmitSignals, signals_.get(), submit,
              v1::SubmitSignalsResponse()),
        {"platform_a", "admin"}}},
      {"ListAlerts",
       {unary(&v1::Signals::Stub::ListAlerts, signals_.get(), list, v1::ListAlertsResponse()),
        {"platform_a", "admin"}}},
      {"RecordLinkFeedback",
       {unary(&v1::Signals::Stub::RecordLinkFeedback, signals_.get(), feedback,
              v1::LinkFeedbackResponse()),
        {"platform_a", "admin"}}},
      {"WithdrawSignals",
       {unary(&v1::Signals::Stub::WithdrawSignals, signals_.get(), withdraw,
              v1::WithdrawSignalsResponse()),
        {"platform_a", "admin"}}},
  };
  std::map<std::string, std::string> who = {{"none", ""},
                                            {"bogus", "cw_not_a_real_token"},
                                            {"platform_a", platform_a_},
                                            {"regulator", regulator_},
                                            {"author", author_},
                                            {"admin", admin_}};
  for (auto& [rpc, entry] : rpcs) {
    for (const auto& [name, token] : who) {
      uint64_t before = daemon_->LedgerEvents();
      grpc::Status st = entry.first(token);
      SCOPED_TRACE(rpc + " as " + name + ": " + st.error_message());
      if (name == "none" || name == "bogus") {
        EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED);
      } else if (!entry.second.count(name)) {
        EXPECT_EQ(st.error_code(), StatusCode::PERMISSION_DENIED);
      } else {
        EXPECT_NE(st.error_code(), StatusCode::PERMISSION_DENIED);
        EXPECT_NE(st.error_code(), StatusCode::UNAUTHENTICATED);
        continue;
      }
      EXPECT_EQ(daemon_->LedgerEvents(), before) << "a refused call records nothing";
    }
  }
  // Tenancy: a platform can neither submit nor act for another service.
  uint64_t before = daemon_->LedgerEvents();
  EXPECT_EQ(Evaluate(platform_a_, Flaggable("x1", "svc-b")).error_code(),
            StatusCode::PERMISSION_DENIED);
  action.set_service_id("svc-b");
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  v1::RecordActionResponse ar;
  EXPECT_EQ(moderation_->RecordAction(&ctx, action, &ar).error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(daemon_->LedgerEvents(), before);
}

TEST_F(ServerTest, EvaluateIsIdempotentAndActionsMeetObligations) {
  StartDaemon();
  // One receipt time for the report and its retries: a retry is the same
  // report (with Now() each, a second boundary between them made it another).
  const int64_t at = Now();
  v1::EvaluateResponse first, again;
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("r-1", "svc-a", at), &first).ok());
  ASSERT_GT(first.verdict().flags_size(), 0);
  ASSERT_GT(first.verdict().ledger_seq(), 0u);
  uint64_t events = daemon_->LedgerEvents();
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("r-1", "svc-a", at), &again).ok());
  EXPECT_EQ(again.verdict().SerializeAsString(), first.verdict().SerializeAsString());
  EXPECT_EQ(daemon_->LedgerEvents(), events) << "a retried report opens no second obligation";
  // Evaluate's answer says what is owed too: everything, so far.
  ASSERT_EQ(first.verdict().obligations_size(), 1);
  EXPECT_EQ(first.verdict().obligations(0).actions_done_size(), 0);
  EXPECT_EQ(first.verdict().obligations(0).actions_outstanding_size(),
            first.verdict().obligations(0).required_actions_size());
  // Acting on it meets the obligation.
  v1::RecordActionResponse resp;
  for (const char* a : {"remove_content", "report_to_nca"}) {
    v1::RecordActionRequest req;
    req.set_service_id("svc-a");
    req.set_report_id("r-1");
    req.set_action(a);
    req.mutable_taken_at()->set_seconds(Now());
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    grpc::Status rst = moderation_->RecordAction(&ctx, req, &resp);
    ASSERT_TRUE(rst.ok()) << rst.error_code() << " " << rst.error_message();
    if (std::string(a) == "remove_content") {
      // The answer says what is done and what is still owed.
      ASSERT_EQ(resp.obligations_size(), 1);
      EXPECT_EQ(resp.obligations(0).status(), v1::OBLIGATION_STATUS_OPEN);
      EXPECT_EQ(std::vector<std::string>(resp.obligations(0).actions_done().begin(),
                                         resp.obligations(0).actions_done().end()),
                std::vector<std::string>{"remove_content"});
      EXPECT_EQ(std::vector<std::string>(resp.obligations(0).actions_outstanding().begin(),
                                         resp.obligations(0).actions_outstanding().end()),
                std::vector<std::string>{"report_to_nca"});
      // A retried Evaluate now says the same.
      v1::EvaluateResponse retried;
      ASSERT_TRUE(Evaluate(platform_a_, Flaggable("r-1", "svc-a", at), &retried).ok());
      ASSERT_EQ(retried.verdict().obligations_size(), 1);
      EXPECT_EQ(std::vector<std::string>(retried.verdict().obligations(0).actions_done().begin(),
                                         retried.verdict().obligations(0).actions_done().end()),
                std::vector<std::string>{"remove_content"});
    }
  }
  ASSERT_EQ(resp.obligations_size(), 1);
  EXPECT_EQ(resp.obligations(0).status(), v1::OBLIGATION_STATUS_MET);
  EXPECT_EQ(resp.obligations(0).actions_done_size(), 2);
  EXPECT_EQ(resp.obligations(0).actions_outstanding_size(), 0);
}

// A report never seen is found new by the filter of indexed ids, without
// reading the index; a retry after a restart, by the index, once the
// restarted carewatchd's filter has every id again: the same verdict, and
// other content under the same id is refused.
TEST_F(ServerTest, NewReportsSkipTheIndexAndRetriesAcrossARestartAreFoundInIt) {
  if (carewatch::testing::OnPostgres()) GTEST_SKIP() << "the SQLite ledger's filter of report ids";
  auto metric = [&](const std::string& name) -> int64_t {
    std::string m = daemon_->Metrics();
    size_t at = m.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoll(m.substr(at + name.size() + 2));
  };
  auto wait_ready = [&] {
    for (int i = 0; i < 500 && metric("carewatch_report_filter_ready") != 1; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return metric("carewatch_report_filter_ready") == 1;
  };
  const std::string filter = "carewatch_report_lookups_total{answer=\"filter\"}";
  const std::string index = "carewatch_report_lookups_total{answer=\"index\"}";
  const int64_t at = Now();
  auto quiet = [&](const std::string& id, const std::string& text = "a question about billing") {
    v1::ContentReport r = Flaggable(id, "svc-a", at);
    r.set_reporter_type("user");
    r.set_reason("spam");
    r.set_content_type("text");
    r.set_text(text);
    return r;
  };
  StartDaemon();
  ASSERT_TRUE(wait_ready());
  const int64_t filtered = metric(filter), read = metric(index);
  for (int i = 0; i < 5; ++i) {
    v1::EvaluateResponse resp;
    ASSERT_TRUE(Evaluate(platform_a_, quiet("q-" + std::to_string(i)), &resp).ok());
    ASSERT_EQ(resp.verdict().flags_size(), 0);
  }
  EXPECT_EQ(metric(filter), filtered + 5);
  EXPECT_EQ(metric(index), read);
  daemon_->Kill(SIGTERM);
  StartDaemon();
  ASSERT_TRUE(wait_ready());
  ASSERT_EQ(metric(index), 0) << "counted since start";
  v1::EvaluateResponse again;
  ASSERT_TRUE(Evaluate(platform_a_, quiet("q-0"), &again).ok());
  EXPECT_EQ(again.verdict().flags_size(), 0);
  EXPECT_EQ(again.verdict().ledger_seq(), 0u);
  grpc::Status other = Evaluate(platform_a_, quiet("q-1", "other words"));
  EXPECT_EQ(other.error_code(), grpc::StatusCode::ALREADY_EXISTS) << other.error_message();
  EXPECT_EQ(metric(index), 2);
  EXPECT_EQ(metric(filter), 0);
}

TEST_F(ServerTest, MalformedAndOversizedRequestsNameTheField) {
  StartDaemon();
  v1::ContentReport r = Flaggable("big", "svc-a");
  r.set_text(std::string(70000, 'x'));
  grpc::Status st = Evaluate(platform_a_, r);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("report.text"), std::string::npos) << st.error_message();
  r = Flaggable("", "svc-a");
  st = Evaluate(platform_a_, r);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("report.report_id"), std::string::npos) << st.error_message();
  r = Flaggable("h", "svc-a");
  r.add_hashes()->set_value("not hex!");
  st = Evaluate(platform_a_, r);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("report.hashes[0].value"), std::string::npos)
      << st.error_message();
  v1::RecordActionRequest bad;
  bad.set_service_id("svc-a");
  bad.set_report_id("r");
  bad.set_action("launch");
  bad.mutable_taken_at()->set_seconds(Now());
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  v1::RecordActionResponse resp;
  st = moderation_->RecordAction(&ctx, bad, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("action"), std::string::npos);
  // The server is still serving.
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("after", "svc-a")).ok());
}

TEST_F(ServerTest, IdsAndCategoriesAreCappedBeforeAnythingIsKept) {
  StartDaemon();
  auto expect_refused = [&](const v1::ContentReport& r, const std::string& fragment) {
    grpc::Status st = Evaluate(platform_a_, r);
    EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT) << fragment;
    EXPECT_NE(st.error_message().find(fragment), std::string::npos) << st.error_message();
  };
  // A 1 MB id (under max_field_bytes) used to be kept for good.
  expect_refused(Flaggable(std::string(1 << 20, 'x'), "svc-a"),
                 "report.report_id: 1048576 bytes exceeds the limit of 256");
  expect_refused(Flaggable("id with spaces", "svc-a"), "report.report_id: only printable ASCII");
  expect_refused(Flaggable("ok", ""), "report.service_id: required");
  v1::ContentReport r = Flaggable("reason", "svc-a");
  r.set_reason(std::string(1 << 20, 'a'));
  expect_refused(r, "report.reason: 1048576 bytes exceeds the limit of 64");
  r = Flaggable("surface", "svc-a");
  r.set_surface("Direct Messages");
  expect_refused(r, "report.surface: only [a-z0-9_.-]");
  r = Flaggable("attrs", "svc-a");
  for (int i = 0; i < 33; ++i) (*r.mutable_attributes())["k" + std::to_string(i)] = "v";
  expect_refused(r, "report.attributes: 33 entries exceeds the limit of 32");
  // At the limit an id is taken.
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable(std::string(256, 'y'), "svc-a")).ok());
  v1::RecordActionRequest a;
  a.set_service_id("svc-a");
  a.set_report_id(std::string(257, 'y'));
  a.set_action("remove_content");
  a.set_actor("moderator-1");
  a.mutable_taken_at()->set_seconds(Now());
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  v1::RecordActionResponse resp;
  grpc::Status st = moderation_->RecordAction(&ctx, a, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("report_id: 257 bytes exceeds the limit of 256"),
            std::string::npos)
      << st.error_message();
  // Nothing refused reached the ledger: only the one report taken did.
  v1::GetStatsResponse stats;
  v1::GetStatsRequest sr;
  sr.set_service_id("svc-a");
  grpc::ClientContext sctx;
  Auth(&sctx, regulator_);
  ASSERT_TRUE(audit_->GetStats(&sctx, sr, &stats).ok());
  int64_t reports = 0;
  for (const auto& p : stats.periods()) reports += p.reports();
  EXPECT_EQ(reports, 1);
}

TEST_F(ServerTest, EvaluateStreamAnswersEveryReport) {
  StartDaemon();
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  auto stream = moderation_->EvaluateStream(&ctx);
  constexpr int kN = 300;
  for (int i = 0; i < kN; ++i) {
    v1::EvaluateRequest req;
    *req.mutable_report() = Flaggable("s-" + std::to_string(i), "svc-a");
    if (i % 3 == 0) req.mutable_report()->set_reason("spam");  // not flagged
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  std::set<std::string> seen;
  v1::EvaluateResponse resp;
  int flagged = 0;
  while (stream->Read(&resp)) {
    EXPECT_TRUE(resp.error().empty()) << resp.error();
    seen.insert(resp.verdict().report_id());
    if (resp.verdict().flags_size() > 0) {
      ++flagged;
      EXPECT_GT(resp.verdict().ledger_seq(), 0u);
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kN));
  EXPECT_EQ(flagged, kN - kN / 3);
}

// A streamed report's linked identifiers become signals before it is
// answered; an unflagged report's are dropped.
TEST_F(ServerTest, EvaluateStreamLinksTheIdentifiersOfFlaggedReports) {
  StartDaemon();
  signals_ = v1::Signals::NewStub(channel_);
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    auto stream = moderation_->EvaluateStream(&ctx);
    for (int i = 0; i < 2; ++i) {
      v1::EvaluateRequest req;
      *req.mutable_report() = Flaggable("s-" + std::to_string(i), "svc-a");
      if (i == 1) req.mutable_report()->set_reason("spam");  // not flagged
      auto* li = req.mutable_report()->add_linked_identifiers();
      li->set_kind("phone");
      li->set_value(i == 0 ? "+44 7700 900456" : "+44 7700 900789");
      ASSERT_TRUE(stream->Write(req));
    }
    stream->WritesDone();
    v1::EvaluateResponse resp;
    while (stream->Read(&resp)) EXPECT_TRUE(resp.error().empty()) << resp.error();
    ASSERT_TRUE(stream->Finish().ok());
  }
  int n = 0;
  for (const char* phone : {"0044 7700 900456", "0044 7700 900789"}) {
    v1::ContentReport r = Flaggable("b-" + std::to_string(n++), "svc-b");
    auto* li = r.add_linked_identifiers();
    li->set_kind("phone");
    li->set_value(phone);
    ASSERT_TRUE(Evaluate(platform_b_, r).ok());
  }
  v1::ListAlertsRequest req;
  req.set_service_id("svc-a");
  v1::ListAlertsResponse resp;
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  ASSERT_TRUE(signals_->ListAlerts(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1) << "only the flagged report's identifier was kept";
  EXPECT_EQ(resp.alerts(0).report_ids(0), "s-0");
  // A bad identifier is refused before anything is recorded, naming the
  // rule, not the value.
  v1::ContentReport bad = Flaggable("bad-1", "svc-a");
  auto* li = bad.add_linked_identifiers();
  li->set_kind("phone");
  li->set_value("07700 900111");
  grpc::Status st = Evaluate(platform_a_, bad);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("linked_identifiers[0]: phone: needs its country code"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(st.error_message().find("900111"), std::string::npos);
}

// One platform cannot hold every stream slot by subscribing to its alerts:
// at most kMaxSubscriptionsPerService at once; a closed one frees its place,
// and other services keep theirs.
TEST_F(ServerTest, SubscriptionsArePerServiceBounded) {
  StartDaemon();
  signals_ = v1::Signals::NewStub(channel_);
  struct Sub {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::LinkageAlert>> reader;
  };
  auto open = [&](const std::string& token, const std::string& service) {
    auto sub = std::make_unique<Sub>();
    Auth(&sub->ctx, token);
    sub->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::SubscribeAlertsRequest req;
    req.set_service_id(service);
    sub->reader = signals_->Subscribe(&sub->ctx, req);
    return sub;
  };
  std::vector<std::unique_ptr<Sub>> subs;
  constexpr int kMax = server::kMaxSubscriptionsPerService;
  for (int i = 0; i < kMax; ++i) subs.push_back(open(platform_a_, "svc-a"));
  ASSERT_TRUE(daemon_->AwaitMetric("carewatch_open_streams", kMax)) << "all admitted";
  auto extra = open(platform_a_, "svc-a");
  v1::LinkageAlert alert;
  EXPECT_FALSE(extra->reader->Read(&alert));
  grpc::Status st = extra->reader->Finish();
  EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_NE(st.error_message().find("Subscribe streams open"), std::string::npos);
  // Another service is not affected.
  auto other = open(platform_b_, "svc-b");
  EXPECT_TRUE(daemon_->AwaitMetric("carewatch_open_streams", kMax + 1)) << "svc-b's is admitted";
  other->ctx.TryCancel();
  EXPECT_EQ(other->reader->Finish().error_code(), StatusCode::CANCELLED);
  // Closing one frees its place (its slot goes after its subscription).
  subs[0]->ctx.TryCancel();
  subs[0]->reader->Finish().ok();
  ASSERT_TRUE(daemon_->AwaitMetric("carewatch_open_streams", kMax - 1)) << "the server sees it go";
  auto again = open(platform_a_, "svc-a");
  EXPECT_TRUE(daemon_->AwaitMetric("carewatch_open_streams", kMax)) << "svc-a's next is admitted";
  again->ctx.TryCancel();
  EXPECT_EQ(again->reader->Finish().error_code(), StatusCode::CANCELLED);
  for (auto& sub : subs) sub->ctx.TryCancel();
}

// Threads of a running process, from /proc.
int ThreadsOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// With as many active EvaluateStream streams as CPUs, each evaluates its
// reports on its own thread (no hand-off a report); a stream alone on a
// machine of several CPUs hands them to the shared workers, which spread
// them over the CPUs.
TEST_F(ServerTest, StreamsEvaluateOnTheirOwnThreadsWhenTheyKeepEveryCpuBusy) {
  StartDaemon();
  const int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string on_stream = "carewatch_stream_reports_total{evaluated_on=\"stream\"}";
  const std::string on_workers = "carewatch_stream_reports_total{evaluated_on=\"workers\"}";
  struct Open {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::EvaluateRequest, v1::EvaluateResponse>> stream;
  };
  int sent = 0;
  auto send = [&](Open& o, int n) {
    for (int i = 0; i < n; ++i) {
      v1::EvaluateRequest req;
      *req.mutable_report() = Flaggable("s-" + std::to_string(sent++), "svc-a");
      ASSERT_TRUE(o.stream->Write(req));
      v1::EvaluateResponse resp;
      ASSERT_TRUE(o.stream->Read(&resp));
      ASSERT_TRUE(resp.error().empty()) << resp.error();
      ASSERT_EQ(resp.verdict().report_id(), req.report().report_id());
    }
  };
  // One report on each: every stream is active.
  std::vector<std::unique_ptr<Open>> streams;
  for (int i = 0; i < cpus; ++i) {
    streams.push_back(std::make_unique<Open>());
    Auth(&streams.back()->ctx, platform_a_);
    streams.back()->stream = moderation_->EvaluateStream(&streams.back()->ctx);
    send(*streams.back(), 1);
  }
  uint64_t inline_before = daemon_->Metric(on_stream);
  uint64_t workers_before = daemon_->Metric(on_workers);
  for (auto& o : streams) send(*o, 10);
  EXPECT_EQ(daemon_->Metric(on_stream) - inline_before, 10u * cpus);
  EXPECT_EQ(daemon_->Metric(on_workers) - workers_before, 0u);
  // All but one end: the one left is alone.
  for (size_t i = 1; i < streams.size(); ++i) {
    streams[i]->stream->WritesDone();
    ASSERT_TRUE(streams[i]->stream->Finish().ok());
  }
  inline_before = daemon_->Metric(on_stream);
  workers_before = daemon_->Metric(on_workers);
  send(*streams[0], 10);
  if (cpus > 1) {
    EXPECT_EQ(daemon_->Metric(on_workers) - workers_before, 10u);
    EXPECT_EQ(daemon_->Metric(on_stream) - inline_before, 0u);
  } else {
    EXPECT_EQ(daemon_->Metric(on_stream) - inline_before, 10u);
  }
  streams[0]->stream->WritesDone();
  ASSERT_TRUE(streams[0]->stream->Finish().ok());
}

// Names of a running process's threads, from /proc.
std::multiset<std::string> ThreadNamesOf(pid_t pid) {
  std::multiset<std::string> names;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::ifstream in(task.path() / "comm");
    std::string name;
    if (std::getline(in, name)) names.insert(name);
  }
  return names;
}

// Operators tell carewatchd's threads apart in top -H, ps -L and perf by
// name (docs/operations.md).
TEST_F(ServerTest, ThreadsAreNamedForWhatTheyDo) {
  daemon_->Start(rules_, {"--workers", "3"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  StreamOneReport("named", [&] {
    const std::multiset<std::string> names = ThreadNamesOf(daemon_->Pid());
    EXPECT_EQ(names.count("cw-ledger-write"), 1u);
    EXPECT_EQ(names.count("cw-ledger-done"), 1u);
    EXPECT_EQ(names.count("cw-worker"), 3u);
    EXPECT_EQ(names.count("cw-responder"), 1u);
    EXPECT_EQ(names.count("cw-sweeper"), 1u);
  });
}

TEST_F(ServerTest, IdleStreamsHoldNoWorkersAndAreBounded) {
  // The whole cap to one caller: this test is of the cap itself.
  daemon_->Start(rules_, {"--max-streams", "16", "--max-share-per-caller", "100"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  // One stream that did work, so its responder and the pool exist.
  StreamOneReport("warm");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int before = ThreadsOf(daemon_->Pid());
  ASSERT_GT(before, 0);
  // Sixteen idle streams: each used to start its own workers (8) and a
  // responder; now each holds gRPC's handler thread only.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::EvaluateRequest, v1::EvaluateResponse>>>
      streams;
  for (int i = 0; i < 16; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    Auth(contexts.back().get(), platform_a_);
    streams.push_back(moderation_->EvaluateStream(contexts.back().get()));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int during = ThreadsOf(daemon_->Pid());
  EXPECT_LE(during - before, 16 + 4) << "threads went from " << before << " to " << during;
  // The seventeenth is refused, not given threads.
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    auto extra = moderation_->EvaluateStream(&ctx);
    extra->WritesDone();
    grpc::Status st = extra->Finish();
    EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(st.error_message().find("too many open streams (max_streams 16)"), std::string::npos)
        << st.error_message();
  }
  // The open ones still work, and once closed make room again.
  v1::EvaluateRequest req;
  *req.mutable_report() = Flaggable("on-an-idle-stream", "svc-a");
  ASSERT_TRUE(streams[0]->Write(req));
  v1::EvaluateResponse resp;
  ASSERT_TRUE(streams[0]->Read(&resp));
  EXPECT_EQ(resp.verdict().report_id(), "on-an-idle-stream");
  for (auto& st : streams) {
    st->WritesDone();
    while (st->Read(&resp)) {
    }
    EXPECT_TRUE(st->Finish().ok());
  }
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  auto again = moderation_->EvaluateStream(&ctx);
  again->WritesDone();
  EXPECT_TRUE(again->Finish().ok());
}

// One platform cannot hold every stream: of max_streams (8 here) a service
// holds at most max_share_per_caller (50%, the default); its next stream is
// refused, naming the share, while another service still opens one and is
// served on it; a stream closed frees its place in the share.
TEST_F(ServerTest, StreamsAreSharedBetweenCallers) {
  daemon_->Start(rules_, {"--max-streams", "8"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  using Stream = grpc::ClientReaderWriter<v1::EvaluateRequest, v1::EvaluateResponse>;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<Stream>> streams;
  auto open = [&](const std::string& token) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    Auth(contexts.back().get(), token);
    contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    streams.push_back(moderation_->EvaluateStream(contexts.back().get()));
    return streams.back().get();
  };
  auto serves = [&](Stream* s, const std::string& id, const std::string& service) {
    v1::EvaluateRequest req;
    *req.mutable_report() = Flaggable(id, service);
    v1::EvaluateResponse resp;
    return s->Write(req) && s->Read(&resp) && resp.verdict().report_id() == id;
  };
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(serves(open(platform_a_), "a-" + std::to_string(i), "svc-a"));
  {
    Stream* extra = open(platform_a_);
    extra->WritesDone();
    grpc::Status st = extra->Finish();
    EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(st.error_message().find(
                  "service svc-a holds its share of max_streams (max_share_per_caller 50%)"),
              std::string::npos)
        << st.error_message();
  }
  EXPECT_TRUE(serves(open(platform_b_), "b-0", "svc-b")) << "another service still opens one";
  EXPECT_EQ(daemon_->Metric("carewatch_open_streams"), 5u);
  // The replicas' queue exists on PostgreSQL only, and so does its gauge.
  EXPECT_EQ(daemon_->Metrics().find("carewatch_queue_depth") != std::string::npos,
            carewatch::testing::OnPostgres());
  // Closing one of svc-a's makes room in its share.
  streams[0]->WritesDone();
  v1::EvaluateResponse resp;
  while (streams[0]->Read(&resp)) {
  }
  EXPECT_TRUE(streams[0]->Finish().ok());
  bool admitted = false;
  for (int i = 0; i < 50 && !admitted; ++i) {  // until the server has seen it close
    admitted = serves(open(platform_a_), "a-again-" + std::to_string(i), "svc-a");
    if (!admitted) {
      streams.back()->Finish();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_TRUE(admitted);
  for (size_t i = 1; i < streams.size(); ++i) contexts[i]->TryCancel();
}

// A unary Evaluate waits for its report to be durable without holding a
// thread: with the ledger unable to write, calls past the sync server's
// thread quota (max_streams + 192) still wait, and all are answered once it
// can.
// Unary Evaluate calls sent at once without waiting for their answers:
// reports "<prefix><i>" of svc-a, half flagged, half matching nothing.
class AsyncEvaluations {
 public:
  // `text_bytes` > 0: each report's text padded to about that many bytes.
  AsyncEvaluations(v1::Moderation::Stub* stub, const std::string& token, const std::string& prefix,
                   int n, size_t text_bytes = 0, const std::string& service = "svc-a") {
    for (int i = 0; i < n; ++i) {
      auto c = std::make_unique<Call>();
      c->ctx.AddMetadata("authorization", "Bearer " + token);
      c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      *c->req.mutable_report() = ServerTest::Flaggable(prefix + std::to_string(i), service);
      if (i % 2) c->req.mutable_report()->set_reason("spam");  // matches nothing
      std::string* text = c->req.mutable_report()->mutable_text();
      while (text->size() + 8 <= text_bytes) text->append(" weather");
      Call* raw = c.get();
      stub->async()->Evaluate(&raw->ctx, &raw->req, &raw->resp, [this, raw](grpc::Status st) {
        std::lock_guard<std::mutex> l(mu_);
        raw->status = std::move(st);
        raw->done = true;
        ++answered_;
        cv_.notify_all();
      });
      calls_.push_back(std::move(c));
    }
  }
  ~AsyncEvaluations() { (void)WaitAll(); }
  int answered() {
    std::lock_guard<std::mutex> l(mu_);
    return answered_;
  }
  bool WaitAll() {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(60),
                        [&] { return answered_ == static_cast<int>(calls_.size()); });
  }
  // Answers so far with `code`; `flagged` (may be null) counts the OK ones
  // that name a ledger seq, `message` gets one of their messages.
  int WithCode(grpc::StatusCode code, int* flagged = nullptr, std::string* message = nullptr) {
    std::lock_guard<std::mutex> l(mu_);
    int n = 0;
    for (const auto& c : calls_) {
      if (!c->done || c->status.error_code() != code) continue;
      ++n;
      if (flagged && c->resp.verdict().ledger_seq() > 0) ++*flagged;
      if (message) *message = c->status.error_message();
    }
    return n;
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    v1::EvaluateRequest req;
    v1::EvaluateResponse resp;
    grpc::Status status;
    bool done = false;
  };
  std::vector<std::unique_ptr<Call>> calls_;
  std::mutex mu_;
  std::condition_variable cv_;
  int answered_ = 0;
};

TEST_F(ServerTest, UnaryCallsWaitingForTheLedgerHoldNoThreadEach) {
  StartDaemon();
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("warm", "svc-a")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int before = ThreadsOf(daemon_->Pid());
  ASSERT_GT(before, 0);
  const uint64_t commits_before = daemon_->Metric("carewatch_ledger_commits_total");
  ASSERT_GT(commits_before, 0u);
  constexpr int kCalls = 300;
  std::unique_ptr<AsyncEvaluations> calls;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    calls = std::make_unique<AsyncEvaluations>(moderation_.get(), platform_a_, "held-", kCalls);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    const int during = ThreadsOf(daemon_->Pid());
    EXPECT_LE(during - before, 16) << "threads went from " << before << " to " << during;
    EXPECT_EQ(calls->answered(), 0) << "nothing is answered before it is durable";
  }
  ASSERT_TRUE(calls->WaitAll()) << calls->answered() << " of " << kCalls << " answered";
  int flagged = 0;
  EXPECT_EQ(calls->WithCode(StatusCode::OK, &flagged), kCalls);
  EXPECT_EQ(flagged, kCalls / 2);
  // Queued while the ledger could not write, they were written together.
  const uint64_t commits = daemon_->Metric("carewatch_ledger_commits_total") - commits_before;
  EXPECT_LE(commits, 10u) << "group commit: " << kCalls << " reports in " << commits << " commits";
}

// Calls waiting for the ledger hold memory (their request and answer): past
// max_waiting_calls the next is refused at once.
TEST_F(ServerTest, UnaryCallsWaitingForTheLedgerAreCapped) {
  daemon_->Start(rules_, {"--max-waiting-calls", "40", "--max-share-per-caller", "100"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("warm", "svc-a")).ok());
  std::unique_ptr<AsyncEvaluations> calls;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    calls = std::make_unique<AsyncEvaluations>(moderation_.get(), platform_a_, "capped-", 100);
    for (int i = 0; i < 100 && calls->answered() < 60; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string message;
    EXPECT_EQ(calls->WithCode(StatusCode::RESOURCE_EXHAUSTED, nullptr, &message), 60);
    EXPECT_NE(message.find("max_waiting_calls 40"), std::string::npos) << message;
    EXPECT_EQ(calls->answered(), 60) << "the 40 admitted wait for the ledger";
  }
  ASSERT_TRUE(calls->WaitAll());
  EXPECT_EQ(calls->WithCode(StatusCode::OK), 40);
  // Answered calls no longer count: the next ones are admitted.
  AsyncEvaluations after(moderation_.get(), platform_a_, "after-", 40);
  ASSERT_TRUE(after.WaitAll());
  EXPECT_EQ(after.WithCode(StatusCode::OK), 40);
}

// One platform cannot fill the ledger's queue for every other: of
// max_waiting_calls (40 here) a service holds at most max_share_per_caller
// (50%, the default) at once; past it its own calls are refused while
// another service's are still admitted.
TEST_F(ServerTest, UnaryCallsWaitingAreSharedBetweenCallers) {
  daemon_->Start(rules_, {"--max-waiting-calls", "40"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("warm", "svc-a")).ok());
  std::unique_ptr<AsyncEvaluations> a, b;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    a = std::make_unique<AsyncEvaluations>(moderation_.get(), platform_a_, "a-", 30);
    for (int i = 0; i < 100 && a->answered() < 10; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string message;
    EXPECT_EQ(a->WithCode(StatusCode::RESOURCE_EXHAUSTED, nullptr, &message), 10);
    EXPECT_NE(message.find("service svc-a holds its share of max_waiting_calls "
                           "(max_share_per_caller 50%)"),
              std::string::npos)
        << message;
    EXPECT_EQ(a->answered(), 10) << "svc-a's 20 admitted wait for the ledger";
    // The other half is another service's.
    b = std::make_unique<AsyncEvaluations>(moderation_.get(), platform_b_, "b-", 15, 0, "svc-b");
    EXPECT_TRUE(daemon_->AwaitMetric("carewatch_waiting_calls", 35))
        << daemon_->Metric("carewatch_waiting_calls");
    EXPECT_EQ(b->answered(), 0) << "svc-b's calls are admitted and wait too";
  }
  ASSERT_TRUE(a->WaitAll());
  ASSERT_TRUE(b->WaitAll());
  EXPECT_EQ(a->WithCode(StatusCode::OK), 20);
  EXPECT_EQ(b->WithCode(StatusCode::OK), 15);
  EXPECT_EQ(daemon_->Metric("carewatch_waiting_calls"), 0u);
  // Answered calls no longer count against the service's share.
  AsyncEvaluations after(moderation_.get(), platform_a_, "a-after-", 20);
  ASSERT_TRUE(after.WaitAll());
  EXPECT_EQ(after.WithCode(StatusCode::OK), 20);
}

// A client's claim of size must not grow memory: past max_waiting_bytes of
// waiting requests, the next call is refused at once, whatever the count.
TEST_F(ServerTest, BytesOfUnaryCallsWaitingForTheLedgerAreCapped) {
  daemon_->Start(rules_, {"--max-message-bytes", "1048576", "--max-field-bytes", "200000",
                          "--max-waiting-bytes", "1048576"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("warm", "svc-a")).ok());
  std::unique_ptr<AsyncEvaluations> calls;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    // 30 requests of about 100 KB: ten fit in 1 MiB.
    calls = std::make_unique<AsyncEvaluations>(moderation_.get(), platform_a_, "big-", 30, 100000);
    for (int i = 0; i < 100 && calls->answered() < 20; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string message;
    EXPECT_EQ(calls->WithCode(StatusCode::RESOURCE_EXHAUSTED, nullptr, &message), 20);
    EXPECT_NE(message.find("max_waiting_bytes 1048576"), std::string::npos) << message;
    EXPECT_EQ(calls->answered(), 20) << "the ten admitted wait for the ledger";
  }
  ASSERT_TRUE(calls->WaitAll());
  EXPECT_EQ(calls->WithCode(StatusCode::OK), 10);
  // Answered calls no longer count: the next ones are admitted.
  AsyncEvaluations after(moderation_.get(), platform_a_, "big-after-", 10, 100000);
  ASSERT_TRUE(after.WaitAll());
  EXPECT_EQ(after.WithCode(StatusCode::OK), 10);
}

// A stream reads no more reports while those it has not answered hold its
// share of max_waiting_bytes (max_waiting_bytes / max_streams): what a
// client sends waits in the transport, not in carewatchd's memory.
TEST_F(ServerTest, BytesOfStreamedReportsInFlightAreCapped) {
  daemon_->Start(rules_, {"--max-message-bytes", "1048576", "--max-field-bytes", "200000",
                          "--max-waiting-bytes", "1048576", "--max-streams", "1"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("warm", "svc-a")).ok());
  const std::string gauge = "carewatch_waiting_bytes{calls=\"stream\"}";
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  auto stream = moderation_->EvaluateStream(&ctx);
  constexpr int kReports = 30;
  std::thread writer;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    // 30 reports of about 100 KB, written on their own thread (the writes
    // block once carewatchd stops reading).
    writer = std::thread([&] {
      for (int i = 0; i < kReports; ++i) {
        v1::EvaluateRequest req;
        *req.mutable_report() = Flaggable("streamed-big-" + std::to_string(i), "svc-a");
        std::string* text = req.mutable_report()->mutable_text();
        while (text->size() < 100000) text->append(" weather");
        if (!stream->Write(req)) return;
      }
      stream->WritesDone();
    });
    uint64_t held = 0;
    for (int i = 0; i < 40 && held < 900000; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      held = daemon_->Metric(gauge);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    held = daemon_->Metric(gauge);
    EXPECT_GT(held, 900000u) << "the stream read reports up to its share";
    EXPECT_LE(held, 1048576u) << "and no further while they wait for the ledger";
  }
  int answered = 0;
  v1::EvaluateResponse resp;
  while (stream->Read(&resp)) {
    EXPECT_TRUE(resp.error().empty()) << resp.error();
    ++answered;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(answered, kReports);
  EXPECT_EQ(daemon_->Metric(gauge), 0u);
}

// The rules copy with csea.swift-takedown's record_grace set to zero, so
// overdue reports are breached at the next sweep.
void ZeroGrace(const std::string& rules_dir) {
  std::string path = rules_dir + "/csea-baseline.yaml";
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string yaml = ss.str();
  const std::string duty = "    deadline: 24h\n    actions: [remove_content, report_to_nca]\n";
  size_t at = yaml.find(duty);
  ASSERT_NE(at, std::string::npos);
  yaml.insert(at + duty.size(), "    record_grace: 0s\n");
  std::ofstream(path, std::ios::trunc) << yaml;
}

TEST_F(ServerTest, AuditQueriesEvidenceAndProofs) {
  ZeroGrace(rules_);
  StartDaemon();
  // Six CSEA referrals received two days ago with nothing done: the sweeper
  // breaches them and csea.swift-takedown (min 5 breaches) opens a finding.
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        Evaluate(platform_a_, Flaggable("old-" + std::to_string(i), "svc-a", Now() - 2 * 86400))
            .ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto call = [&](auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    return ((*audit_).*method)(&ctx, req, resp);
  };
  uint64_t before = daemon_->LedgerEvents();
  v1::ListBreachesRequest lb;
  lb.set_service_id("svc-a");
  lb.set_page_size(4);
  v1::ListBreachesResponse breaches;
  ASSERT_TRUE(call(&v1::Audit::Stub::ListBreaches, lb, &breaches).ok());
  EXPECT_EQ(breaches.breaches_size(), 4);
  ASSERT_FALSE(breaches.next_page_token().empty());
  lb.set_page_token(breaches.next_page_token());
  v1::ListBreachesResponse page2;
  ASSERT_TRUE(call(&v1::Audit::Stub::ListBreaches, lb, &page2).ok());
  EXPECT_EQ(page2.breaches_size(), 2) << "six breaches in two pages";
  EXPECT_EQ(daemon_->LedgerEvents(), before + 2) << "each audit call is recorded as AUDIT_ACCESS";

  v1::ListFindingsResponse findings;
  ASSERT_TRUE(call(&v1::Audit::Stub::ListFindings, v1::ListFindingsRequest(), &findings).ok());
  ASSERT_EQ(findings.findings_size(), 1);
  EXPECT_EQ(findings.findings(0).duty_id(), "csea.swift-takedown");
  EXPECT_EQ(findings.findings(0).breaches(), 6);

  v1::GetCheckpointResponse cp;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetCheckpoint, v1::GetCheckpointRequest(), &cp).ok());
  std::unique_ptr<ledger::SigningKey> key;
  std::ifstream keyfile(dir_ + "/ledger.key");
  ASSERT_TRUE(ledger::SigningKey::LoadOrCreate(dir_ + "/ledger.key", &key).ok());
  EXPECT_EQ(cp.public_key_pem(), key->PublicPem());
  const v1::Checkpoint& c = cp.checkpoint();
  std::unique_ptr<ledger::TrustedKey> trusted;
  ASSERT_TRUE(ledger::TrustedKey::FromVerifierKey(cp.verifier_key(), &trusted).ok());
  EXPECT_EQ(trusted->key().PublicRaw(), key->PublicRaw());
  EXPECT_TRUE(trusted->VerifyCheckpoint(c).ok()) << c.note();
  {
    std::ifstream published(dir_ + "/deployment.vkey");
    std::string line;
    std::getline(published, line);
    EXPECT_EQ(line, cp.verifier_key()) << "carewatchd writes the key to publish beside the ledger";
  }
  // Any event by seq, exact bytes, with its proof against a signed checkpoint.
  v1::GetEntriesRequest er1;
  er1.set_start_seq(1);
  er1.set_end_seq(3);
  v1::GetEntriesResponse entries;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetEntries, er1, &entries).ok());
  ASSERT_EQ(entries.entries_size(), 3);
  EXPECT_EQ(entries.next_seq(), 0u);
  v1::LedgerEvent first;
  ASSERT_TRUE(first.ParseFromString(entries.entries(0).event_bytes()));
  EXPECT_EQ(first.type(), v1::RULESET_ACTIVATED) << "the first event is provable too";
  v1::GetInclusionProofRequest pr;
  pr.set_seq(1);
  pr.set_tree_size(c.tree_size());
  v1::GetInclusionProofResponse proved;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetInclusionProof, pr, &proved).ok());
  EXPECT_EQ(proved.entry().event_bytes(), entries.entries(0).event_bytes());
  std::vector<ledger::Hash> path(proved.proof().begin(), proved.proof().end());
  EXPECT_TRUE(ledger::VerifyInclusion(ledger::LeafHash(proved.entry().event_bytes()), 0,
                                      c.tree_size(), path, c.root_hash()));
  EXPECT_TRUE(trusted->VerifyCheckpoint(proved.checkpoint()).ok());
  pr.set_seq(c.tree_size() + 1000);
  EXPECT_EQ(call(&v1::Audit::Stub::GetInclusionProof, pr, &proved).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::GetEvidenceRequest er;
  er.set_finding_id(findings.findings(0).finding_id());
  v1::GetEvidenceResponse ev;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetEvidence, er, &ev).ok());
  std::set<int> types;
  for (const auto& e : ev.events()) {
    types.insert(e.event().type());
    EXPECT_EQ(ledger::LeafHash(e.event_bytes()), e.leaf_hash());
    if (e.event().seq() <= ev.checkpoint().tree_size()) {
      std::vector<ledger::Hash> proof(e.inclusion_proof().begin(), e.inclusion_proof().end());
      EXPECT_TRUE(ledger::VerifyInclusion(e.leaf_hash(), e.event().seq() - 1,
                                          ev.checkpoint().tree_size(), proof,
                                          ev.checkpoint().root_hash()))
          << "event " << e.event().seq();
    }
  }
  EXPECT_TRUE(types.count(v1::REPORT_FLAGGED) && types.count(v1::OBLIGATION_OPENED) &&
              types.count(v1::DUTY_BREACHED) && types.count(v1::FINDING_OPENED));

  v1::GetCheckpointResponse cp2;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetCheckpoint, v1::GetCheckpointRequest(), &cp2).ok());
  v1::GetConsistencyProofRequest cr;
  cr.set_first_tree_size(c.tree_size());
  cr.set_second_tree_size(cp2.checkpoint().tree_size());
  v1::GetConsistencyProofResponse cons;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetConsistencyProof, cr, &cons).ok());
  std::vector<ledger::Hash> proof(cons.proof().begin(), cons.proof().end());
  EXPECT_TRUE(ledger::VerifyConsistency(c.tree_size(), cp2.checkpoint().tree_size(), c.root_hash(),
                                        cp2.checkpoint().root_hash(), proof));

  v1::GetStatsRequest sr;
  sr.set_period("month");
  v1::GetStatsResponse stats;
  ASSERT_TRUE(call(&v1::Audit::Stub::GetStats, sr, &stats).ok());
  int64_t reports = 0, breached = 0;
  for (const auto& p : stats.periods()) {
    reports += p.reports();
    breached += p.breaches();
  }
  EXPECT_EQ(reports, 6);
  EXPECT_EQ(breached, 6);
}

// A pattern the loader accepts but Hyperscan cannot build (too large) is
// an error at its file, line and column, with its rule, from Validate and
// from Reload alike; the old rule set keeps serving.
TEST_F(ServerTest, APatternHyperscanCannotBuildIsADiagnosticWhereItIsWritten) {
  StartDaemon();
  std::string big;
  for (int i = 0; i < 16; ++i) big += "a{1000}b";
  const std::string rule =
      "  - {id: too-big, duty: d, severity: low, when: {field: text, regex: '" + big +
      "'}}\n";  // the pattern at column 70
  v1::RulePackSet set;
  set.add_files()->set_path("big.yaml");
  set.mutable_files(0)->set_content(
      "pack: big\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24h, actions: "
      "[remove_content]}\nrules:\n" +
      rule);
  {
    grpc::ClientContext ctx;
    Auth(&ctx, author_);
    v1::ValidateResponse resp;
    ASSERT_TRUE(rules_stub_->Validate(&ctx, set, &resp).ok());
    EXPECT_FALSE(resp.ok());
    int errors = 0;
    for (const v1::Diagnostic& d : resp.diagnostics()) {
      if (d.severity() != "error") continue;
      ++errors;
      EXPECT_EQ(d.file(), "big.yaml");
      EXPECT_EQ(d.line(), 6);
      EXPECT_EQ(d.column(), 70);
      EXPECT_EQ(d.rule_id(), "too-big");
      EXPECT_NE(d.message().find("Hyperscan cannot build regex"), std::string::npos) << d.message();
    }
    EXPECT_EQ(errors, 1);
  }
  {  // RunTests and DryRun: the same diagnostic, no test run, no verdict
    grpc::ClientContext ctx;
    Auth(&ctx, author_);
    v1::RunTestsResponse resp;
    ASSERT_TRUE(rules_stub_->RunTests(&ctx, set, &resp).ok());
    EXPECT_EQ(resp.passed() + resp.failed(), 0);
    std::vector<v1::Diagnostic> errors;
    for (const v1::Diagnostic& d : resp.diagnostics())
      if (d.severity() == "error") errors.push_back(d);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].line(), 6);
    EXPECT_EQ(errors[0].column(), 70);
    grpc::ClientContext dctx;
    Auth(&dctx, author_);
    v1::DryRunRequest dry;
    *dry.mutable_packs() = set;
    *dry.add_reports() = Flaggable("dry", "svc-a");
    v1::DryRunResponse dresp;
    grpc::Status st = rules_stub_->DryRun(&dctx, dry, &dresp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(dresp.verdicts_size(), 0);
    errors.clear();
    for (const v1::Diagnostic& d : dresp.diagnostics())
      if (d.severity() == "error") errors.push_back(d);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].rule_id(), "too-big");
  }
  grpc::ClientContext active_ctx;
  Auth(&active_ctx, author_);
  v1::GetActiveRulesetResponse active;
  ASSERT_TRUE(rules_stub_->GetActiveRuleset(&active_ctx, {}, &active).ok());
  std::ofstream(rules_ + "/big.yaml") << set.files(0).content();
  grpc::ClientContext ctx;
  Auth(&ctx, admin_);
  v1::ReloadResponse resp;
  ASSERT_TRUE(rules_stub_->Reload(&ctx, {}, &resp).ok());
  EXPECT_FALSE(resp.ok());
  EXPECT_EQ(resp.version(), active.version());
  ASSERT_EQ(resp.diagnostics_size(), 1);
  EXPECT_EQ(resp.diagnostics(0).file(), rules_ + "/big.yaml");
  EXPECT_EQ(resp.diagnostics(0).line(), 6);
  EXPECT_EQ(resp.diagnostics(0).column(), 70);
  EXPECT_EQ(resp.diagnostics(0).rule_id(), "too-big");
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("after", "svc-a")).ok()) << "still serving";
}

TEST_F(ServerTest, ReloadWithABrokenPackKeepsServingTheOldVersion) {
  StartDaemon();
  auto active = [&] {
    grpc::ClientContext ctx;
    Auth(&ctx, author_);
    v1::GetActiveRulesetResponse r;
    EXPECT_TRUE(rules_stub_->GetActiveRuleset(&ctx, {}, &r).ok());
    return r.version();
  };
  std::string v1_version = active();
  std::ofstream(rules_ + "/csea-baseline.yaml", std::ios::app)
      << "  - {id: broken, duty: nope, when: {field: text, regex: 'a(?=b)'}}\n";
  grpc::ClientContext ctx;
  Auth(&ctx, admin_);
  v1::ReloadResponse resp;
  ASSERT_TRUE(rules_stub_->Reload(&ctx, {}, &resp).ok());
  EXPECT_FALSE(resp.ok());
  EXPECT_GT(resp.diagnostics_size(), 0);
  EXPECT_EQ(resp.version(), v1_version);
  EXPECT_EQ(active(), v1_version);
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("during", "svc-a")).ok()) << "still serving";
  EXPECT_NE(daemon_->Metrics().find("carewatch_last_reload_success 0"), std::string::npos);
  // Fixed and reloaded by SIGHUP: a new version serves.
  fs::copy_file(CAREWATCH_SOURCE_DIR "/rules/csea-baseline.yaml", rules_ + "/csea-baseline.yaml",
                fs::copy_options::overwrite_existing);
  std::ofstream(rules_ + "/csea-baseline.yaml", std::ios::app)
      << "# a comment changes the version\n";
  daemon_->Signal(SIGHUP);
  std::string now_version;
  for (int i = 0; i < 100 && (now_version = active()) == v1_version; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(now_version, v1_version);
  v1::EvaluateResponse er;
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("after", "svc-a"), &er).ok());
  EXPECT_EQ(er.verdict().ruleset_version(), now_version)
      << "every verdict names the version it used";
}

// The report LoadUntil sends: flagged by the shipped hotline rule.
v1::EvaluateRequest LoadRequest(const std::string& id, int64_t received_at) {
  v1::EvaluateRequest req;
  v1::ContentReport& r = *req.mutable_report();
  r.set_report_id(id);
  r.set_service_id("svc-a");
  r.mutable_received_at()->set_seconds(received_at);
  r.set_reporter_type("hotline");
  r.set_reason("csam");
  return req;
}

// Sends reports from several threads until told to stop; returns the ids
// (with ledger_seq) the server acknowledged.
std::map<std::string, uint64_t> LoadUntil(v1::Moderation::Stub* stub, const std::string& token,
                                          std::atomic<bool>& stop, const std::string& prefix) {
  std::mutex mu;
  std::map<std::string, uint64_t> acked;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        v1::EvaluateRequest req =
            LoadRequest(prefix + std::to_string(t) + "-" + std::to_string(i), Now());
        const v1::ContentReport& r = req.report();
        grpc::ClientContext ctx;
        ctx.AddMetadata("authorization", "Bearer " + token);
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        v1::EvaluateResponse resp;
        if (stub->Evaluate(&ctx, req, &resp).ok()) {
          std::lock_guard<std::mutex> lock(mu);
          acked[r.report_id()] = resp.verdict().ledger_seq();
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return acked;
}

void ExpectAllInLedger(const std::string& url, const std::map<std::string, uint64_t>& acked) {
  std::unique_ptr<ledger::LedgerBackend> b;
  ASSERT_TRUE(ledger::OpenBackend(url, true, &b).ok());
  ledger::VerifyReport vr = ledger::VerifyLedger(*b, "");
  EXPECT_TRUE(vr.ok) << vr.message;
  size_t found = 0;
  for (const auto& [id, seq] : acked) {
    std::vector<ledger::StoredEvent> rows;
    ASSERT_TRUE(b->ReadEvents(seq, 1, &rows).ok());
    ASSERT_EQ(rows.size(), 1u) << "acknowledged report " << id << " (seq " << seq << ") is missing";
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(rows[0].payload));
    EXPECT_EQ(e.report_flagged().report_id(), id);
    ++found;
  }
  EXPECT_EQ(found, acked.size());
}

// Every page of a finding's evidence over loopback, as a bundle.
v1::EvidenceBundle FetchBundle(v1::Audit::Stub& audit, const std::string& token,
                               const std::string& finding_id, int* pages) {
  v1::EvidenceBundle bundle;
  bundle.set_format(1);
  v1::GetEvidenceRequest req;
  req.set_finding_id(finding_id);
  *pages = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::GetEvidenceResponse resp;
    grpc::Status st = audit.GetEvidence(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (!st.ok()) return bundle;
    ++*pages;
    if (req.tree_size() == 0) {
      *bundle.mutable_finding() = resp.finding();
      bundle.set_checkpoint_note(resp.checkpoint().note());
      req.set_tree_size(resp.checkpoint().tree_size());
    }
    for (const auto& e : resp.events()) {
      v1::BundleEntry* b = bundle.add_entries();
      b->set_seq(e.event().seq());
      b->set_event_bytes(e.event_bytes());
      *b->mutable_inclusion_proof() = e.inclusion_proof();
    }
    if (resp.next_page_token().empty()) return bundle;
    req.set_page_token(resp.next_page_token());
  }
}

TEST_F(ServerTest, EvidenceBundleVerifiesAndEveryTamperedPartIsNamed) {
  ZeroGrace(rules_);
  StartDaemon();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        Evaluate(platform_a_, Flaggable("b-" + std::to_string(i), "svc-a", Now() - 2 * 86400))
            .ok());
  }
  // The finding opens at its threshold and takes the later breaches as the
  // sweeper records them: wait for all six (under a sanitizer the sixth
  // can come a sweep after the finding).
  v1::ListFindingsResponse findings;
  for (int i = 0; i < 200 && (findings.findings_size() == 0 || findings.findings(0).breaches() < 6);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    ASSERT_TRUE(audit_->ListFindings(&ctx, v1::ListFindingsRequest(), &findings).ok());
  }
  ASSERT_EQ(findings.findings_size(), 1);
  ASSERT_EQ(findings.findings(0).breaches(), 6);
  v1::GetCheckpointResponse cp;
  {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    ASSERT_TRUE(audit_->GetCheckpoint(&ctx, {}, &cp).ok());
  }
  // The key a regulator trusts is the one published, here read off the
  // deployment's own key file, not the server's word.
  std::unique_ptr<ledger::SigningKey> published;
  ASSERT_TRUE(ledger::SigningKey::LoadOrCreate(dir_ + "/ledger.key", &published).ok());
  std::string origin = cp.verifier_key().substr(0, cp.verifier_key().find('+'));
  std::unique_ptr<ledger::TrustedKey> key;
  ASSERT_TRUE(ledger::TrustedKey::FromVerifierKey(
                  ledger::VerifierKeyString(origin, published->PublicRaw()), &key)
                  .ok());
  int pages = 0;
  v1::EvidenceBundle bundle =
      FetchBundle(*audit_, regulator_, findings.findings(0).finding_id(), &pages);
  ASSERT_GT(bundle.entries_size(), 10);
  ledger::BundleReport r = ledger::VerifyBundle(bundle, *key);
  ASSERT_TRUE(r.ok) << r.message;
  std::set<int> types;
  for (const auto& e : bundle.entries()) {
    v1::LedgerEvent ev;
    ASSERT_TRUE(ev.ParseFromString(e.event_bytes()));
    types.insert(ev.type());
  }
  for (int t : {v1::REPORT_FLAGGED, v1::OBLIGATION_OPENED, v1::DUTY_BREACHED, v1::FINDING_OPENED,
                v1::RULESET_ACTIVATED}) {
    EXPECT_TRUE(types.count(t)) << "the bundle holds " << v1::EventType_Name(t);
  }

  auto expect_named = [&](const std::string& part, v1::EvidenceBundle b,
                          const std::string& fragment) {
    ledger::BundleReport bad = ledger::VerifyBundle(b, *key);
    EXPECT_FALSE(bad.ok) << part;
    EXPECT_NE(bad.message.find(fragment), std::string::npos) << part << ": " << bad.message;
  };
  v1::EvidenceBundle b = bundle;
  std::string* bytes = b.mutable_entries(2)->mutable_event_bytes();
  (*bytes)[bytes->size() / 2] ^= 1;
  expect_named("event", b, "entry seq " + std::to_string(b.entries(2).seq()) + ": inclusion proof");
  b = bundle;
  ASSERT_GT(b.entries(3).inclusion_proof_size(), 0);
  (*b.mutable_entries(3)->mutable_inclusion_proof(0))[0] ^= 1;
  expect_named("proof node", b, "entry seq " + std::to_string(b.entries(3).seq()));
  b = bundle;
  std::string note = b.checkpoint_note();
  size_t line = note.find('\n');
  note[line + 1] = note[line + 1] == '9' ? '8' : '9';  // the tree size
  b.set_checkpoint_note(note);
  expect_named("note", b, "does not verify");
  b = bundle;
  note = b.checkpoint_note();
  size_t sig = note.rfind(' ') + 10;
  note[sig] = note[sig] == 'A' ? 'B' : 'A';
  b.set_checkpoint_note(note);
  expect_named("signature", b, "checkpoint note");
  b = bundle;
  b.mutable_finding()->set_breaches(b.finding().breaches() + 1);
  expect_named("finding counter", b, "finding breaches: the bundle states 7, the events give 6");
  b = bundle;
  ASSERT_EQ(b.finding().unattributed_breaches(), 6) << "no accountability for svc-a";
  b.mutable_finding()->set_unattributed_breaches(0);
  expect_named("attribution", b, "finding unattributed_breaches: the bundle states 0");
}

TEST_F(ServerTest, AFindingOfThousandsOfObligationsIsBundledWithDefaultLimits) {
  ZeroGrace(rules_);
  StartDaemon();
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto stub = v1::Moderation::NewStub(channel_);
      for (int i = 0; i < 250; ++i) {
        grpc::ClientContext ctx;
        Auth(&ctx, platform_a_);
        v1::EvaluateRequest req;
        // Long ids (near the 256-byte limit) make the evidence large.
        *req.mutable_report() =
            Flaggable(std::string(240, 'x') + std::to_string(t) + "-" + std::to_string(i), "svc-a",
                      Now() - 2 * 86400);
        v1::EvaluateResponse resp;
        if (!stub->Evaluate(&ctx, req, &resp).ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failed.load(), 0);
  v1::ListFindingsResponse findings;
  for (int i = 0; i < 400; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    findings.Clear();
    ASSERT_TRUE(audit_->ListFindings(&ctx, v1::ListFindingsRequest(), &findings).ok());
    if (findings.findings_size() == 1 && findings.findings(0).breaches() == 2000) break;
  }
  ASSERT_EQ(findings.findings_size(), 1);
  ASSERT_EQ(findings.findings(0).breaches(), 2000);
  std::unique_ptr<ledger::SigningKey> published;
  ASSERT_TRUE(ledger::SigningKey::LoadOrCreate(dir_ + "/ledger.key", &published).ok());
  v1::GetCheckpointResponse cp;
  {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    ASSERT_TRUE(audit_->GetCheckpoint(&ctx, {}, &cp).ok());
  }
  std::unique_ptr<ledger::TrustedKey> key;
  ASSERT_TRUE(ledger::TrustedKey::Load(cp.verifier_key(), &key).ok());
  ASSERT_EQ(key->key().PublicRaw(), published->PublicRaw());
  int pages = 0;
  v1::EvidenceBundle bundle =
      FetchBundle(*audit_, regulator_, findings.findings(0).finding_id(), &pages);
  EXPECT_GT(pages, 1) << "no response exceeds the default 4 MiB message limit";
  EXPECT_GT(bundle.ByteSizeLong(), size_t{4} << 20) << "the whole would have";
  ledger::BundleReport r = ledger::VerifyBundle(bundle, *key);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GE(r.entries, 6000u);
}

// Runs the carewatch CLI; returns its exit code and output.
int RunCli(const std::string& args, std::string* out) {
  std::string cmd = std::string(CAREWATCH_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(ServerTest, VerifyMonitorAcceptsAGrowingLogAndAlertsOnASplitView) {
  StartDaemon();
  std::string vkey = dir_ + "/deployment.vkey";
  std::string state = dir_ + "/verify.state";
  std::string common = "verify --server " + daemon_->Address() + " --token " + regulator_ +
                       " --vkey " + vkey + " --state " + state;
  std::string out;
  ASSERT_EQ(RunCli(common, &out), 0) << out;
  EXPECT_NE(out.find("OK: checkpoint at size"), std::string::npos) << out;
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(Evaluate(platform_a_, Flaggable("w" + std::to_string(i), "svc-a")).ok());
  ASSERT_EQ(RunCli(common + " --watch 1s --rounds 2", &out), 0) << out;
  EXPECT_NE(out.find("signed and consistent with every one before"), std::string::npos) << out;
  // A verifier that once accepted another root for this size sees a split view.
  std::ifstream in(state);
  uint64_t size = 0;
  std::string root;
  in >> size >> root;
  in.close();
  root[0] = root[0] == 'a' ? 'b' : 'a';
  std::ofstream(state, std::ios::trunc) << size << " " << root << "\n";
  EXPECT_EQ(RunCli(common + " --watch 1s --rounds 1", &out), 1) << out;
  EXPECT_NE(out.find("ALERT: split view"), std::string::npos) << out;
  // A state file that is not one is an error, not a crash.
  std::ofstream(state, std::ios::trunc) << "garbage here\n";
  EXPECT_EQ(RunCli(common, &out), 1) << out;
  EXPECT_NE(out.find("expected 'SIZE HEXROOT'"), std::string::npos) << out;
  // An empty one (a write lost in a crash) is not a first run: starting
  // over would accept any log, a rolled-back one too.
  std::ofstream(state, std::ios::trunc).close();
  EXPECT_EQ(RunCli(common, &out), 1) << out;
  EXPECT_NE(out.find("is empty where it should hold 'SIZE HEXROOT'"), std::string::npos) << out;
  // A state that cannot be saved fails the check rather than report an OK
  // that the next run would not remember.
  std::filesystem::remove(state);
  std::filesystem::create_directories(state + ".tmp");  // where it is written first
  EXPECT_EQ(RunCli(common, &out), 1) << out;
  EXPECT_NE(out.find("FAIL: cannot write " + state + ".tmp"), std::string::npos) << out;
  EXPECT_EQ(out.find("OK: checkpoint"), std::string::npos) << out;
  std::filesystem::remove(state + ".tmp");
  ASSERT_EQ(RunCli(common, &out), 0) << out;
  std::ifstream saved(state);
  uint64_t saved_size = 0;
  saved >> saved_size;
  EXPECT_GE(saved_size, size) << "the state names the checkpoint accepted";
}

// A key rotation as an operator runs it: carewatchd stopped, `carewatch key
// rotate`, carewatchd started with the new key. A monitor that holds the
// old key alone alerts once checkpoints carry only the new key's
// signature; one holding both follows the log across, consistent with what
// it accepted before, and the findings' evidence still verifies.
TEST_F(ServerTest, AMonitorHoldingBothKeysFollowsAKeyRotation) {
  StartDaemon();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(Evaluate(platform_a_, Flaggable("k" + std::to_string(i), "svc-a")).ok());
  auto published = [&] {
    std::ifstream in(dir_ + "/deployment.vkey");
    std::string line;
    std::getline(in, line);
    return line;
  };
  const std::string old_vkey = published();
  const std::string state = dir_ + "/verify.state";
  auto monitor = [&](const std::string& vkey, std::string* out) {
    return RunCli("verify --server " + daemon_->Address() + " --token " + regulator_ + " --vkey '" +
                      vkey + "' --state " + state + " --watch 1s --rounds 1",
                  out);
  };
  std::string out;
  ASSERT_EQ(monitor(old_vkey, &out), 0) << out;
  daemon_->Kill(SIGTERM);

  ASSERT_EQ(RunCli("key rotate --ledger '" + ledger_url_ + "' --signing-key " + dir_ +
                       "/ledger.key --new-key " + dir_ + "/next.key --reason scheduled",
                   &out),
            0)
      << out;
  std::filesystem::rename(dir_ + "/ledger.key", dir_ + "/ledger.key.retired");
  std::filesystem::rename(dir_ + "/next.key", dir_ + "/ledger.key");
  StartDaemon();
  for (int i = 3; i < 6; ++i)
    ASSERT_TRUE(Evaluate(platform_a_, Flaggable("k" + std::to_string(i), "svc-a")).ok());
  const std::string new_vkey = published();
  ASSERT_NE(new_vkey, old_vkey) << "carewatchd publishes the key it signs with";
  ASSERT_NE(out.find("OK: the ledger is signed by " + new_vkey), std::string::npos) << out;

  // Wait for a checkpoint past the handover, signed by the new key alone.
  uint64_t size = 0;
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::GetCheckpointResponse cp;
    ASSERT_TRUE(audit_->GetCheckpoint(&ctx, {}, &cp).ok());
    std::unique_ptr<ledger::TrustedKey> old_key;
    ASSERT_TRUE(ledger::TrustedKey::Load(old_vkey, &old_key).ok());
    size = cp.checkpoint().tree_size();
    if (!old_key->VerifyCheckpoint(cp.checkpoint()).ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(monitor(old_vkey, &out), 1) << out;
  EXPECT_NE(out.find("ALERT: "), std::string::npos) << out;
  EXPECT_NE(out.find("not signed by the published key"), std::string::npos) << out;
  // ...and says what the server says: the handover, and to which key.
  EXPECT_NE(out.find("the server says the log's key was handed over at event"), std::string::npos)
      << out;
  EXPECT_NE(out.find(", scheduled) to " + new_vkey), std::string::npos) << out;
  {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::GetCheckpointResponse cp;
    ASSERT_TRUE(audit_->GetCheckpoint(&ctx, {}, &cp).ok());
    ASSERT_EQ(cp.key_rotations_size(), 1);
    EXPECT_EQ(cp.key_rotations(0).rotated().previous_verifier_key(), old_vkey);
    EXPECT_EQ(cp.key_rotations(0).rotated().verifier_key(), new_vkey);
    // The event it names is the log's, proved under a checkpoint of the old key.
    grpc::ClientContext pctx;
    Auth(&pctx, regulator_);
    v1::GetInclusionProofRequest preq;
    preq.set_seq(cp.key_rotations(0).seq());
    preq.set_tree_size(cp.key_rotations(0).seq());
    v1::GetInclusionProofResponse proof;
    ASSERT_TRUE(audit_->GetInclusionProof(&pctx, preq, &proof).ok());
    std::unique_ptr<ledger::TrustedKey> old_key;
    ASSERT_TRUE(ledger::TrustedKey::Load(old_vkey, &old_key).ok());
    EXPECT_TRUE(old_key->VerifyCheckpoint(proof.checkpoint()).ok());
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(proof.entry().event_bytes()));
    EXPECT_EQ(e.type(), v1::KEY_ROTATED);
  }
  ASSERT_EQ(monitor(old_vkey + "," + new_vkey, &out), 0) << out;
  EXPECT_NE(out.find("signed and consistent with every one before"), std::string::npos) << out;
  std::ifstream saved(state);
  uint64_t saved_size = 0;
  saved >> saved_size;
  EXPECT_GE(saved_size, size);
  // The whole check: the checkpoint and every finding's evidence.
  ASSERT_EQ(RunCli("verify --server " + daemon_->Address() + " --token " + regulator_ +
                       " --vkey '" + new_vkey + "'",
                   &out),
            0)
      << out;
  // The retired key does not open the ledger again.
  daemon_->Kill(SIGTERM);
  ASSERT_EQ(RunCli("key rotate --ledger '" + ledger_url_ + "' --signing-key " + dir_ +
                       "/ledger.key.retired --new-key " + dir_ + "/other.key",
                   &out),
            1)
      << out;
  EXPECT_NE(out.find("rotated out at event"), std::string::npos) << out;
}

TEST_F(ServerTest, ClaimsCannotBendTheRecord) {
  StartDaemon();
  uint64_t events = daemon_->LedgerEvents();
  // A received_at a year ahead, INT64_MAX seconds and bad nanos are refused,
  // naming the field; nothing is recorded.
  v1::ContentReport future = Flaggable("future", "svc-a", Now() + 365 * 86400);
  grpc::Status st = Evaluate(platform_a_, future);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("report.received_at:"), std::string::npos)
      << st.error_message();
  EXPECT_NE(st.error_message().find("max_clock_skew"), std::string::npos) << st.error_message();
  future.mutable_received_at()->set_seconds(INT64_MAX);
  EXPECT_EQ(Evaluate(platform_a_, future).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  future.mutable_received_at()->set_seconds(Now());
  future.mutable_received_at()->set_nanos(-5);
  st = Evaluate(platform_a_, future);
  EXPECT_NE(st.error_message().find("report.received_at.nanos"), std::string::npos)
      << st.error_message();
  // An action claiming the year 3000, for a report that does not exist.
  v1::RecordActionRequest action;
  action.set_service_id("svc-a");
  action.set_report_id("no-such-report");
  action.set_action("remove_content");
  action.mutable_taken_at()->set_seconds(32503680000);
  v1::RecordActionResponse ar;
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    st = moderation_->RecordAction(&ctx, action, &ar);
  }
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("taken_at: 3000-01-01T00:00:00Z is later than server time"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(daemon_->LedgerEvents(), events) << "nothing refused is recorded";

  // The same report id with other content is ALREADY_EXISTS naming the first.
  v1::EvaluateResponse first;
  v1::ContentReport r = Flaggable("dup", "svc-a");
  ASSERT_TRUE(Evaluate(platform_a_, r, &first).ok());
  v1::EvaluateResponse again;
  ASSERT_TRUE(Evaluate(platform_a_, r, &again).ok()) << "a retry of the same report";
  EXPECT_EQ(again.verdict().ledger_seq(), first.verdict().ledger_seq());
  r.set_text("other words entirely");
  st = Evaluate(platform_a_, r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(st.error_message().find("ledger seq " + std::to_string(first.verdict().ledger_seq())),
            std::string::npos)
      << st.error_message();

  // An acknowledged action names the seq that holds it.
  action.set_report_id("dup");
  action.mutable_taken_at()->set_seconds(Now());
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    ASSERT_TRUE(moderation_->RecordAction(&ctx, action, &ar).ok());
  }
  EXPECT_GT(ar.ledger_seq(), first.verdict().ledger_seq());

  // After a restart the sweeper runs (the readiness probe says so) and an
  // unflagged report is still recognised as a retry.
  v1::ContentReport quiet = Flaggable("quiet", "svc-a");
  quiet.clear_reporter_type();
  quiet.clear_reason();
  quiet.clear_content_type();
  quiet.set_text("an ordinary complaint about a post");
  v1::EvaluateResponse q;
  ASSERT_TRUE(Evaluate(platform_a_, quiet, &q).ok());
  ASSERT_EQ(q.verdict().flags_size(), 0);
  daemon_->Kill(SIGTERM);
  StartDaemon();
  ASSERT_TRUE(Evaluate(platform_a_, quiet).ok());
  quiet.set_text("a different complaint");
  st = Evaluate(platform_a_, quiet);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS) << st.error_message();
  EXPECT_NE(daemon_->Metrics().find("carewatch_sweep_errors_total 0"), std::string::npos);
}

TEST_F(ServerTest, SigtermUnderLoadLosesNoAcknowledgedReport) {
  StartDaemon();
  std::atomic<bool> stop{false};
  std::map<std::string, uint64_t> acked;
  std::thread load([&] { acked = LoadUntil(moderation_.get(), platform_a_, stop, "term-"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  int status = daemon_->Kill(SIGTERM);
  stop = true;
  load.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "graceful exit; log:\n"
                                                             << daemon_->Log();
  ASSERT_GT(acked.size(), 10u);
  ExpectAllInLedger(ledger_url_, acked);
}

TEST_F(ServerTest, SigkillUnderLoadThenRestartVerifies) {
  StartDaemon();
  std::atomic<bool> stop{false};
  std::map<std::string, uint64_t> acked;
  std::thread load([&] { acked = LoadUntil(moderation_.get(), platform_a_, stop, "kill-"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  daemon_->Kill(SIGKILL);
  stop = true;
  load.join();
  ASSERT_GT(acked.size(), 10u);
  ExpectAllInLedger(ledger_url_, acked);
  // It restarts on the same ledger, remembers the reports, and keeps serving.
  StartDaemon();
  v1::EvaluateResponse resp;
  const auto& [id, seq] = *acked.begin();
  // The retry is the same report: the same fields and the same received_at.
  v1::EvaluateRequest first;
  {
    std::unique_ptr<ledger::LedgerBackend> b;
    ASSERT_TRUE(ledger::OpenBackend(ledger_url_, true, &b).ok());
    std::vector<ledger::StoredEvent> rows;
    ASSERT_TRUE(b->ReadEvents(seq, 1, &rows).ok());
    ASSERT_EQ(rows.size(), 1u);
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(rows[0].payload));
    first = LoadRequest(id, e.report_flagged().received_at().seconds());
  }
  ASSERT_TRUE(Evaluate(platform_a_, first.report(), &resp).ok());
  EXPECT_EQ(resp.verdict().ledger_seq(), seq)
      << "a retry after the restart returns the first verdict";
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("after-restart", "svc-a")).ok());
}

// Three carewatchd on one ledger: one writes, two wait on standby. Clients
// spread their calls over all three and go to the next on failure, as behind
// a load balancer. The writer is SIGKILLed mid-load and, on PostgreSQL, the
// database server is stopped and started again mid-load: calls fail
// meanwhile, a standby takes over by itself, and afterwards every
// acknowledged report is in the ledger exactly once and the log verifies.
// A standby on a PostgreSQL ledger serves Moderation calls by queueing
// them for the writer; everything else is the writer's.
TEST_F(ServerTest, AQueueingReplicaServesModerationAndLeavesTheRestToTheWriter) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  StartDaemon();
  Daemon replica(dir_, ledger_url_, "q");
  replica.Launch(rules_, {"--standby"});
  ASSERT_TRUE(ServesAsAQueueingReplica(replica)) << replica.Log();
  ASSERT_TRUE(replica.Ready());
  auto channel = grpc::CreateChannel(replica.Address(), grpc::InsecureChannelCredentials());
  auto moderation = v1::Moderation::NewStub(channel);
  auto audit = v1::Audit::NewStub(channel);
  auto evaluate = [&](v1::Moderation::Stub* stub, const std::string& token,
                      const v1::ContentReport& r, v1::EvaluateResponse* resp) {
    v1::EvaluateRequest req;
    *req.mutable_report() = r;
    grpc::ClientContext ctx;
    Auth(&ctx, token);
    return stub->Evaluate(&ctx, req, resp);
  };

  // Evaluated on the replica, recorded by the writer.
  v1::ContentReport r = Flaggable("q-1", "svc-a");
  auto* li = r.add_linked_identifiers();
  li->set_kind("handle");
  li->set_value("otherapp:queued_account_1");
  v1::EvaluateResponse via_replica, via_writer;
  grpc::Status st = evaluate(moderation.get(), platform_a_, r, &via_replica);
  ASSERT_TRUE(st.ok()) << st.error_message() << "\n" << replica.Log();
  ASSERT_GT(via_replica.verdict().flags_size(), 0);
  ASSERT_GT(via_replica.verdict().obligations_size(), 0);
  EXPECT_GT(via_replica.verdict().ledger_seq(), 0u);
  // A retry to the writer gets the same verdict: one report, one record.
  ASSERT_TRUE(evaluate(moderation_.get(), platform_a_, r, &via_writer).ok());
  EXPECT_EQ(via_writer.verdict().ledger_seq(), via_replica.verdict().ledger_seq());
  EXPECT_EQ(via_writer.verdict().obligations(0).obligation_id(),
            via_replica.verdict().obligations(0).obligation_id());
  // The same id with other content, through the replica: refused.
  v1::ContentReport changed = r;
  changed.set_text("other words");
  EXPECT_EQ(evaluate(moderation.get(), platform_a_, changed, &via_replica).error_code(),
            StatusCode::ALREADY_EXISTS);
  // Tenancy and authentication hold on the replica as on the writer.
  EXPECT_EQ(evaluate(moderation.get(), platform_b_, r, &via_replica).error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(evaluate(moderation.get(), "", r, &via_replica).error_code(),
            StatusCode::UNAUTHENTICATED);
  // The linked identifier became a token (never the identifier) in the ledger.
  EXPECT_EQ(carewatch::testing::LedgerQuery(
                ledger_url_, "SELECT COUNT(*) FROM signal_tokens WHERE report_id = 'q-1'"),
            std::vector<std::string>{"1"});

  // An action through the replica.
  v1::RecordActionRequest a;
  a.set_service_id("svc-a");
  a.set_report_id("q-1");
  a.set_action("remove_content");
  a.mutable_taken_at()->set_seconds(Now());
  a.set_actor("mod-1");
  v1::RecordActionResponse ar;
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    st = moderation->RecordAction(&ctx, a, &ar);
  }
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GT(ar.ledger_seq(), via_writer.verdict().ledger_seq());
  ASSERT_GT(ar.obligations_size(), 0);
  EXPECT_GT(ar.obligations(0).actions_done_size(), 0);

  // A stream through the replica: every report answered with its seq.
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    auto stream = moderation->EvaluateStream(&ctx);
    for (int i = 0; i < 20; ++i) {
      v1::EvaluateRequest req;
      *req.mutable_report() = Flaggable("qs-" + std::to_string(i), "svc-a");
      ASSERT_TRUE(stream->Write(req));
    }
    stream->WritesDone();
    v1::EvaluateResponse resp;
    int answered = 0;
    while (stream->Read(&resp)) {
      EXPECT_TRUE(resp.error().empty()) << resp.error();
      EXPECT_GT(resp.verdict().ledger_seq(), 0u);
      ++answered;
    }
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(answered, 20);
  }

  // Audit is the writer's: UNAVAILABLE naming the method, after the role check.
  {
    v1::GetStatsRequest req;
    v1::GetStatsResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    st = audit->GetStats(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), StatusCode::UNAVAILABLE);
    EXPECT_NE(st.error_message().find("Audit/GetStats is answered by the writer"),
              std::string::npos)
        << st.error_message();
    grpc::ClientContext ctx2;
    Auth(&ctx2, platform_a_);
    EXPECT_EQ(audit->GetStats(&ctx2, req, &resp).error_code(), StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(carewatch::testing::LedgerQuery(ledger_url_, "SELECT COUNT(*) FROM unsequenced"),
            std::vector<std::string>{"0"})
      << "every command sequenced";

  // A replica whose rules differ from the writer's: its reports are refused
  // by the writer, nothing recorded.
  const std::string rules2 = dir_ + "/rules2";
  fs::copy(rules_, rules2, fs::copy_options::recursive);
  {
    std::ifstream in(rules2 + "/csea-baseline.yaml");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    size_t at = text.find("min_breaches: 5");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 15, "min_breaches: 6");
    std::ofstream(rules2 + "/csea-baseline.yaml", std::ios::trunc) << text;
  }
  Daemon stale(dir_, ledger_url_, "stale");
  stale.Launch(rules2, {"--standby"});
  for (int i = 0; i < 200 && stale.Log().find("queueing replica") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto stale_stub = v1::Moderation::NewStub(
      grpc::CreateChannel(stale.Address(), grpc::InsecureChannelCredentials()));
  v1::EvaluateResponse refused;
  st = evaluate(stale_stub.get(), platform_a_, Flaggable("q-stale", "svc-a"), &refused);
  EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("every replica must serve the same rules"), std::string::npos);
  EXPECT_EQ(carewatch::testing::LedgerQuery(
                ledger_url_, "SELECT COUNT(*) FROM report_index WHERE report_id = 'q-stale'"),
            std::vector<std::string>{"0"});
  if (HasFailure()) std::cerr << replica.Log() << stale.Log();
}

// The findings one process on its own would have reached from the commands
// a ledger accepted: its reports as recorded and its actions, fed in log
// order to one fresh engine (its own SQLite ledger in `dir`) on the server
// clock the log recorded.
std::vector<v1::Finding> SingleProcessFindings(const std::string& url, const std::string& rules,
                                               const std::string& dir) {
  std::vector<v1::Finding> out;
  std::unique_ptr<ledger::LedgerBackend> b;
  EXPECT_TRUE(ledger::OpenBackend(url, true, &b).ok());
  if (!b) return out;
  ledger::LedgerOptions lo;
  lo.url = "sqlite://" + dir + "/replay.db";
  lo.signing_key_path = dir + "/replay.key";
  std::unique_ptr<ledger::Ledger> l;
  EXPECT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  int64_t clock = 0;
  duty::DutyEngineOptions options;
  options.hmac_key = "replay";
  options.now = [&clock] { return clock; };
  duty::DutyEngine engine(l.get(), options);
  EXPECT_TRUE(engine.Recover().ok());
  rules::LoadResult loaded = rules::LoadRuleSet({rules});
  EXPECT_TRUE(loaded.ruleset);
  std::unique_ptr<eval::Evaluator> e;
  EXPECT_TRUE(eval::Evaluator::Create(loaded.ruleset, {}, &e).ok());
  EXPECT_TRUE(engine.Activate(std::move(e)).ok());
  for (uint64_t from = 1;;) {
    std::vector<ledger::StoredEvent> rows;
    EXPECT_TRUE(b->ReadEvents(from, 5000, &rows).ok());
    if (rows.empty()) break;
    for (const auto& row : rows) {
      v1::LedgerEvent ev;
      EXPECT_TRUE(ev.ParseFromString(row.payload));
      clock = std::max(clock, ev.recorded_at().seconds());
      if (ev.type() == v1::REPORT_FLAGGED) {
        v1::Verdict v;
        Status st = engine.SubmitPrepared(ev.report_flagged(), &v);
        EXPECT_TRUE(st.ok()) << st.message();
      } else if (ev.type() == v1::ACTION_RECORDED) {
        const auto& a = ev.action_recorded();
        std::vector<v1::Obligation> obs;
        Status st = engine.RecordAction({a.service_id(), a.report_id(), a.action(),
                                         a.taken_at().seconds(), a.actor(), a.taken_at().nanos()},
                                        &obs);
        EXPECT_TRUE(st.ok()) << st.message();
      }
    }
    from = rows.back().seq + 1;
  }
  EXPECT_TRUE(l->backend().QueryFindings({}, &out).ok());
  return out;
}

// While no writer takes queued commands, a queueing replica's queue stops
// at max_queued; the commands it took are sequenced once a writer comes.
TEST_F(ServerTest, AQueueWithoutAWriterIsCappedAndSequencedWhenOneComes) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  // This test holds the ledger (created, and its writer lock taken), and
  // writes nothing: calls queue and wait.
  std::unique_ptr<ledger::LedgerBackend> holder;
  ASSERT_TRUE(ledger::OpenBackend(ledger_url_, false, &holder).ok());
  Daemon replica(dir_, ledger_url_, "q");
  replica.Launch(rules_, {"--standby", "--max-queued", "3", "--queue-wait-ms", "300"});
  ASSERT_TRUE(ServesAsAQueueingReplica(replica)) << replica.Log();
  auto stub = v1::Moderation::NewStub(
      grpc::CreateChannel(replica.Address(), grpc::InsecureChannelCredentials()));
  const int64_t at = Now();  // a retry is the same report
  auto evaluate = [&](const std::string& id) {
    v1::EvaluateRequest req;
    *req.mutable_report() = Flaggable(id, "svc-a", at);
    v1::EvaluateResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    grpc::Status st = stub->Evaluate(&ctx, req, &resp);
    return std::make_pair(st, resp.verdict().ledger_seq());
  };
  for (int i = 0; i < 3; ++i) {
    auto [st, seq] = evaluate("cap-" + std::to_string(i));
    EXPECT_EQ(st.error_code(), StatusCode::UNAVAILABLE);
    EXPECT_NE(st.error_message().find("queued durably as command"), std::string::npos)
        << st.error_message();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the depth is read again
  auto [full, none] = evaluate("cap-3");
  EXPECT_EQ(full.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("max_queued 3"), std::string::npos) << full.error_message();
  EXPECT_EQ(carewatch::testing::LedgerQuery(ledger_url_, "SELECT COUNT(*) FROM unsequenced"),
            std::vector<std::string>{"3"});
  // An operator sees the queue grow while no writer takes it.
  EXPECT_NE(replica.Metrics().find("\ncarewatch_queue_depth 3\n"), std::string::npos)
      << replica.Metrics();
  // The holder goes: the replica takes over and sequences what it queued;
  // a retry gets the verdict of the command queued first.
  holder.reset();
  for (int i = 0; i < 100 && replica.Log().find("took over") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(replica.Log().find("took over the ledger"), std::string::npos) << replica.Log();
  for (int i = 0; i < 3; ++i) {
    auto [st, seq] = evaluate("cap-" + std::to_string(i));
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_GT(seq, 0u);
  }
  EXPECT_EQ(carewatch::testing::LedgerQuery(ledger_url_, "SELECT COUNT(*) FROM unsequenced"),
            std::vector<std::string>{"0"});
  // Now the writer, it shows the queue it sequences.
  EXPECT_NE(replica.Metrics().find("\ncarewatch_queue_depth 0\n"), std::string::npos)
      << replica.Metrics();
  if (HasFailure()) std::cerr << replica.Log();
}

// A stream's reports in flight on a queueing replica wait for the writer's
// answers together: with no writer, each is answered UNAVAILABLE (queued
// durably, a retry is safe) once its own queue_wait_ms has passed, not
// after the waits of every report before it on the stream.
TEST_F(ServerTest, ReportsStreamedThroughAQueueingReplicaWaitForTheWriterTogether) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  std::unique_ptr<ledger::LedgerBackend> holder;  // no writer: every report waits
  ASSERT_TRUE(ledger::OpenBackend(ledger_url_, false, &holder).ok());
  Daemon replica(dir_, ledger_url_, "q");
  constexpr int kWaitMs = 1500;
  replica.Launch(rules_, {"--standby", "--queue-wait-ms", std::to_string(kWaitMs)});
  ASSERT_TRUE(ServesAsAQueueingReplica(replica)) << replica.Log();
  auto stub = v1::Moderation::NewStub(
      grpc::CreateChannel(replica.Address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  Auth(&ctx, platform_a_);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto stream = stub->EvaluateStream(&ctx);
  constexpr int kReports = 16;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kReports; ++i) {
    v1::EvaluateRequest req;
    *req.mutable_report() = Flaggable("together-" + std::to_string(i), "svc-a");
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  std::set<std::string> ids;
  v1::EvaluateResponse resp;
  while (stream->Read(&resp)) {
    EXPECT_NE(resp.error().find("queued durably as command"), std::string::npos) << resp.error();
    ids.insert(resp.verdict().report_id());
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kReports));
  // One wait after another would take kReports x kWaitMs (24 s).
  EXPECT_LT(took, std::chrono::milliseconds(kWaitMs * kReports / 2))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_EQ(carewatch::testing::LedgerQuery(ledger_url_, "SELECT COUNT(*) FROM unsequenced"),
            std::vector<std::string>{std::to_string(kReports)});
  if (HasFailure()) std::cerr << replica.Log();
}

// On a queueing replica too, one platform's calls cannot fill the calls
// waiting for the writer's answer: of max_waiting_calls (128 here) a service
// holds at most its share (50%: 64); its next calls are refused while
// another service's are still admitted, and nothing stays counted once the
// waits end.
TEST_F(ServerTest, CallsWaitingOnAQueueingReplicaAreSharedBetweenCallers) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  std::unique_ptr<ledger::LedgerBackend> holder;  // no writer: every call waits
  ASSERT_TRUE(ledger::OpenBackend(ledger_url_, false, &holder).ok());
  Daemon replica(dir_, ledger_url_, "q");
  replica.Launch(rules_, {"--standby", "--queue-wait-ms", "4000", "--max-waiting-calls", "128"});
  ASSERT_TRUE(ServesAsAQueueingReplica(replica)) << replica.Log();
  auto stub = v1::Moderation::NewStub(
      grpc::CreateChannel(replica.Address(), grpc::InsecureChannelCredentials()));
  auto a = std::make_unique<AsyncEvaluations>(stub.get(), platform_a_, "a-", 100);
  for (int i = 0; i < 200 && a->answered() < 36; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::string message;
  EXPECT_EQ(a->WithCode(StatusCode::RESOURCE_EXHAUSTED, nullptr, &message), 36);
  EXPECT_NE(message.find("service svc-a holds its share of max_waiting_calls"), std::string::npos)
      << message;
  auto b = std::make_unique<AsyncEvaluations>(stub.get(), platform_b_, "b-", 10, 0, "svc-b");
  EXPECT_TRUE(replica.AwaitMetric("carewatch_waiting_calls", 74)) << replica.Metrics();
  EXPECT_EQ(b->answered(), 0) << "svc-b's calls are admitted and wait";
  EXPECT_EQ(a->answered(), 36) << "svc-a's 64 admitted wait";
  // The waits end (the calls were queued durably; a retry is safe), and
  // then nothing is counted: svc-a's share is whole again.
  ASSERT_TRUE(a->WaitAll());
  ASSERT_TRUE(b->WaitAll());
  EXPECT_EQ(a->WithCode(StatusCode::UNAVAILABLE), 64);
  EXPECT_EQ(b->WithCode(StatusCode::UNAVAILABLE), 10);
  EXPECT_NE(replica.Metrics().find("\ncarewatch_waiting_calls 0\n"), std::string::npos)
      << replica.Metrics();
  AsyncEvaluations again(stub.get(), platform_a_, "a-again-", 64);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(again.answered(), 0) << "svc-a's 64 are admitted again";
  ASSERT_TRUE(again.WaitAll());
  EXPECT_EQ(again.WithCode(StatusCode::UNAVAILABLE), 64);
  if (HasFailure()) std::cerr << replica.Log();
}

// A queueing replica's unary Evaluate and RecordAction calls hold no thread
// while they wait for the writer's answer: with the writer's ledger locked,
// 300 calls wait on the replica (more than the 128 it once allowed, one
// thread each) with hardly a thread more, none is answered before the
// writer has made it durable, and each is answered with its verdict once
// the lock goes; then 150 actions on the flagged ones, the same way.
TEST_F(ServerTest, UnaryCallsWaitingOnAQueueingReplicaHoldNoThreadEach) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  StartDaemon();
  Daemon replica(dir_, ledger_url_, "q");
  replica.Launch(rules_, {"--standby", "--queue-wait-ms", "30000", "--max-waiting-calls", "400",
                          "--max-share-per-caller", "100"});
  ASSERT_TRUE(ServesAsAQueueingReplica(replica)) << replica.Log();
  auto stub = v1::Moderation::NewStub(
      grpc::CreateChannel(replica.Address(), grpc::InsecureChannelCredentials()));
  {
    AsyncEvaluations warm(stub.get(), platform_a_, "warm-", 8);
    ASSERT_TRUE(warm.WaitAll());
    ASSERT_EQ(warm.WithCode(StatusCode::OK), 8);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // One thread commits what the calls queue, one reads the answers.
  const std::multiset<std::string> names = ThreadNamesOf(replica.Pid());
  EXPECT_EQ(names.count("cw-queue-push"), 1u);
  EXPECT_EQ(names.count("cw-answers"), 1u);
  const int before = ThreadsOf(replica.Pid());
  ASSERT_GT(before, 0);
  constexpr int kCalls = 300;
  std::unique_ptr<AsyncEvaluations> calls;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    calls = std::make_unique<AsyncEvaluations>(stub.get(), platform_a_, "held-", kCalls);
    EXPECT_TRUE(replica.AwaitMetric("carewatch_waiting_calls", kCalls)) << replica.Metrics();
    const int during = ThreadsOf(replica.Pid());
    EXPECT_LE(during - before, 16) << "threads went from " << before << " to " << during;
    EXPECT_EQ(calls->answered(), 0) << "nothing is answered before the writer has it durably";
    // Queued and not yet sequenced, a report's id with other content is
    // refused at once, by the queue.
    const std::vector<std::string> all_queued{std::to_string(kCalls)};
    for (int i = 0; i < 200 && carewatch::testing::LedgerQuery(
                                   ledger_url_, "SELECT COUNT(*) FROM unsequenced") != all_queued;
         ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    v1::EvaluateRequest changed;
    *changed.mutable_report() = Flaggable("held-0", "svc-a");
    changed.mutable_report()->set_text("other words");
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + platform_a_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::EvaluateResponse refused;
    grpc::Status st = stub->Evaluate(&ctx, changed, &refused);
    EXPECT_EQ(st.error_code(), StatusCode::ALREADY_EXISTS) << st.error_message();
    EXPECT_NE(st.error_message().find("already submitted with other content (queued as command "),
              std::string::npos)
        << st.error_message();
  }
  ASSERT_TRUE(calls->WaitAll()) << calls->answered() << " of " << kCalls << " answered";
  int flagged = 0;
  std::string message;
  EXPECT_EQ(calls->WithCode(StatusCode::OK, &flagged, &message), kCalls) << message;
  EXPECT_EQ(flagged, kCalls / 2);
  EXPECT_NE(replica.Metrics().find("\ncarewatch_waiting_calls 0\n"), std::string::npos)
      << replica.Metrics();

  // Actions on the flagged reports wait the same way.
  struct Action {
    grpc::ClientContext ctx;
    v1::RecordActionRequest req;
    v1::RecordActionResponse resp;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Action>> actions;
  std::mutex mu;
  std::condition_variable cv;
  int acted = 0;
  {
    carewatch::testing::WriteLockHolder lock(ledger_url_);
    for (int i = 0; i < kCalls; i += 2) {
      auto a = std::make_unique<Action>();
      a->ctx.AddMetadata("authorization", "Bearer " + platform_a_);
      a->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      a->req.set_service_id("svc-a");
      a->req.set_report_id("held-" + std::to_string(i));
      a->req.set_action("remove_content");
      a->req.mutable_taken_at()->set_seconds(Now());
      Action* raw = a.get();
      stub->async()->RecordAction(&raw->ctx, &raw->req, &raw->resp, [&, raw](grpc::Status st) {
        std::lock_guard<std::mutex> l(mu);
        raw->status = std::move(st);
        ++acted;
        cv.notify_all();
      });
      actions.push_back(std::move(a));
    }
    EXPECT_TRUE(replica.AwaitMetric("carewatch_waiting_calls", kCalls / 2)) << replica.Metrics();
    const int during = ThreadsOf(replica.Pid());
    EXPECT_LE(during - before, 16) << "threads went from " << before << " to " << during;
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(acted, 0) << "no action is answered before the writer has it durably";
  }
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(60), [&] { return acted == kCalls / 2; }))
        << acted << " of " << kCalls / 2 << " actions answered";
  }
  for (const auto& a : actions) {
    EXPECT_TRUE(a->status.ok()) << a->req.report_id() << ": " << a->status.error_message();
    EXPECT_GT(a->resp.ledger_seq(), 0u) << a->req.report_id();
    EXPECT_EQ(a->resp.obligations_size(), 1) << a->req.report_id();
  }
  if (HasFailure()) std::cerr << replica.Log();
}

TEST_F(ServerTest, ReplicasOnOneLedgerFailOverAndLoseNothing) {
  std::vector<std::unique_ptr<Daemon>> replicas;
  for (int i = 0; i < 3; ++i) {
    replicas.push_back(std::make_unique<Daemon>(dir_, ledger_url_, "r" + std::to_string(i)));
  }
  replicas[0]->Start(rules_);
  ASSERT_TRUE(replicas[0]->Ready());
  replicas[1]->Launch(rules_, {"--standby"});
  replicas[2]->Launch(rules_, {"--standby"});
  // Both say they wait (a start first waits up to two seconds for a lock
  // that a just-ended session may still hold). On PostgreSQL they serve
  // Moderation calls meanwhile, queueing them for the writer.
  const bool queueing = carewatch::testing::OnPostgres();
  const std::string waiting = queueing ? "serving as a queueing replica" : "standby: waiting";
  for (int i = 0; i < 200; ++i) {
    if (replicas[1]->Log().find(waiting) != std::string::npos &&
        replicas[2]->Log().find(waiting) != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(replicas[1]->Log().find(waiting), std::string::npos) << replicas[1]->Log();
  EXPECT_NE(replicas[2]->Log().find(waiting), std::string::npos) << replicas[2]->Log();
  if (queueing) {
    EXPECT_TRUE(replicas[1]->Ready()) << "a queueing replica serves while another writes";
    EXPECT_TRUE(replicas[2]->Ready());
  } else {
    EXPECT_FALSE(replicas[1]->Ready()) << "a standby serves nothing while another writes";
    EXPECT_FALSE(replicas[2]->Ready());
  }

  std::vector<std::string> addresses;
  for (auto& r : replicas) addresses.push_back(r->Address());
  std::atomic<bool> stop{false};
  std::atomic<int> phase{0};  // 0: first writer, 1: after the kill, 2: after the database
  std::mutex mu;
  std::map<std::string, uint64_t> acked;
  std::map<int, int> acked_in_phase;
  std::map<size_t, int> acked_by;  // replica -> reports it acknowledged
  std::set<std::string> acted;
  // Each load thread keeps a channel per replica and makes it again after a
  // failure, as a client behind a load balancer would reach whichever
  // replica serves (a channel that failed waits out gRPC's reconnect backoff).
  using Stubs = std::vector<std::unique_ptr<v1::Moderation::Stub>>;
  // It starts with the replica that answered it last.
  // Queueing replicas take calls too: a client then goes round them all.
  auto call = [&](Stubs& stubs, size_t& start, auto&& rpc) {
    if (stubs.empty()) stubs.resize(addresses.size());
    for (size_t k = 0; k < addresses.size(); ++k) {
      const size_t r = (start + k) % addresses.size();
      if (!stubs[r]) {
        // Reconnect backoff lowered, as docs/operations.md advises clients of
        // replicas: gRPC's default waits a second and more before it tries a
        // replica that failed again.
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
        args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
        args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
        stubs[r] = v1::Moderation::NewStub(
            grpc::CreateCustomChannel(addresses[r], grpc::InsecureChannelCredentials(), args));
      }
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", "Bearer " + platform_a_);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      if (rpc(*stubs[r], &ctx).ok()) {
        start = queueing ? r + 1 : r;
        return true;
      }
      stubs[r].reset();
    }
    return false;
  };
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&, t] {
      Stubs stubs;
      size_t last = static_cast<size_t>(t);
      for (int i = 0; !stop; ++i) {
        // One report, retried unchanged until it is acknowledged.
        // Received two days ago: every action on it is late, so breaches
        // and findings happen while the replicas change over.
        v1::EvaluateRequest req =
            LoadRequest("rep-" + std::to_string(t) + "-" + std::to_string(i), Now() - 2 * 86400);
        v1::EvaluateResponse resp;
        bool ok = false;
        while (!ok && !stop) {
          ok = call(stubs, last, [&](v1::Moderation::Stub& s, grpc::ClientContext* c) {
            return s.Evaluate(c, req, &resp);
          });
          if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!ok) break;
        {
          std::lock_guard<std::mutex> lock(mu);
          acked[req.report().report_id()] = resp.verdict().ledger_seq();
          ++acked_in_phase[phase.load()];
          ++acked_by[(last + addresses.size() - (queueing ? 1 : 0)) % addresses.size()];
        }
        if (i % 2 == 0) {
          // An action on the report, through any replica.
          v1::RecordActionRequest a;
          a.set_service_id("svc-a");
          a.set_report_id(req.report().report_id());
          a.set_action("remove_content");
          a.mutable_taken_at()->set_seconds(Now());
          a.set_actor("mod-1");
          v1::RecordActionResponse ar;
          if (call(stubs, last, [&](v1::Moderation::Stub& s, grpc::ClientContext* c) {
                return s.RecordAction(c, a, &ar);
              })) {
            std::lock_guard<std::mutex> lock(mu);
            acted.insert(req.report().report_id());
          }
        }
      }
    });
  }
  auto wait_for_writer = [&](int seconds) -> int {
    for (int i = 0; i < seconds * 10; ++i) {
      for (size_t k = 0; k < replicas.size(); ++k) {
        if (replicas[k]->Pid() <= 0) continue;
        if (queueing ? replicas[k]->Log().find("took over the ledger") != std::string::npos
                     : replicas[k]->Ready())
          return static_cast<int>(k);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  replicas[0]->Kill(SIGKILL);
  phase = 1;
  int writer = wait_for_writer(20);
  ASSERT_GT(writer, 0) << "a standby takes over when the writer dies";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  if (carewatch::testing::OnPostgres()) {
    const std::string server = std::string(CAREWATCH_SOURCE_DIR) + "/scripts/pg-test-server.sh ";
    const char* pg_dir = std::getenv("CAREWATCH_TEST_PG_DIR");
    ASSERT_NE(pg_dir, nullptr);
    ASSERT_EQ(std::system((server + "stop " + pg_dir).c_str()), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ASSERT_EQ(std::system((server + "restart " + pg_dir).c_str()), 0);
    phase = 2;
    // The service resumes by itself: a reconnecting writer, or the other
    // standby if it took the lock first.
    std::map<std::string, uint64_t>::size_type before;
    {
      std::lock_guard<std::mutex> lock(mu);
      before = acked.size();
    }
    bool resumed = false;
    for (int i = 0; i < 300 && !resumed; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard<std::mutex> lock(mu);
      resumed = acked.size() > before + 10;
    }
    EXPECT_TRUE(resumed) << "reports are acknowledged again after the database restarts";
    for (size_t k = 1; k < replicas.size(); ++k) {
      EXPECT_TRUE(replicas[k]->Running())
          << "replica " << k << " outlives the database's restart (a standby waits it out)";
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  stop = true;
  for (auto& th : load) th.join();
  for (auto& r : replicas) r->Kill(SIGTERM);
  std::cout << "acknowledged: " << acked_in_phase[0] << " by the first writer, "
            << acked_in_phase[1] << " after it was killed, " << acked_in_phase[2]
            << " after the database restarted\n";
  EXPECT_GT(acked_in_phase[0], 10);
  EXPECT_GT(acked_in_phase[1], 10) << "the standby served after the kill";
  if (carewatch::testing::OnPostgres()) {
    EXPECT_GT(acked_in_phase[2], 10);
    std::cout << "acknowledged by replica: " << acked_by[0] << ", " << acked_by[1] << ", "
              << acked_by[2] << "\n";
    // The load was spread: every replica acknowledged reports.
    for (size_t k = 0; k < replicas.size(); ++k) EXPECT_GT(acked_by[k], 10) << "replica " << k;
  }
  ExpectAllInLedger(ledger_url_, acked);
  // Exactly once: every report's REPORT_FLAGGED appears once in the log,
  // and every acknowledged action was recorded.
  std::unique_ptr<ledger::LedgerBackend> b;
  ASSERT_TRUE(ledger::OpenBackend(ledger_url_, true, &b).ok());
  std::map<std::string, int> flagged, opened, breached, findings_opened;
  std::set<std::string> actions;
  for (uint64_t from = 1;;) {
    std::vector<ledger::StoredEvent> rows;
    ASSERT_TRUE(b->ReadEvents(from, 5000, &rows).ok());
    if (rows.empty()) break;
    for (const auto& row : rows) {
      v1::LedgerEvent e;
      ASSERT_TRUE(e.ParseFromString(row.payload));
      if (e.type() == v1::REPORT_FLAGGED) ++flagged[e.report_flagged().report_id()];
      if (e.type() == v1::ACTION_RECORDED) actions.insert(e.action_recorded().report_id());
      if (e.type() == v1::OBLIGATION_OPENED)
        ++opened[e.obligation_opened().obligation().obligation_id()];
      if (e.type() == v1::DUTY_BREACHED) ++breached[e.breach().obligation_id()];
      if (e.type() == v1::FINDING_OPENED) ++findings_opened[e.finding().finding_id()];
    }
    from = rows.back().seq + 1;
  }
  // Duty state changed once: no obligation opened or breached twice, no
  // finding opened twice, whichever replica was writing.
  for (const auto& [id, n] : opened) EXPECT_EQ(n, 1) << "obligation " << id << " opened " << n;
  for (const auto& [id, n] : breached) EXPECT_EQ(n, 1) << "obligation " << id << " breached " << n;
  for (const auto& [id, n] : findings_opened) EXPECT_EQ(n, 1) << "finding " << id;
  EXPECT_FALSE(breached.empty()) << "late actions were breaches";
  for (const auto& [id, seq] : acked) EXPECT_EQ(flagged[id], 1) << id;
  for (const auto& [id, n] : flagged) EXPECT_EQ(n, 1) << id << " is in the log " << n << " times";
  for (const auto& id : acted) EXPECT_TRUE(actions.count(id)) << "acknowledged action on " << id;
  // The findings equal those of one process that never failed over,
  // replaying the commands the log accepted.
  std::vector<v1::Finding> live;
  ASSERT_TRUE(b->QueryFindings({}, &live).ok());
  std::vector<v1::Finding> replayed = SingleProcessFindings(ledger_url_, rules_, dir_);
  EXPECT_FALSE(live.empty()) << "late actions opened findings";
  ASSERT_EQ(live.size(), replayed.size());
  for (size_t k = 0; k < live.size(); ++k) {
    EXPECT_EQ(live[k].finding_id(), replayed[k].finding_id());
    EXPECT_EQ(live[k].status(), replayed[k].status());
    EXPECT_EQ(live[k].breaches(), replayed[k].breaches()) << live[k].finding_id();
    EXPECT_EQ(ledger::SerializeDeterministic(live[k]), ledger::SerializeDeterministic(replayed[k]))
        << live[k].DebugString() << "\nreplayed:\n"
        << replayed[k].DebugString();
  }
  if (HasFailure()) {
    for (auto& r : replicas) std::cerr << r->LogPath() << ":\n" << r->Log();
  }
}

}  // namespace
}  // namespace carewatch

namespace carewatch {
namespace {

int RunQuiet(const std::string& cmd) { return std::system((cmd + " > /dev/null 2>&1").c_str()); }

TEST_F(ServerTest, TlsAndMutualTls) {
  // A CA, a server certificate for 127.0.0.1 and a client certificate.
  std::string d = dir_;
  ASSERT_EQ(
      RunQuiet("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
               "-subj /CN=test-ca -keyout " +
               d + "/ca.key -out " + d + "/ca.crt"),
      0);
  ASSERT_EQ(
      RunQuiet(
          "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost "
          "-keyout " +
          d + "/srv.key -out " + d + "/srv.csr"),
      0);
  std::ofstream(d + "/san.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  ASSERT_EQ(
      RunQuiet("openssl x509 -req -in " + d + "/srv.csr -CA " + d + "/ca.crt -CAkey " + d +
               "/ca.key -CAcreateserial -days 2 -extfile " + d + "/san.ext -out " + d + "/srv.crt"),
      0);
  ASSERT_EQ(
      RunQuiet(
          "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=client "
          "-keyout " +
          d + "/cli.key -out " + d + "/cli.csr"),
      0);
  ASSERT_EQ(RunQuiet("openssl x509 -req -in " + d + "/cli.csr -CA " + d + "/ca.crt -CAkey " + d +
                     "/ca.key -CAcreateserial -days 2 -out " + d + "/cli.crt"),
            0);
  auto read = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  daemon_->Start(rules_, {"--tls-cert", d + "/srv.crt", "--tls-key", d + "/srv.key",
                          "--tls-client-ca", d + "/ca.crt"});
  auto evaluate = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = v1::Moderation::NewStub(grpc::CreateChannel(daemon_->Address(), creds));
    grpc::ClientContext ctx;
    // Bounds a hang only: a loaded machine may take seconds for a handshake.
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    Auth(&ctx, platform_a_);
    v1::EvaluateRequest req;
    *req.mutable_report() =
        Flaggable("tls-" + std::to_string(Now()) + std::to_string(rand()), "svc-a");
    v1::EvaluateResponse resp;
    return stub->Evaluate(&ctx, req, &resp);
  };
  grpc::SslCredentialsOptions with_cert;
  with_cert.pem_root_certs = read(d + "/ca.crt");
  with_cert.pem_private_key = read(d + "/cli.key");
  with_cert.pem_cert_chain = read(d + "/cli.crt");
  EXPECT_TRUE(evaluate(grpc::SslCredentials(with_cert)).ok()) << "mTLS client with a certificate";
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = read(d + "/ca.crt");
  EXPECT_FALSE(evaluate(grpc::SslCredentials(no_cert)).ok())
      << "mTLS refuses a client without a certificate";
  EXPECT_FALSE(evaluate(grpc::InsecureChannelCredentials()).ok()) << "plaintext is refused";
}

// /readyz waits for the first deadline sweep: until it has run, nothing
// overdue since the last stop has been marked, and a caller told "ready"
// would read open obligations that are past their deadlines. The sweeper
// is held at its first reading of the clock until the test has seen 503.
TEST_F(ServerTest, ReadinessWaitsForTheFirstDeadlineSweep) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  const int metrics_port = FreePort();
  server::ServerConfig config = InProcessConfig(metrics_port);
  config.clock = [&] {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    if (std::string(name) == "cw-sweeper") {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return release; });
    }
    return Now();
  };
  auto let_go = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      release = true;
    }
    cv.notify_all();
  };
  server::Server server(config);
  // Declared after the server, so destroyed before it: a failed assertion
  // still lets the sweeper go, and the server's stop does not wait forever.
  std::shared_ptr<void> guard(nullptr, [&](void*) { let_go(); });
  ASSERT_TRUE(server.Start().ok());
  httplib::Client http("127.0.0.1", metrics_port);
  auto res = http.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("first deadline sweep"), std::string::npos) << res->body;
  let_go();
  bool ready = false;
  for (int i = 0; i < 500 && !ready; ++i) {
    res = http.Get("/readyz");
    ready = res && res->status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(ready) << (res ? res->body : "no answer");
  server.Shutdown(1000);
}

// The sweeper's errors are never ignored: with the server's clock stepped
// back, /readyz fails and the error is counted, until the clock catches up.
TEST_F(ServerTest, AFailingSweeperMakesTheServiceNotReady) {
  std::atomic<int64_t> now{Now()};
  const int metrics_port = FreePort();
  server::ServerConfig config = InProcessConfig(metrics_port);
  config.clock = [&now] { return now.load(); };
  server::Server server(config);
  ASSERT_TRUE(server.Start().ok());
  httplib::Client http("127.0.0.1", metrics_port);
  auto ready = [&](std::string* body) {
    auto res = http.Get("/readyz");
    if (body) *body = res ? res->body : "";
    return res && res->status == 200;
  };
  auto wait_for = [&](bool want, std::string* body) {
    for (int i = 0; i < 500; ++i) {
      if (ready(body) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  std::string body;
  ASSERT_TRUE(wait_for(true, &body)) << body;
  now -= 3600;  // the server clock steps back an hour
  ASSERT_TRUE(wait_for(false, &body)) << "readyz stays ready while no deadline is enforced";
  EXPECT_NE(body.find("sweeper: server clock went backwards"), std::string::npos) << body;
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->body.find("carewatch_sweep_errors_total 0\n"), std::string::npos)
      << "the failures are counted";
  now += 7200;
  EXPECT_TRUE(wait_for(true, &body)) << "ready again once a sweep succeeds: " << body;
  server.Shutdown(1000);
}

// docs/operations.md's list of metrics is the one operators read: every
// metric carewatchd serves is in it, and every one in it is served (the
// PostgreSQL-only queue depth aside, on this SQLite ledger).
TEST_F(ServerTest, EveryMetricServedIsDocumentedAndEveryDocumentedOneIsServed) {
  StartDaemon();
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("metric-1", "svc-a")).ok());
  std::ifstream in(std::string(CAREWATCH_SOURCE_DIR) + "/docs/operations.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const size_t from = doc.find("## Metrics");
  ASSERT_NE(from, std::string::npos);
  const std::string section = doc.substr(from, doc.find("\n## ", from + 1) - from);
  std::set<std::string> documented, served;
  const std::regex name("carewatch_[a-z_]+");
  for (std::sregex_iterator it(section.begin(), section.end(), name), end; it != end; ++it)
    documented.insert(it->str());
  const std::string metrics = daemon_->Metrics();
  const std::regex type_line("# TYPE (carewatch_[a-z_]+) ");
  for (std::sregex_iterator it(metrics.begin(), metrics.end(), type_line), end; it != end; ++it)
    served.insert((*it)[1].str());
  ASSERT_FALSE(served.empty()) << metrics;
  for (const std::string& m : served) EXPECT_TRUE(documented.count(m)) << m << " is not documented";
  documented.erase("carewatch_queue_depth");
  for (const std::string& m : documented) EXPECT_TRUE(served.count(m)) << m << " is not served";
}

TEST_F(ServerTest, OneProcessPerLedgerAndPortAndNoReadOnlySurprises) {
  StartDaemon();
  auto run = [&](const std::string& args) { return RunCarewatchd(args); };
  const std::string common = "--rules " + rules_ + " --tokens " + dir_ +
                             "/tokens.yaml --metrics '' --cache-dir " + dir_ + "/cache";
  // A second carewatchd on the same ledger stops at once and names the first.
  auto [rc1, out1] = run(common + " --listen 127.0.0.1:0 --ledger sqlite://" + dir_ + "/ledger.db");
  EXPECT_NE(rc1, 0);
  EXPECT_NE(out1.find("is in use by another process (pid " + std::to_string(daemon_->Pid()) + ")"),
            std::string::npos)
      << out1;
  // On the same port (another ledger) it cannot listen: no SO_REUSEPORT.
  auto [rc2, out2] = run(common + " --listen 127.0.0.1:" + std::to_string(daemon_->Port()) +
                         " --ledger sqlite://" + dir_ + "/other.db");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out2.find("cannot listen on 127.0.0.1:" + std::to_string(daemon_->Port())),
            std::string::npos)
      << out2;
  // The first is unharmed.
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("still-one", "svc-a")).ok());
  // Its files are its owner's alone, whatever the umask.
  struct stat st {};
  for (const char* f : {"/ledger.db", "/ledger.key", "/hmac.key"}) {
    ASSERT_EQ(::stat((dir_ + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  daemon_->Kill(SIGTERM);
  // A read-only ledger file is refused at start, not at the first write.
  // Root writes whatever the mode says, so as root the file is made
  // immutable instead (ext4's chattr +i).
  const std::string ledger = dir_ + "/ledger.db";
  const bool root = ::geteuid() == 0;
  bool protected_file = root ? std::system(("chattr +i " + ledger + " 2>/dev/null").c_str()) == 0
                             : ::chmod(ledger.c_str(), 0400) == 0;
  if (!protected_file) {
    std::cout << "note: cannot make the ledger read-only here (chattr); that case is not run\n";
    return;
  }
  // A carewatchd that started after all is stopped (124), and fails the test.
  auto [rc3, out3] =
      RunCarewatchd("--listen 127.0.0.1:0 --ledger sqlite://" + ledger + " " + common, 20);
  if (root)
    std::system(("chattr -i " + ledger).c_str());
  else
    ::chmod(ledger.c_str(), 0600);
  EXPECT_NE(rc3, 0);
  EXPECT_NE(rc3, 124) << "carewatchd started on a read-only ledger";
  EXPECT_NE(out3.find("is read-only (file permissions)"), std::string::npos) << out3;
}

TEST_F(ServerTest, PostedRuleSetsCompileOneAtATime) {
  StartDaemon();
  // A pack slow enough to compile that eight calls released together
  // overlap: one compiles, the others are told to come back.
  std::string pack = SlowPack();
  v1::RulePackSet set;
  auto* f = set.add_files();
  f->set_path("big.yaml");
  f->set_content(pack);
  std::latch go(8);
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto stub = v1::Rules::NewStub(channel_);
      grpc::ClientContext ctx;
      Auth(&ctx, author_);
      v1::ValidateResponse resp;
      go.arrive_and_wait();
      grpc::Status st = stub->Validate(&ctx, set, &resp);
      if (st.ok() && resp.ok())
        ++ok;
      else if (st.error_code() == StatusCode::RESOURCE_EXHAUSTED &&
               st.error_message().find("another rule set is being compiled") != std::string::npos)
        ++busy;
      else
        ++other;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(busy.load(), 1) << "eight compiles at once were all let through";
  EXPECT_EQ(other.load(), 0);
  // Bounded lists: too many posted files, too many reports to dry-run.
  v1::RulePackSet many;
  for (int i = 0; i < 65; ++i) many.add_files()->set_path("f" + std::to_string(i) + ".yaml");
  grpc::ClientContext ctx;
  Auth(&ctx, author_);
  v1::ValidateResponse resp;
  grpc::Status st = rules_stub_->Validate(&ctx, many, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("files: 65 exceeds the limit of 64"), std::string::npos);
  v1::DryRunRequest dry;
  for (int i = 0; i < 1001; ++i) *dry.add_reports() = Flaggable("d" + std::to_string(i), "svc-a");
  grpc::ClientContext dctx;
  Auth(&dctx, author_);
  v1::DryRunResponse dresp;
  st = rules_stub_->DryRun(&dctx, dry, &dresp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("reports: 1001 exceeds the limit of 1000"), std::string::npos);
}

TEST_F(ServerTest, TheBenchmarkServiceIsOffUnlessAskedFor) {
  StartDaemon();
  auto noop = v1::Noop::NewStub(channel_);
  auto call = [&] {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::EvaluateRequest req;
    v1::EvaluateResponse resp;
    return noop->Evaluate(&ctx, req, &resp);
  };
  EXPECT_EQ(call().error_code(), StatusCode::UNIMPLEMENTED);
  daemon_->Kill(SIGTERM);
  daemon_->Start(rules_, {"--noop-service"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  noop = v1::Noop::NewStub(channel_);
  EXPECT_TRUE(call().ok()) << "--noop-service serves it, for benchmarks";
}

TEST(TokenStore, ALineCannotGrantItselfARoleAndRepeatedKeysAreRefused) {
  using namespace carewatch::server;
  std::string dir = ::testing::TempDir() + "/cw-tokens-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  // What `carewatch token new --principal "mallory, role: admin" --role
  // platform` prints: the name stays one value, the role stays platform.
  std::string token = NewToken();
  std::string line = TokenLine(token, "mallory, role: admin", Role::kPlatform, "svc-a");
  std::ofstream(dir + "/t.yaml") << "tokens:\n" << line << "\n";
  TokenStore store;
  ASSERT_TRUE(TokenStore::Load(dir + "/t.yaml", &store).ok()) << line;
  Principal p;
  ASSERT_TRUE(store.Authenticate("Bearer " + token, &p).ok());
  EXPECT_EQ(p.role, Role::kPlatform);
  EXPECT_EQ(p.name, "mallory, role: admin");
  EXPECT_EQ(p.service_id, "svc-a");
  // A hand-written line with a repeated key is refused, naming it.
  std::ofstream(dir + "/dup.yaml") << "tokens:\n  - {sha256: " << std::string(64, 'a')
                                   << ", principal: m, role: admin, role: platform, "
                                      "service_id: svc-a}\n";
  Status s = TokenStore::Load(dir + "/dup.yaml", &store);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("key 'role' is given twice"), std::string::npos) << s.message();
  std::filesystem::remove_all(dir);
}

TEST_F(ServerTest, BadSettingsStopTheStartWithAMessage) {
  auto run = [&](const std::string& args) { return RunCarewatchd(args); };
  auto [rc1, out1] = run("--listen nonsense --rules " + rules_ + " --tokens " + dir_ +
                         "/tokens.yaml --ledger sqlite://" + dir_ + "/l.db --metrics ''");
  EXPECT_NE(rc1, 0);
  EXPECT_NE(out1.find("listen: 'nonsense' is not HOST:PORT"), std::string::npos) << out1;
  auto [rc2, out2] =
      run("--rules " + dir_ + "/missing --tokens " + dir_ + "/tokens.yaml --metrics ''");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out2.find("rules: " + dir_ + "/missing does not exist"), std::string::npos) << out2;
  // A path the system refuses to look up (longer than a name may be) is an
  // error naming it, not an exception that ends the process.
  const std::string long_path = dir_ + "/" + std::string(5000, 'x');
  auto [rc_long, out_long] = run("--rules " + rules_ + " --tokens " + long_path + " --metrics ''");
  EXPECT_EQ(rc_long, 1) << out_long;
  EXPECT_NE(out_long.find("tokens: " + long_path + " cannot be checked (File name too long)"),
            std::string::npos)
      << out_long;
  std::ofstream(dir_ + "/bad.yaml") << "listen: 127.0.0.1:1\nworkerz: 4\n";
  auto [rc3, out3] = run("--config " + dir_ + "/bad.yaml");
  EXPECT_NE(rc3, 0);
  EXPECT_NE(out3.find(dir_ + "/bad.yaml:2:1: unknown setting 'workerz'"), std::string::npos)
      << out3;
  std::ofstream(dir_ + "/badtokens.yaml")
      << "tokens:\n  - {sha256: abc, principal: x, role: platform}\n";
  auto [rc4, out4] = run("--rules " + rules_ + " --tokens " + dir_ +
                         "/badtokens.yaml --ledger sqlite://" + dir_ + "/l.db --metrics ''");
  EXPECT_NE(rc4, 0);
  EXPECT_NE(out4.find("sha256 must be 64 lower-case hex digits"), std::string::npos) << out4;
  std::string base = "--rules " + rules_ + " --tokens " + dir_ + "/tokens.yaml --ledger sqlite://" +
                     dir_ + "/o.db --metrics '' --listen 127.0.0.1:0";
  auto [rc5, out5] = run(base + " --max-clock-skew soon");
  EXPECT_EQ(rc5, 2);
  EXPECT_NE(out5.find("--max-clock-skew: bad duration 'soon'"), std::string::npos) << out5;
  auto [rc6, out6] = run(base + " --max-clock-skew 2d");
  EXPECT_NE(rc6, 0);
  EXPECT_NE(out6.find("max_clock_skew: must be between 0s and 1d"), std::string::npos) << out6;
  // Plaintext on an address that is not loopback: tokens would cross the
  // network in clear.
  // The settings added for hostile clients take only what they mean.
  auto [rc_streams, out_streams] = run(base + " --max-streams 0");
  EXPECT_NE(rc_streams, 0);
  EXPECT_NE(out_streams.find("max_streams: must be between 1 and 4096"), std::string::npos)
      << out_streams;
  auto [rc_waiting, out_waiting] = run(base + " --max-waiting-calls 0");
  EXPECT_NE(rc_waiting, 0);
  EXPECT_NE(out_waiting.find("max_waiting_calls: must be between 1 and 1000000"), std::string::npos)
      << out_waiting;
  auto [rc_bytes, out_bytes] = run(base + " --max-waiting-bytes 1000");
  EXPECT_NE(rc_bytes, 0);
  EXPECT_NE(out_bytes.find("max_waiting_bytes: must be between max_message_bytes"),
            std::string::npos)
      << out_bytes;
  auto [rc_share, out_share] = run(base + " --max-share-per-caller 0");
  EXPECT_NE(rc_share, 0);
  EXPECT_NE(out_share.find("max_share_per_caller: must be between 1 and 100 (percent)"),
            std::string::npos)
      << out_share;
  auto [rc_queued, out_queued] = run(base + " --max-queued 0");
  EXPECT_NE(rc_queued, 0);
  EXPECT_NE(out_queued.find("max_queued: must be between 1 and 100000000"), std::string::npos)
      << out_queued;
  auto [rc_wait, out_wait] = run(base + " --queue-wait-ms 5");
  EXPECT_NE(rc_wait, 0);
  EXPECT_NE(out_wait.find("queue_wait_ms: must be between 100 and 600000"), std::string::npos)
      << out_wait;
  std::ofstream(dir_ + "/flags.yaml") << "insecure_plaintext: maybe\n";
  auto [rc_flag, out_flag] = run("--config " + dir_ + "/flags.yaml");
  EXPECT_NE(rc_flag, 0);
  EXPECT_NE(
      out_flag.find(dir_ + "/flags.yaml:1:21: insecure_plaintext: 'maybe' is not true or false"),
      std::string::npos)
      << out_flag;
  auto [rc_open, out_open] = run(base.substr(0, base.find(" --listen")) + " --listen 0.0.0.0:0");
  EXPECT_NE(rc_open, 0);
  EXPECT_NE(out_open.find("listen: 0.0.0.0:0 is not a loopback address and TLS is off"),
            std::string::npos)
      << out_open;
  auto [rc7, out7] = run(base + " --origin 'two words'");
  EXPECT_NE(rc7, 0);
  EXPECT_NE(out7.find("origin 'two words': must be non-empty, without spaces or '+'"),
            std::string::npos)
      << out7;
  // retention: a duration within [1d, 3660d], and no shorter than any
  // systemic window of the rules (the shipped packs have 30d and 90d).
  auto with_retention = [&](const std::string& value) {
    std::ofstream(dir_ + "/ret.yaml") << "listen: 127.0.0.1:0\nrules: [" << rules_
                                      << "]\ntokens: " << dir_ << "/tokens.yaml\nledger: sqlite://"
                                      << dir_ << "/r.db\nmetrics: ''\nretention: " << value << "\n";
    return run("--config " + dir_ + "/ret.yaml");
  };
  auto [rc8, out8] = with_retention("forever");
  EXPECT_NE(rc8, 0);
  EXPECT_NE(out8.find("retention: bad duration 'forever'"), std::string::npos) << out8;
  auto [rc9, out9] = with_retention("12h");
  EXPECT_NE(rc9, 0);
  EXPECT_NE(out9.find("retention: must be between 1d and 3660d"), std::string::npos) << out9;
  auto [rc10, out10] = with_retention("30d");
  EXPECT_NE(rc10, 0);
  EXPECT_NE(out10.find("systemic window 90d is longer than retention 30d"), std::string::npos)
      << out10;
}

}  // namespace
}  // namespace carewatch

namespace carewatch {
namespace {

// Every RPC in the proto has an access rule, and every rule names an RPC
// carewatchd serves: a new method cannot be served without one.
// docs/signals.md: three services; two hold the same account under
// different spellings, one through the blinded path and one as a flagged
// report's linked identifier. Alerts reach exactly those two, the third
// learns nothing, an ignored alert is breached, a withdrawal discharges the
// other side, quotas hold, and no identifier reaches the database or the log.
TEST_F(ServerTest, SignalsLinkAccountsAcrossServicesWithoutSharingIdentifiers) {
  const std::string platform_c = server::NewToken();
  std::ofstream(dir_ + "/tokens.yaml", std::ios::app)
      << server::TokenLine(platform_c, "tns-c", server::Role::kPlatform, "svc-c") << "\n";
  // The review duty's deadline shortened so the test can watch it pass.
  {
    std::ifstream in(rules_ + "/csea-grooming.yaml");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string pack = ss.str();
    const std::string from = "deadline: 48h\n    actions: [review_linked_account]";
    ASSERT_NE(pack.find(from), std::string::npos);
    pack.replace(pack.find(from), from.size(),
                 "deadline: 8s\n    record_grace: 0s\n    actions: [review_linked_account]");
    std::ofstream(rules_ + "/csea-grooming.yaml", std::ios::trunc) << pack;
  }
  daemon_->Start(rules_, {"--signals-daily-quota", "4"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  audit_ = v1::Audit::NewStub(channel_);
  signals_ = v1::Signals::NewStub(channel_);

  // Synthetic identifiers (example.test; a drama-range phone number).
  const std::string kHandleA = "OtherApp:@Alice_Example", kHandleB = "otherapp:alice_example";
  const std::string kEmailB = "Bob.Example@Example.test", kEmailC = "bob.example@example.TEST";

  // svc-a: the blinded path; carewatchd never sees the handle.
  std::vector<std::string> tokens;
  int64_t remaining = 0;
  Status fs = signals::FetchTokens(signals_.get(), platform_a_, "svc-a", {{"handle", kHandleA}},
                                   &tokens, &remaining);
  ASSERT_TRUE(fs.ok()) << fs.message();
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(remaining, 3);
  auto submit = [&](const std::string& bearer, const std::string& service,
                    const std::string& report, const std::string& kind, const std::string& token,
                    v1::SubmitSignalsResponse* resp) {
    v1::SubmitSignalsRequest req;
    req.set_service_id(service);
    req.set_report_id(report);
    auto* sig = req.add_signals();
    sig->set_kind(kind);
    sig->set_token(token);
    sig->set_category("csea.grooming-response");
    grpc::ClientContext ctx;
    Auth(&ctx, bearer);
    return signals_->SubmitSignals(&ctx, req, resp);
  };
  v1::SubmitSignalsResponse sa;
  ASSERT_TRUE(submit(platform_a_, "svc-a", "a-1", "handle", tokens[0], &sa).ok());
  EXPECT_EQ(sa.alerts_size(), 0) << "one service alone links nothing";

  // svc-c: an unrelated account.
  std::vector<std::string> unrelated;
  ASSERT_TRUE(signals::FetchTokens(signals_.get(), platform_c, "svc-c",
                                   {{"phone", "+44 7700 900123"}}, &unrelated)
                  .ok());
  v1::SubmitSignalsResponse sc;
  ASSERT_TRUE(submit(platform_c, "svc-c", "c-1", "phone", unrelated[0], &sc).ok());

  // svc-b: the same handle, named by a flagged report.
  v1::ContentReport rb = Flaggable("b-1", "svc-b");
  auto* li = rb.add_linked_identifiers();
  li->set_kind("handle");
  li->set_value(kHandleB);
  v1::EvaluateResponse eb;
  grpc::Status st = Evaluate(platform_b_, rb, &eb);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_GT(eb.verdict().flags_size(), 0);

  auto list = [&](const std::string& bearer, const std::string& service) {
    v1::ListAlertsRequest req;
    req.set_service_id(service);
    v1::ListAlertsResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, bearer);
    EXPECT_TRUE(signals_->ListAlerts(&ctx, req, &resp).ok());
    return std::vector<v1::LinkageAlert>(resp.alerts().begin(), resp.alerts().end());
  };
  // Exactly the two services are alerted, each with its own reports only.
  auto alerts_a = list(platform_a_, "svc-a");
  auto alerts_b = list(platform_b_, "svc-b");
  ASSERT_EQ(alerts_a.size(), 1u);
  ASSERT_EQ(alerts_b.size(), 1u);
  EXPECT_EQ(
      std::vector<std::string>(alerts_a[0].report_ids().begin(), alerts_a[0].report_ids().end()),
      std::vector<std::string>{"a-1"});
  EXPECT_EQ(
      std::vector<std::string>(alerts_b[0].report_ids().begin(), alerts_b[0].report_ids().end()),
      std::vector<std::string>{"b-1"});
  EXPECT_EQ(alerts_a[0].other_services(), 1);
  EXPECT_EQ(alerts_a[0].other_service_ids_size(), 0) << "nobody opted in to being named";
  EXPECT_EQ(alerts_a[0].token_kind(), "handle");
  EXPECT_NE(alerts_a[0].alert_id(), alerts_b[0].alert_id());
  EXPECT_TRUE(list(platform_c, "svc-c").empty()) << "the third service learns nothing";
  // Another service's alert is not the caller's to list or answer.
  {
    v1::ListAlertsRequest req;
    req.set_service_id("svc-a");
    v1::ListAlertsResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, platform_c);
    EXPECT_EQ(signals_->ListAlerts(&ctx, req, &resp).error_code(), StatusCode::PERMISSION_DENIED);
    v1::LinkFeedbackRequest fr;
    fr.set_service_id("svc-c");
    fr.set_alert_id(alerts_a[0].alert_id());
    fr.set_opinion("confirmed");
    v1::LinkFeedbackResponse fresp;
    grpc::ClientContext ctx2;
    Auth(&ctx2, platform_c);
    EXPECT_EQ(signals_->RecordLinkFeedback(&ctx2, fr, &fresp).error_code(), StatusCode::NOT_FOUND);
  }
  // Subscribe delivers the same alert from cursor 0.
  {
    grpc::ClientContext ctx;
    Auth(&ctx, platform_a_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::SubscribeAlertsRequest req;
    req.set_service_id("svc-a");
    auto reader = signals_->Subscribe(&ctx, req);
    v1::LinkageAlert got;
    ASSERT_TRUE(reader->Read(&got));
    EXPECT_EQ(got.alert_id(), alerts_a[0].alert_id());
    ctx.TryCancel();
  }
  // svc-b reviews its alert: the review obligation is met.
  {
    v1::LinkFeedbackRequest fr;
    fr.set_service_id("svc-b");
    fr.set_alert_id(alerts_b[0].alert_id());
    fr.set_opinion("confirmed");
    fr.set_actor("mod-7");
    v1::LinkFeedbackResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, platform_b_);
    st = signals_->RecordLinkFeedback(&ctx, fr, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.obligations_size(), 1);
    EXPECT_EQ(resp.obligations(0).duty_id(), "csea.cross-platform-review");
    EXPECT_EQ(resp.obligations(0).status(), v1::OBLIGATION_STATUS_MET);
    EXPECT_EQ(resp.alert().feedback(), "confirmed");
  }

  // A second link, svc-b and svc-c by email; svc-b withdraws (an appeal
  // upheld): svc-c's alert is withdrawn and its obligation discharged.
  std::vector<std::string> eb_tok, ec_tok;
  ASSERT_TRUE(
      signals::FetchTokens(signals_.get(), platform_b_, "svc-b", {{"email", kEmailB}}, &eb_tok)
          .ok());
  ASSERT_TRUE(
      signals::FetchTokens(signals_.get(), platform_c, "svc-c", {{"email", kEmailC}}, &ec_tok)
          .ok());
  EXPECT_EQ(eb_tok[0], ec_tok[0]) << "one canonical form, one token, whoever asks";
  v1::SubmitSignalsResponse sb2, sc2;
  ASSERT_TRUE(submit(platform_b_, "svc-b", "b-2", "email", eb_tok[0], &sb2).ok());
  ASSERT_TRUE(submit(platform_c, "svc-c", "c-2", "email", ec_tok[0], &sc2).ok());
  ASSERT_EQ(sc2.alerts_size(), 1) << "the submission that completes a link alerts its caller";
  const std::string c_alert = sc2.alerts(0).alert_id();
  {
    v1::WithdrawSignalsRequest wr;
    wr.set_service_id("svc-b");
    wr.set_report_id("b-2");
    v1::WithdrawSignalsResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, platform_b_);
    st = signals_->WithdrawSignals(&ctx, wr, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.signals_withdrawn(), 1);
    EXPECT_EQ(resp.own_alerts_withdrawn(), 1);
  }
  auto alerts_c = list(platform_c, "svc-c");
  ASSERT_EQ(alerts_c.size(), 1u);
  EXPECT_EQ(alerts_c[0].alert_id(), c_alert);
  EXPECT_EQ(alerts_c[0].status(), "withdrawn");
  {
    // The review obligation was discharged: a late review changes nothing.
    v1::RecordActionRequest ar;
    ar.set_service_id("svc-c");
    ar.set_report_id(alerts_c[0].review_report_id());
    ar.set_action("review_linked_account");
    ar.mutable_taken_at()->set_seconds(Now());
    v1::RecordActionResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, platform_c);
    ASSERT_TRUE(moderation_->RecordAction(&ctx, ar, &resp).ok());
    ASSERT_EQ(resp.obligations_size(), 1);
    EXPECT_EQ(resp.obligations(0).status(), v1::OBLIGATION_STATUS_DISCHARGED);
    // A platform cannot discharge its own review by claiming a withdrawal.
    ar.set_action("link_withdrawn");
    grpc::ClientContext ctx2;
    Auth(&ctx2, platform_c);
    EXPECT_EQ(moderation_->RecordAction(&ctx2, ar, &resp).error_code(),
              StatusCode::INVALID_ARGUMENT);
  }

  // A rule's `extract:` leaf names a handle in a report's text: the server
  // turns it into a token, and the same handle from svc-a links the two.
  {
    v1::ContentReport rc = Flaggable("c-3", "svc-c");
    rc.set_surface("direct_message");
    rc.set_subject_age_band("13_to_15");
    rc.set_text("my snap is @Dana_Example see you there");
    v1::EvaluateResponse ec;
    st = Evaluate(platform_c, rc, &ec);
    ASSERT_TRUE(st.ok()) << st.error_message();
    std::vector<std::string> snap;
    ASSERT_TRUE(signals::FetchTokens(signals_.get(), platform_a_, "svc-a",
                                     {{"handle", "snapchat:dana_example"}}, &snap)
                    .ok());
    v1::SubmitSignalsResponse sa3;
    ASSERT_TRUE(submit(platform_a_, "svc-a", "a-3", "handle", snap[0], &sa3).ok());
    ASSERT_EQ(sa3.alerts_size(), 1) << "the extracted handle links svc-a and svc-c";
    EXPECT_EQ(sa3.alerts(0).other_services(), 1);
    // Both review it at once (this test waits for one breach only).
    for (const auto& [bearer, service] : {std::make_pair(platform_a_, std::string("svc-a")),
                                          std::make_pair(platform_c, std::string("svc-c"))}) {
      auto mine = list(bearer, service);
      ASSERT_FALSE(mine.empty());
      v1::LinkFeedbackRequest fr;
      fr.set_service_id(service);
      fr.set_alert_id(mine.back().alert_id());
      fr.set_opinion("disputed");
      v1::LinkFeedbackResponse resp;
      grpc::ClientContext ctx;
      Auth(&ctx, bearer);
      ASSERT_TRUE(signals_->RecordLinkFeedback(&ctx, fr, &resp).ok());
      EXPECT_EQ(std::vector<std::string>(mine.back().report_ids().begin(),
                                         mine.back().report_ids().end()),
                std::vector<std::string>{service == "svc-a" ? "a-3" : "c-3"});
    }
  }

  // Quotas: svc-c has had 2 of its 4 elements today.
  {
    std::vector<std::string> more;
    Status q = signals::FetchTokens(
        signals_.get(), platform_c, "svc-c",
        {{"email", "x1@example.test"}, {"email", "x2@example.test"}, {"email", "x3@example.test"}},
        &more);
    EXPECT_EQ(q.code(), Status::Code::kResourceExhausted) << q.message();
    EXPECT_TRUE(signals::FetchTokens(signals_.get(), platform_c, "svc-c",
                                     {{"email", "x1@example.test"}, {"email", "x2@example.test"}},
                                     &more, &remaining)
                    .ok());
    EXPECT_EQ(remaining, 0);
  }

  // svc-a ignores its alert: breached after the (shortened) deadline.
  v1::ListBreachesResponse breaches;
  for (int i = 0; i < 150; ++i) {
    v1::ListBreachesRequest br;
    br.set_duty_id("csea.cross-platform-review");
    breaches.Clear();
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    ASSERT_TRUE(audit_->ListBreaches(&ctx, br, &breaches).ok());
    if (breaches.breaches_size() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(breaches.breaches_size(), 1);
  EXPECT_EQ(breaches.breaches(0).service_id(), "svc-a");
  EXPECT_EQ(breaches.breaches(0).report_id(), alerts_a[0].review_report_id());

  // The regulator sees aggregates: per service and category, no tokens.
  {
    v1::GetLinkageStatsRequest req;
    v1::GetLinkageStatsResponse resp;
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    ASSERT_TRUE(audit_->GetLinkageStats(&ctx, req, &resp).ok());
    // Every alert here carries svc-a's and svc-c's category; svc-b's report
    // adds its own flag's duty to the first link.
    std::map<std::string, v1::LinkageStatsRow> by_service;
    std::set<std::string> categories;
    for (const auto& r : resp.rows()) {
      categories.insert(r.category());
      if (r.category() == "csea.grooming-response") by_service[r.service_id()] = r;
    }
    EXPECT_GE(categories.size(), 2u);
    ASSERT_EQ(by_service.size(), 3u);
    EXPECT_EQ(by_service["svc-a"].alerts(), 2);
    EXPECT_EQ(by_service["svc-a"].breaches(), 1);
    EXPECT_EQ(by_service["svc-a"].reviewed(), 1);
    EXPECT_EQ(by_service["svc-b"].alerts(), 2);
    EXPECT_EQ(by_service["svc-b"].reviewed(), 1);
    EXPECT_EQ(by_service["svc-b"].withdrawn(), 1);
    EXPECT_EQ(by_service["svc-c"].withdrawn(), 1);
    EXPECT_EQ(by_service["svc-a"].category(), "csea.grooming-response");
  }

  // No identifier, in any spelling, in the database files or the log.
  daemon_->Kill(SIGTERM);
  std::string stored = carewatch::testing::LedgerDump(ledger_url_);
  {
    std::ifstream in(dir_ + "/carewatchd.log", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    stored += ss.str();
  }
  ASSERT_GT(stored.size(), 10000u);
  for (const std::string& raw :
       {kHandleA, kHandleB, std::string("alice_example"), std::string("Alice_Example"),
        std::string("ana_Example"), std::string("ana_example"), kEmailB, kEmailC,
        std::string("bob.example"), std::string("7700900123"), std::string("x1@example.test")}) {
    EXPECT_EQ(stored.find(raw), std::string::npos) << raw << " was stored";
  }
}

TEST(RequestPath, EveryMethodHasAnAccessRuleAndEveryRuleAMethod) {
  std::set<std::string> served;
  for (const auto* svc : {v1::Moderation::service_full_name(), v1::Audit::service_full_name(),
                          v1::Rules::service_full_name(), v1::Noop::service_full_name(),
                          v1::Signals::service_full_name()}) {
    const auto* d = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(svc);
    ASSERT_NE(d, nullptr) << svc;
    for (int i = 0; i < d->method_count(); ++i) {
      std::string path = "/" + d->full_name() + "/" + d->method(i)->name();
      served.insert(path);
      const server::MethodPolicy* p = server::FindPolicy(path);
      ASSERT_NE(p, nullptr) << path << " has no access rule";
      EXPECT_NE(p->access, server::Access::kPublic) << path << " would need no token";
      EXPECT_EQ(std::string(p->name), d->name() + "/" + d->method(i)->name());
    }
  }
  for (const auto& p : server::MethodPolicies()) {
    std::string path(p.path);
    if (path.rfind("/carewatch.", 0) == 0) {
      EXPECT_TRUE(served.count(path)) << path;
    }
  }
  EXPECT_EQ(server::FindPolicy("/carewatch.v1.Moderation/Nothing"), nullptr);
}

// Each setting is a config key and a flag, read by the same code: setting
// it either way gives the same configuration.
TEST(Settings, EverySettingIsAConfigKeyAndAFlagWithTheSameMeaning) {
  std::string dir = ::testing::TempDir() + "/cw-settings-" + std::to_string(::getpid());
  fs::create_directories(dir);
  std::set<std::string> flags;
  for (const auto& s : server::Settings()) {
    using K = server::Setting::Kind;
    std::string value = s.kind == K::kBool       ? "true"
                        : s.kind == K::kDuration ? "7h"
                        : s.kind == K::kInt      ? "17"
                        : s.kind == K::kInt64    ? "12345"
                                                 : "some/value:1";
    EXPECT_TRUE(flags.insert(s.Flag()).second) << s.Flag() << " twice";
    server::ServerConfig from_file, from_flag, defaults;
    std::ofstream(dir + "/c.yaml") << s.key << ": \"" << value << "\"\n";
    carewatch::Status st = server::LoadConfigFile(dir + "/c.yaml", &from_file);
    ASSERT_TRUE(st.ok()) << s.key << ": " << st.message();
    std::vector<std::string> args = {"carewatchd", s.Flag()};
    if (s.kind != K::kBool) args.push_back(value);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    int exit_code = -1;
    ASSERT_TRUE(server::ParseCommandLine(static_cast<int>(argv.size()), argv.data(), &from_flag,
                                         &exit_code))
        << s.Flag();
    // Compare through the setting's own field.
    std::visit(
        [&](auto field) {
          EXPECT_EQ(from_file.*field, from_flag.*field) << s.key;
          EXPECT_NE(from_file.*field, defaults.*field) << s.key << " was not set";
        },
        s.field);
  }
  // A value of the wrong kind names the setting either way.
  std::ofstream(dir + "/c.yaml") << "max_urls: many\n";
  server::ServerConfig c;
  carewatch::Status st = server::LoadConfigFile(dir + "/c.yaml", &c);
  EXPECT_NE(st.message().find("c.yaml:1:11: max_urls: 'many' is not a whole number"),
            std::string::npos)
      << st.message();
  std::ofstream(dir + "/c.yaml") << "max_urls: 99999999999999999999\n";
  st = server::LoadConfigFile(dir + "/c.yaml", &c);
  EXPECT_NE(st.message().find("out of range"), std::string::npos) << st.message();
  std::ofstream(dir + "/c.yaml") << "workers: 2\nworkers: 3\n";
  st = server::LoadConfigFile(dir + "/c.yaml", &c);
  EXPECT_NE(st.message().find("'workers' is given twice"), std::string::npos) << st.message();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace carewatch

namespace carewatch {
namespace {

// The token and the role are checked when a call's headers arrive, before
// its message is read: a body over max_message_bytes from a caller without
// a valid token is refused as unauthenticated (not read up to the limit),
// one from a caller of the wrong role as not permitted.
TEST_F(ServerTest, TokensAndRolesAreCheckedBeforeTheBodyIsRead) {
  daemon_->Start(rules_, {"--max-message-bytes", "65536"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  v1::ContentReport big = Flaggable("big", "svc-a");
  big.set_text(std::string(1 << 20, 'x'));
  grpc::Status st = Evaluate("", big);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED) << st.error_message();
  st = Evaluate("not-a-token", big);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED) << st.error_message();
  st = Evaluate(regulator_, big);
  EXPECT_EQ(st.error_code(), StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("role regulator may not call Moderation/Evaluate"),
            std::string::npos)
      << st.error_message();
  // Only a caller allowed to send it meets the size limit.
  st = Evaluate(platform_a_, big);
  EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  // A method carewatchd does not serve, with or without a token.
  grpc::GenericStub generic(channel_);
  for (const std::string& token : {std::string(), platform_a_}) {
    grpc::ClientContext ctx;
    Auth(&ctx, token);
    grpc::Slice empty("");
    grpc::ByteBuffer req(&empty, 1), resp;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::StubOptions options;
    generic.UnaryCall(&ctx, "/carewatch.v1.Moderation/Made" + std::to_string(done), options, &req,
                      &resp, [&](grpc::Status s) {
                        std::lock_guard<std::mutex> lock(mu);
                        st = s;
                        done = true;
                        cv.notify_all();
                      });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    EXPECT_EQ(st.error_code(), StatusCode::UNIMPLEMENTED);
  }
  // Refusals at the gate are counted under the method (made-up paths under
  // "unknown", so they cannot grow the metrics); the handler never ran.
  std::string m = daemon_->Metrics();
  EXPECT_NE(m.find("method=\"Moderation/Evaluate\",code=\"UNAUTHENTICATED\"} 2"), std::string::npos)
      << m;
  EXPECT_NE(m.find("method=\"unknown\",code=\"UNIMPLEMENTED\"} 2"), std::string::npos) << m;
  EXPECT_EQ(m.find("Made"), std::string::npos);
  // Calls the gate lets through are served as before.
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("ok", "svc-a")).ok());
}

// Audit requests are capped like reports: ids, page sizes, tokens and the
// period name each refused with the field and the limit.
TEST_F(ServerTest, AuditRequestsAreCappedAndStatsArePaged) {
  StartDaemon();
  auto breaches = [&](const v1::ListBreachesRequest& req) {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::ListBreachesResponse resp;
    return audit_->ListBreaches(&ctx, req, &resp);
  };
  v1::ListBreachesRequest lb;
  lb.set_service_id(std::string(100000, 's'));
  grpc::Status st = breaches(lb);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("service_id: 100000 bytes exceeds the limit of 256"),
            std::string::npos)
      << st.error_message();
  lb.Clear();
  lb.set_page_size(5000);
  st = breaches(lb);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("page_size"), std::string::npos) << st.error_message();
  lb.Clear();
  lb.set_page_token("12 34");
  st = breaches(lb);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT) << st.error_message();
  {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::GetStatsRequest req;
    req.set_period("fortnight");
    v1::GetStatsResponse resp;
    st = audit_->GetStats(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("period: must be month, quarter, year"), std::string::npos);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::GetEvidenceRequest req;
    req.set_finding_id(std::string(300, 'f'));
    v1::GetEvidenceResponse resp;
    st = audit_->GetEvidence(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("finding_id: 300 bytes"), std::string::npos);
  }
  // Reports across five months; stats one period a page give what one call
  // gives, the services on the first page only.
  const int64_t month = 31 * 86400;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        Evaluate(platform_a_, Flaggable("p" + std::to_string(i), "svc-a", Now() - i * month)).ok());
  }
  auto stats = [&](int page_size, const std::string& token, v1::GetStatsResponse* resp) {
    grpc::ClientContext ctx;
    Auth(&ctx, regulator_);
    v1::GetStatsRequest req;
    req.set_page_size(page_size);
    req.set_page_token(token);
    return audit_->GetStats(&ctx, req, resp);
  };
  v1::GetStatsResponse all;
  ASSERT_TRUE(stats(0, "", &all).ok());
  ASSERT_GE(all.periods_size(), 5);
  EXPECT_TRUE(all.next_page_token().empty());
  EXPECT_EQ(all.services_size(), 1);
  EXPECT_EQ(all.services_total(), 1);
  v1::GetStatsResponse paged;
  std::string token;
  int pages = 0;
  do {
    v1::GetStatsResponse page;
    ASSERT_TRUE(stats(1, token, &page).ok());
    EXPECT_LE(page.periods_size(), 1);
    if (pages > 0) {
      EXPECT_EQ(page.services_size(), 0);
    }
    for (const auto& p : page.periods()) *paged.add_periods() = p;
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 100);
  EXPECT_EQ(pages, all.periods_size());
  ASSERT_EQ(paged.periods_size(), all.periods_size());
  for (int i = 0; i < all.periods_size(); ++i) {
    EXPECT_EQ(paged.periods(i).SerializeAsString(), all.periods(i).SerializeAsString());
  }
}

// One compile at a time, but a caller who waits for each answer is never
// told to come back: the slot is free before the answer is sent.
TEST_F(ServerTest, PostedCompilesOneAfterAnotherAreEachServed) {
  StartDaemon();
  v1::RulePackSet set;
  set.add_files()->set_path("small.yaml");
  set.mutable_files(0)->set_content(
      "pack: small\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24h, actions: "
      "[remove_content]}\nrules:\n  - {id: r, duty: d, severity: low, when: {field: text, "
      "phrases: [hello]}}\n");
  for (int i = 0; i < 30; ++i) {
    grpc::ClientContext ctx;
    Auth(&ctx, author_);
    v1::ValidateResponse resp;
    grpc::Status st = rules_stub_->Validate(&ctx, set, &resp);
    ASSERT_TRUE(st.ok()) << "call " << i << ": " << st.error_message();
    EXPECT_TRUE(resp.ok());
  }
}

// A posted rule set that does not compile within compile_timeout_ms is
// answered DEADLINE_EXCEEDED; it keeps the one compile slot until it ends,
// so a second is told to come back rather than taking another core.
TEST_F(ServerTest, APostedCompileIsBoundedInTime) {
  daemon_->Start(rules_, {"--compile-timeout-ms", "200"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  rules_stub_ = v1::Rules::NewStub(channel_);
  std::string pack = SlowPack();
  v1::RulePackSet set;
  set.add_files()->set_path("big.yaml");
  set.mutable_files(0)->set_content(pack);
  auto validate = [&](v1::ValidateResponse* resp) {
    grpc::ClientContext ctx;
    Auth(&ctx, author_);
    return rules_stub_->Validate(&ctx, set, resp);
  };
  v1::ValidateResponse resp;
  grpc::Status st = validate(&resp);
  EXPECT_EQ(st.error_code(), StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  EXPECT_NE(st.error_message().find("compile_timeout"), std::string::npos) << st.error_message();
  st = validate(&resp);
  EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  // Once the background compile ends, the slot is free again (and a small
  // set compiles well within the limit).
  v1::RulePackSet small;
  small.add_files()->set_path("small.yaml");
  small.mutable_files(0)->set_content(
      "pack: small\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24h, actions: "
      "[remove_content]}\nrules:\n  - {id: r, duty: d, severity: low, when: {field: text, "
      "phrases: [hello]}}\n");
  bool compiled = false;
  for (int i = 0; i < 600 && !compiled; ++i) {
    grpc::ClientContext ctx;
    Auth(&ctx, author_);
    st = rules_stub_->Validate(&ctx, small, &resp);
    compiled = st.ok() && resp.ok();
    if (!compiled) {
      EXPECT_EQ(st.error_code(), StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_TRUE(compiled);
}

}  // namespace
}  // namespace carewatch

namespace carewatch {
namespace {

// A categorical value outside the vocabulary ("dms" for direct_message)
// matches no rule written for the vocabulary: the verdict says so and a
// metric counts it; with strict_vocabulary the report is refused.
TEST_F(ServerTest, ValuesOutsideTheVocabularyAreWarnedOrRefused) {
  StartDaemon();
  v1::ContentReport r = Flaggable("v1", "svc-a");
  r.set_surface("dms");
  v1::EvaluateResponse resp;
  ASSERT_TRUE(Evaluate(platform_a_, r, &resp).ok());
  ASSERT_EQ(resp.verdict().warnings_size(), 1);
  EXPECT_NE(resp.verdict().warnings(0).find("report.surface: 'dms' is not in the vocabulary"),
            std::string::npos)
      << resp.verdict().warnings(0);
  EXPECT_NE(resp.verdict().warnings(0).find("direct_message"), std::string::npos);
  ASSERT_TRUE(Evaluate(platform_a_, Flaggable("v2", "svc-a"), &resp).ok());
  EXPECT_EQ(resp.verdict().warnings_size(), 0) << "the vocabulary's own values pass";
  EXPECT_NE(daemon_->Metrics().find("carewatch_unknown_values_total{field=\"surface\"} 1"),
            std::string::npos);
  daemon_->Kill(SIGTERM);
  daemon_->Start(rules_, {"--strict-vocabulary"});
  channel_ = grpc::CreateChannel(daemon_->Address(), grpc::InsecureChannelCredentials());
  moderation_ = v1::Moderation::NewStub(channel_);
  r.set_report_id("v3");
  grpc::Status st = Evaluate(platform_a_, r, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("report.surface: 'dms'"), std::string::npos)
      << st.error_message();
  EXPECT_TRUE(Evaluate(platform_a_, Flaggable("v4", "svc-a")).ok());
}

}  // namespace
}  // namespace carewatch

namespace carewatch {
namespace {

// A dry run of a report without received_at counts its deadlines from
// server time (not from 1970) and says so in the verdict.
TEST_F(ServerTest, ADryRunWithoutAReceiptTimeCountsFromNow) {
  StartDaemon();
  v1::DryRunRequest req;
  *req.add_reports() = Flaggable("dry-1", "svc-a");
  req.mutable_reports(0)->clear_received_at();
  grpc::ClientContext ctx;
  Auth(&ctx, author_);
  v1::DryRunResponse resp;
  int64_t before = Now();
  ASSERT_TRUE(rules_stub_->DryRun(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.verdicts_size(), 1);
  ASSERT_GE(resp.verdicts(0).obligations_size(), 1);
  EXPECT_GT(resp.verdicts(0).obligations(0).deadline().seconds(), before);
  // Nothing is recorded by a dry run: every required action is owed.
  EXPECT_GT(resp.verdicts(0).obligations(0).actions_outstanding_size(), 0);
  EXPECT_EQ(resp.verdicts(0).obligations(0).actions_outstanding_size(),
            resp.verdicts(0).obligations(0).required_actions_size());
  ASSERT_EQ(resp.verdicts(0).warnings_size(), 1);
  EXPECT_NE(resp.verdicts(0).warnings(0).find("reports[0].received_at: not given"),
            std::string::npos);
}

}  // namespace
}  // namespace carewatch
