// Rules: what rule authors call (and Reload, for admins).
#include <malloc.h>

#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "engine/duty/rule_tests.h"
#include "engine/rules/loader.h"
#include "engine/server/request.h"
#include "engine/server/services.h"

namespace carewatch::server {
namespace {

namespace fs = std::filesystem;
using grpc::ServerContext;
using grpc::StatusCode;

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

// A posted rule set, loaded and compiled.
struct Compiled {
  rules::LoadResult loaded;
  std::shared_ptr<const eval::Evaluator> evaluator;  // null when it did not load or compile
  Status status;                                     // why it did not compile
};

constexpr int kMaxConcurrentCompiles = 1;

// Loads and compiles posted rules on a thread of their own, at most
// kMaxConcurrentCompiles at a time, and waits for them at most
// compile_timeout (or the caller's deadline, if sooner). A compile that
// outlives the wait still holds its slot until it ends: the core it takes
// is not given to another.
grpc::Status CompilePosted(Server::State& s, ServerContext* ctx, const v1::RulePackSet& set,
                           Compiled* out) {
  if (s.compiling.fetch_add(1) >= kMaxConcurrentCompiles) {
    s.compiling.fetch_sub(1);
    return {StatusCode::RESOURCE_EXHAUSTED, "another rule set is being compiled (at most " +
                                                std::to_string(kMaxConcurrentCompiles) +
                                                " at a time); try again shortly"};
  }
  auto promise = std::make_shared<std::promise<Compiled>>();
  std::future<Compiled> result = promise->get_future();
  try {
    std::thread([&s, promise, set] {
      Compiled c;
      c.loaded = LoadPosted(set);
      if (c.loaded.ruleset) {
        std::unique_ptr<eval::Evaluator> e;
        // A pattern Hyperscan cannot build joins the loader's diagnostics,
        // at its position, every one of them (as `carewatch lint` lists them).
        c.status = eval::Evaluator::Create(c.loaded.ruleset, {}, &e, &c.loaded.diagnostics);
        c.evaluator = std::move(e);
      }
      // A compile allocates hundreds of MB for a moment, in this thread's
      // malloc arena; without a trim the arena keeps them from the OS
      // (measured: RSS grew by ~7 MB per second of repeated compiles).
      malloc_trim(0);
      // The slot is free before the answer goes: a caller's next call
      // (Validate, then RunTests) is not told to come back.
      s.compiling.fetch_sub(1);
      promise->set_value(std::move(c));
    }).detach();
  } catch (const std::system_error&) {
    s.compiling.fetch_sub(1);
    return {StatusCode::RESOURCE_EXHAUSTED, "cannot start a thread to compile; try again shortly"};
  }
  auto deadline =
      std::chrono::system_clock::now() + std::chrono::milliseconds(s.config.compile_timeout_ms);
  deadline = std::min(deadline, ctx->deadline());
  if (result.wait_until(deadline) != std::future_status::ready) {
    return {StatusCode::DEADLINE_EXCEEDED,
            "compiling the posted rules took longer than compile_timeout (" +
                std::to_string(s.config.compile_timeout_ms) +
                " ms) or the call's deadline; it goes on in the background and holds the "
                "compile slot until it ends"};
  }
  *out = result.get();
  return grpc::Status::OK;
}

class RulesService final : public v1::Rules::Service {
 public:
  explicit RulesService(Server::State* s) : s_(s) {}

