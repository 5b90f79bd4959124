#include "engine/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "engine/common/thread_name.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/pg_backend.h"
#include "engine/rules/loader.h"
#include "engine/server/request.h"
#include "engine/server/services.h"
#include "engine/server/state.h"

namespace carewatch::server {

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      NameThisThread("cw-worker");
      Run();
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void WorkerPool::Run() {
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

Server::Server(ServerConfig config)
    : config_(std::move(config)), state_(std::make_unique<State>()) {
  state_->config = config_;
}

Server::~Server() {
  if (!done_) Shutdown(1000);
}

Status Server::Reload(std::vector<rules::Diagnostic>* diagnostics) {
  std::lock_guard<std::mutex> lock(state_->reload_mu);
  std::vector<std::string> paths = config_.rules;
  paths.insert(paths.end(), config_.accountability.begin(), config_.accountability.end());
  rules::LoadOptions load_options;
  load_options.lists_anywhere = config_.lists_anywhere;
  rules::LoadResult loaded = rules::LoadRuleSet(paths, load_options);
  for (const auto& d : loaded.diagnostics) {
    if (d.level == rules::Diagnostic::Level::kError && diagnostics) diagnostics->push_back(d);
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
  std::vector<rules::Diagnostic> refused;
  Status s = eval::Evaluator::Create(loaded.ruleset, options, &e, &refused);
  if (!s.ok()) {
    state_->reload_ok = false;
    if (refused.empty()) {
      rules::Diagnostic d;
      d.message = s.message();
      refused.push_back(std::move(d));
    }
    if (diagnostics) diagnostics->insert(diagnostics->end(), refused.begin(), refused.end());
    Log("error", "reload failed; the previous rule set keeps serving",
        {{"errors", std::to_string(refused.size())}});
    return Status::InvalidArgument("rule set did not compile");
  }
  std::string version = e->ruleset().version();
  if (state_->replica) {
    std::lock_guard<std::mutex> lock(state_->replica->mu);
    state_->replica->evaluator = std::move(e);
  } else {
    s = state_->engine->Activate(std::move(e));
  }
  state_->reload_ok = s.ok();
  if (s.ok()) {
    state_->activated_at = NowSeconds();
    Log("info", "rule set active", {{"version", version}});
  }
  return s;
}

Status Server::LoadRules() {
  std::vector<rules::Diagnostic> diags;
  Status s = Reload(&diags);
  if (s.ok()) return s;
  std::string all;
  for (const auto& d : diags) all += "\n  " + d.ToString();
  return Status::InvalidArgument("rules: " + s.message() + all);
}

namespace {

// protobuf logs a line for each malformed message it parses (a client's
// invalid UTF-8, for one): a hostile client could fill the log with them.
// They go to carewatchd's log at most once a minute instead.
void ProtobufLog(google::protobuf::LogLevel level, const char* file, int line,
                 const std::string& message) {
  static std::atomic<int64_t> last{0};
  int64_t now = NowSeconds();
  int64_t before = last.load();
  if (level < google::protobuf::LOGLEVEL_FATAL &&
      (now - before < 60 || !last.compare_exchange_strong(before, now)))
    return;
  Log(level >= google::protobuf::LOGLEVEL_ERROR ? "error" : "info",
      "protobuf: " + message.substr(0, 300) + " (such messages are logged at most once a minute)",
      {{"at", std::string(file) + ":" + std::to_string(line)}});
}

// Where keys live unless named one by one, and where the verifier key is
// published: beside an SQLite ledger; for a database server's ledger, beside
// the signing key if one is named, else the working directory.
std::string KeyHome(const ServerConfig& c) {
  if (ledger::IsPostgresUrl(c.ledger) && !c.signing_key.empty()) {
    std::string dir = std::filesystem::path(c.signing_key).parent_path().string();
    return dir.empty() ? "." : dir;
  }
  return ledger::LedgerDirectory(c.ledger);
}

}  // namespace

Status Server::Start(std::shared_ptr<ledger::WriterLock> writer_lock) {
  google::protobuf::SetLogHandler(&ProtobufLog);
  Status s = ValidateConfig(config_);
  if (!s.ok()) return s;
  s = TokenStore::Load(config_.tokens, &state_->tokens);
  if (!s.ok()) return s;
  ledger::LedgerOptions lo;
  lo.url = config_.ledger;
  lo.signing_key_path = config_.signing_key;
  if (lo.signing_key_path.empty()) lo.signing_key_path = KeyHome(config_) + "/ledger.key";
  lo.origin = config_.origin;
  lo.writer_lock = std::move(writer_lock);
  s = ledger::Ledger::Open(lo, &state_->ledger);
  if (ledger::IsLedgerInUse(s)) return s;  // a standby waits on this
  // Unreachable (a database server down): a standby waits on this too.
  if (s.code() == Status::Code::kUnavailable) return Status::Unavailable("ledger: " + s.message());
  if (!s.ok()) return Status::InvalidArgument("ledger: " + s.message());
  {
    // The verifier key is public: written beside the ledger for the
    // deployment to publish.
    std::string dir = KeyHome(config_);
    std::ofstream(dir + "/deployment.vkey", std::ios::trunc)
        << state_->ledger->VerifierKey() << "\n";
    std::ofstream(dir + "/deployment.pub", std::ios::trunc) << state_->ledger->PublicKeyPem();
  }
  std::string hmac_path = config_.hmac_key;
  if (hmac_path.empty()) hmac_path = KeyHome(config_) + "/hmac.key";
  duty::DutyEngineOptions options;
  options.now = config_.clock ? config_.clock : NowSeconds;
  options.max_clock_skew_seconds = config_.max_clock_skew_seconds;
  options.retention_seconds = config_.retention_seconds;
  s = ledger::LoadOrCreateHmacKey(hmac_path, &options.hmac_key);
  if (!s.ok()) return Status::InvalidArgument("hmac_key: " + s.message());
  state_->engine = std::make_unique<duty::DutyEngine>(state_->ledger.get(), options);
  s = state_->engine->Recover();
  if (!s.ok()) return Status::DataLoss("ledger: " + s.message());
  s = LoadRules();
  if (!s.ok()) return s;
  {
    signals::SignalOptions so;
    so.key_path =
        config_.signals_key.empty() ? KeyHome(config_) + "/signals.key" : config_.signals_key;
    so.window_seconds = config_.signals_window_seconds;
    so.min_services = config_.signals_min_services;
    so.retention_seconds = config_.signals_retention_seconds;
    so.daily_quota = config_.signals_daily_quota;
    so.name_sharing = config_.signals_name_sharing;
    so.hmac_key = options.hmac_key;
    so.now = options.now;
    state_->signals =
        std::make_unique<signals::SignalEngine>(state_->ledger.get(), state_->engine.get(), so);
    s = state_->signals->Open();
    if (!s.ok()) return s;
  }

  if (ledger::IsPostgresUrl(config_.ledger)) {
    // Replicas may queue commands for this writer: sequence them.
    s = ledger::OpenCommandQueue(config_.ledger, 10000, &state_->queue);
    if (!s.ok()) return Status::Unavailable("ledger queue: " + s.message());
    State* st = state_.get();
    state_->sequencer = std::make_unique<Sequencer>(
        state_->queue.get(),
        [st, queue_key = QueueKey(options.hmac_key)](const std::vector<ledger::QueuedRow>& rows,
                                                     std::vector<ledger::QueueAnswer>* out) {
          return SequenceCommands(*st->engine, st->signals.get(), queue_key, rows, out);
        },
        options.now,
        [](const Status& e) {
          if (e.ok()) {
            Log("info", "sequencer: recovered");
          } else {
            Log("error", "sequencer: " + e.message());
          }
        });
  }
  {
    // Before /readyz can be asked (Listen), so that it is never ready first.
    std::lock_guard<std::mutex> lock(state_->sweep_mu);
    state_->first_sweep_pending = true;
  }
  s = Listen();
  if (!s.ok()) return s;
  sweeper_thread_ = std::thread([this] {
    NameThisThread("cw-sweeper");
    int64_t last_prune = INT64_MIN;
    while (!stopping_) {
      const int64_t now = config_.clock ? config_.clock() : NowSeconds();
      Status st = state_->engine->Sweep(now);
      // Signal tokens past retention, hourly.
      if (st.ok() && (last_prune == INT64_MIN || now - last_prune >= 3600)) {
        st = state_->signals->Prune();
        if (st.ok()) last_prune = now;
      }
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
        if (st.ok()) state_->first_sweep_pending = false;
      }
      std::unique_lock<std::mutex> lock(done_mu_);
      done_cv_.wait_for(lock, std::chrono::milliseconds(config_.sweep_interval_ms),
                        [this] { return stopping_.load(); });
    }
  });

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

Status Server::StartQueueing() {
  google::protobuf::SetLogHandler(&ProtobufLog);
  Status s = ValidateConfig(config_);
  if (!s.ok()) return s;
  if (!ledger::IsPostgresUrl(config_.ledger))
    return Status::FailedPrecondition("only a PostgreSQL ledger takes queued commands");
  s = TokenStore::Load(config_.tokens, &state_->tokens);
  if (!s.ok()) return s;
  auto rep = std::make_unique<QueueingReplica>();
  s = ledger::OpenCommandQueue(config_.ledger, 10000, &rep->queue);
  if (!s.ok()) return s;
  rep->answers = std::make_unique<AnswerWaiter>(rep->queue.get());
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  rep->name = std::string(host) + ":" + std::to_string(getpid());
  rep->now = config_.clock ? config_.clock : NowSeconds;
  rep->max_clock_skew_seconds = config_.max_clock_skew_seconds;
  rep->wait_ms = static_cast<int>(config_.queue_wait_ms);
  rep->max_queued = config_.max_queued;
  std::string hmac_path =
      config_.hmac_key.empty() ? KeyHome(config_) + "/hmac.key" : config_.hmac_key;
  s = ledger::LoadOrCreateHmacKey(hmac_path, &rep->hmac_key);
  if (!s.ok()) return Status::InvalidArgument("hmac_key: " + s.message());
  s = rep->tokens.Load(config_.signals_key.empty() ? KeyHome(config_) + "/signals.key"
                                                   : config_.signals_key);
  if (!s.ok()) return s;
  state_->replica = std::move(rep);
  s = LoadRules();
  if (!s.ok()) return s;
  s = Listen();
  if (!s.ok()) return s;
  Log("info", "carewatchd serving as a queueing replica",
      {{"grpc",
        config_.listen.substr(0, config_.listen.rfind(':')) + ":" + std::to_string(grpc_port_)},
       {"metrics", config_.metrics},
       {"ledger", ledger::RedactUrl(config_.ledger)},
       {"replica", state_->replica->name},
       {"ruleset", state_->replica->Evaluator()->ruleset().version()}});
  return Status::Ok();
}

bool Server::queueing() const { return state_->replica != nullptr; }

bool Server::LostLedger() const {
  if (!state_->ledger) return false;
  Status h = state_->ledger->health();
  return !h.ok() && (h.message().find(" is in use by another ") != std::string::npos ||
                     h.message().find(" was written by another carewatchd") != std::string::npos);
}

Status Server::Listen() {
  try {
    state_->stream_pool = std::make_unique<WorkerPool>(config_.workers);
  } catch (const std::system_error& e) {
    return Status::Unavailable(std::string("workers: cannot start threads: ") + e.what());
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // The token and role are checked as a call's headers arrive, before its
  // message is read (engine/server/request.h).
  builder.AddListeningPort(
      config_.listen, GatedCredentials(config_, &state_->tokens, &state_->metrics), &grpc_port_);
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
  state_->reload = [this](std::vector<rules::Diagnostic>* diags) { return Reload(diags); };
  services_.push_back(NewModerationService(state_.get()));
  services_.push_back(NewAuditService(state_.get()));
  services_.push_back(NewRulesService(state_.get()));
  services_.push_back(NewSignalsService(state_.get()));
  if (config_.noop_service) services_.push_back(NewNoopService(state_.get()));
  for (auto& svc : services_) builder.RegisterService(svc.get());
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || grpc_port_ == 0)
    return Status::Unavailable("listen: cannot listen on " + config_.listen);
  grpc_->GetHealthCheckService()->SetServingStatus(true);

  if (!config_.metrics.empty()) {
    http_ = std::make_unique<httplib::Server>();
    State* st = state_.get();
    http_->Get("/metrics", [st](const httplib::Request&, httplib::Response& res) {
      Metrics::Gauges g;
      std::shared_ptr<const eval::Evaluator> e;
      if (st->replica) {
        e = st->replica->Evaluator();  // a queueing replica: the writer has the rest
      } else {
        auto c = st->engine->counts();
        g.ledger_size = st->ledger->size();
        g.ledger_write_retries = st->ledger->write_retries();
        g.ledger_commits = st->ledger->commits();
        const ledger::LedgerBackend::LookupStats lookups = st->ledger->backend().lookup_stats();
        g.lookups_filtered = lookups.filtered;
        g.lookups_read = lookups.read;
        g.lookup_filter_ready = lookups.filter_ready;
        g.wal_restarts_deferred = st->ledger->backend().wal_restarts_deferred();
        g.open = c.open;
        g.met = c.met;
        g.discharged = c.discharged;
        g.breached = c.breached;
        g.findings_open = c.findings_open;
        e = st->engine->evaluator();
      }
      g.waiting_unary_bytes = st->waiting_bytes.load();
      g.waiting_stream_bytes = st->stream_bytes.load();
      g.waiting_calls = st->waiting_calls.load();
      // The replicas' queue (PostgreSQL): read at each scrape.
      ledger::CommandQueue* queue = st->replica ? st->replica->queue.get() : st->queue.get();
      int64_t depth = 0;
      if (queue && queue->Depth(&depth).ok()) g.queue_depth = depth;
      g.open_streams = st->open_streams.load();
      g.ruleset_version = e ? e->ruleset().version() : "";
      g.last_reload_ok = st->reload_ok;
      g.last_reload_time = st->reload_time;
      res.set_content(st->metrics.Render(g), "text/plain; version=0.0.4");
    });
    http_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    http_->Get("/readyz", [st](const httplib::Request&, httplib::Response& res) {
      Status h = st->ledger ? st->ledger->health() : Status::Ok();
      std::string sweep_error;
      {
        std::lock_guard<std::mutex> lock(st->sweep_mu);
        sweep_error = st->sweep_error;
        if (sweep_error.empty() && st->first_sweep_pending)
          sweep_error = "the first deadline sweep since the start has not finished";
      }
      std::string why = st->draining           ? "draining"
                        : !h.ok()              ? "not ready: " + h.message()
                        : !sweep_error.empty() ? "not ready: sweeper: " + sweep_error
                        : !(st->replica ? st->replica->Evaluator() : st->engine->evaluator())
                            ? "not ready: no rule set"
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
    http_thread_ = std::thread([this] {
      NameThisThread("cw-http");
      http_->listen_after_bind();
    });
  }
  return Status::Ok();
}

void Server::Shutdown(int grace_ms) {
  if (stopping_.exchange(true)) {
    Wait();
    return;
  }
  state_->draining = true;
  // (A start that failed, e.g. a standby's try, served nothing to drain.)
  if (grpc_) Log("info", "draining: no new calls; finishing those in flight");
  if (grpc_) {
    grpc_->GetHealthCheckService()->SetServingStatus(false);
    // A queueing replica's calls wait for the writer's answers: past the
    // grace they are ended (UNAVAILABLE; their commands stay queued), or
    // gRPC's shutdown would wait for them.
    std::promise<void> drained;
    std::thread aborter;
    if (state_->replica) {
      aborter = std::thread([this, grace_ms, f = drained.get_future()] {
        if (f.wait_for(std::chrono::milliseconds(grace_ms)) != std::future_status::ready)
          state_->replica->answers->Abort("this replica is stopping");
      });
    }
    grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
    drained.set_value();
    if (aborter.joinable()) aborter.join();
  }
  if (state_->replica) state_->replica->answers->Abort("this replica is stopping");
  done_cv_.notify_all();
  if (sweeper_thread_.joinable()) sweeper_thread_.join();
  state_->sequencer.reset();    // before the ledger's last flush
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