  grpc::Status Validate(ServerContext* ctx, const v1::RulePackSet* req,
                        v1::ValidateResponse* resp) override {
    return Serve(*s_, ctx, "Rules/Validate", *req, [&](const Principal&) {
      Compiled c;
      grpc::Status st = CompilePosted(*s_, ctx, *req, &c);
      if (!st.ok()) return st;
      ToDiagnostics(c.loaded.diagnostics, resp->mutable_diagnostics());
      if (!c.loaded.ruleset) return grpc::Status::OK;
      if (!c.status.ok()) {
        if (!rules::HasErrors(c.loaded.diagnostics)) {
          auto* d = resp->add_diagnostics();
          d->set_severity("error");
          d->set_message(c.status.message());
        }
      } else {
        resp->set_ok(true);
        resp->set_version(c.loaded.ruleset->version());
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status RunTests(ServerContext* ctx, const v1::RulePackSet* req,
                        v1::RunTestsResponse* resp) override {
    return Serve(*s_, ctx, "Rules/RunTests", *req, [&](const Principal&) -> grpc::Status {
      Compiled c;
      grpc::Status st = CompilePosted(*s_, ctx, *req, &c);
      if (!st.ok()) return st;
      ToDiagnostics(c.loaded.diagnostics, resp->mutable_diagnostics());
      if (!c.loaded.ruleset) return grpc::Status::OK;
      // A pattern Hyperscan cannot build is among the diagnostics, as a
      // loader error is: no test runs.
      if (!c.status.ok() && rules::HasErrors(c.loaded.diagnostics)) return grpc::Status::OK;
      if (!c.status.ok()) return {StatusCode::INVALID_ARGUMENT, c.status.message()};
      duty::RuleTestSummary sum = duty::RunRuleTests(*c.evaluator);
      resp->set_passed(sum.passed);
      resp->set_failed(sum.failed);
      for (const auto& f : sum.failures) resp->add_failures(f.ToString());
      return grpc::Status::OK;
    });
  }

  grpc::Status DryRun(ServerContext* ctx, const v1::DryRunRequest* req,
                      v1::DryRunResponse* resp) override {
    return Serve(*s_, ctx, "Rules/DryRun", *req, [&](const Principal&) -> grpc::Status {
      std::shared_ptr<const eval::Evaluator> e = s_->engine->evaluator();
      if (req->packs().files_size() > 0) {
        Compiled c;
        grpc::Status st = CompilePosted(*s_, ctx, req->packs(), &c);
        if (!st.ok()) return st;
        ToDiagnostics(c.loaded.diagnostics, resp->mutable_diagnostics());
        if (!c.loaded.ruleset) return grpc::Status::OK;
        if (!c.status.ok() && rules::HasErrors(c.loaded.diagnostics)) return grpc::Status::OK;
        if (!c.status.ok()) return {StatusCode::INVALID_ARGUMENT, c.status.message()};
        e = c.evaluator;
      }
      for (int i = 0; i < req->reports_size(); ++i) {
        v1::Verdict* verdict = resp->add_verdicts();
        // Without a receipt time the deadlines would count from 1970: a dry
        // run counts them from now, and says so.
        const v1::ContentReport* report = &req->reports(i);
        v1::ContentReport stamped;
        if (!report->has_received_at()) {
          stamped = *report;
          stamped.mutable_received_at()->set_seconds(NowSeconds());
          report = &stamped;
        }
        Status s = e->Evaluate(*report, verdict);
        // A dry run records nothing: every required action is still owed.
        for (v1::Obligation& o : *verdict->mutable_obligations())
          *o.mutable_actions_outstanding() = o.required_actions();
        if (report == &stamped) {
          verdict->add_warnings("reports[" + std::to_string(i) +
                                "].received_at: not given; deadlines count from server time");
        }
        for (auto& w : VocabularyWarnings(req->reports(i), "reports[" + std::to_string(i) + "]."))
          verdict->add_warnings(w);
        if (!s.ok()) {
          return {StatusCode::INVALID_ARGUMENT,
                  "reports[" + std::to_string(i) + "]: " + s.message()};
        }
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status GetActiveRuleset(ServerContext* ctx, const v1::GetActiveRulesetRequest* req,
                                v1::GetActiveRulesetResponse* resp) override {
    return Serve(*s_, ctx, "Rules/GetActiveRuleset", *req, [&](const Principal&) {
      auto e = s_->engine->evaluator();
      const rules::RuleSet& rs = e->ruleset();
      resp->set_version(rs.version());
      for (const auto& pk : rs.packs()) resp->add_packs(pk.name + "@" + pk.version);
      resp->set_rules(static_cast<int>(rs.rules().size()));
      resp->set_duties(static_cast<int>(rs.duties().size()));
      resp->mutable_activated_at()->set_seconds(s_->activated_at.load());
      return grpc::Status::OK;
    });
  }

  grpc::Status Reload(ServerContext* ctx, const v1::ReloadRequest* req,
                      v1::ReloadResponse* resp) override {
    return Serve(*s_, ctx, "Rules/Reload", *req, [&](const Principal&) {
      std::vector<rules::Diagnostic> diags;
      Status s = s_->reload(&diags);
      resp->set_ok(s.ok());
      resp->set_version(s_->engine->evaluator()->ruleset().version());
      ToDiagnostics(diags, resp->mutable_diagnostics());
      if (!s.ok() && diags.empty()) {
        auto* x = resp->add_diagnostics();
        x->set_severity("error");
        x->set_message(s.message());
      }
      return grpc::Status::OK;
    });
  }

 private:
  Server::State* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewRulesService(Server::State* s) {
  return std::make_unique<RulesService>(s);
}

}  // namespace carewatch::server
