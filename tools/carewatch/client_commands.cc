// carewatch commands that talk to a carewatchd: token, verify --server,
// audit --server (in ledger_commands.cc) and load.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <thread>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/digest.h"
#include "engine/eval/report_json.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/merkle.h"
#include "engine/rules/duration.h"
#include "engine/rules/loader.h"
#include "engine/server/auth.h"
#include "engine/server/metrics.h"
#include "tools/carewatch/common.h"
#include "tools/corpus/corpus.h"

namespace carewatch::cli {

std::shared_ptr<grpc::Channel> Connect(const std::string& server, const std::string& ca_file) {
  if (ca_file.empty()) return grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions ssl;
  std::string error;
  ssl.pem_root_certs = rules::ReadFileToString(ca_file, &error).value_or("");
  return grpc::CreateChannel(server, grpc::SslCredentials(ssl));
}

void Authorize(grpc::ClientContext* ctx, const std::string& token) {
  // No token, no header: the server then says the token is missing.
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
}

int RunTokenNew(const std::string& principal, const std::string& role_name,
                const std::string& service) {
  server::Role role;
  if (!server::ParseRole(role_name, &role)) {
    std::cerr << "error: --role must be platform, regulator, rule_author or admin\n";
    return kExitUsage;
  }
  if (role == server::Role::kPlatform && service.empty()) {
    std::cerr << "error: a platform token needs --service\n";
    return kExitUsage;
  }
  std::string token = server::NewToken();
  std::cout << "token: " << token << "\n";
  std::cout << "# add to the tokens file (only the digest is stored):\n";
  std::cout << server::TokenLine(token, principal, role, service) << "\n";
  return kExitOk;
}

int RunLoad(const LoadOptions& o) {
  if (!o.noop) {
    // Load is real traffic: every report it sends is evaluated and counted,
    // and those that match are recorded in the server's ledger for good.
    std::cerr << "load: every report goes into " << o.server
              << "'s ledger (flagged ones as events, the rest as counts); point it at a "
                 "throwaway carewatchd, not one whose ledger matters\n";
  }
  auto channel = Connect(o.server, o.ca_file);
  auto moderation = v1::Moderation::NewStub(channel);
  auto noop = v1::Noop::NewStub(channel);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, errors{0};
  std::mutex mu;
  std::vector<double> latencies;
  std::atomic<uint64_t> counter{0};
  const auto start = std::chrono::steady_clock::now();
  auto make_report = [&](corpus::CorpusGenerator& gen, v1::EvaluateRequest* req, int worker) {
    gen.Next(req->mutable_report());
    req->mutable_report()->set_service_id(o.service);
    req->mutable_report()->set_report_id(o.run_id + "-" + std::to_string(worker) + "-" +
                                         std::to_string(counter++));
    // Received now, as a platform sends them (the corpus's own times are in the past).
    req->mutable_report()->mutable_received_at()->set_seconds(std::time(nullptr));
  };
  // Requests are spaced so all workers together stay under --rate (0: as fast as possible).
  auto pace = [&](uint64_t sent) {
    if (o.rate <= 0) return;
    auto due = start + std::chrono::duration<double>(sent / o.rate);
    std::this_thread::sleep_until(due);
  };
  // --callback: unary calls from gRPC's callback API. Each of --concurrency
  // slots sends its next report from the callback of the last, on gRPC's own
  // threads, so the load holds no thread of its own per call. Without it, a
  // thread per call, blocked in the call (as docs/performance.md's figures
  // are measured).
  if (!o.stream && o.callback) {
    struct Slot {
      int worker;
      std::unique_ptr<corpus::CorpusGenerator> gen;
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::EvaluateRequest req;
      v1::EvaluateResponse resp;
      std::chrono::steady_clock::time_point t0;
      std::vector<double> latencies;
    };
    std::vector<std::unique_ptr<Slot>> slots;
    std::mutex done_mu;
    std::condition_variable done_cv;
    int active = o.concurrency;
    std::function<void(Slot*)> send;
    // A slot whose call failed is sent again from this thread, not from its
    // callback: a call can fail inside the call that starts it, and a dead
    // server must not turn into unbounded recursion.
    std::deque<Slot*> failed;
    auto finished = [&](Slot* s, const grpc::Status& st) {
      if (st.ok()) {
        ++ok;
        s->latencies.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - s->t0).count());
        if (!stop) {
          send(s);
          return;
        }
      } else if (errors++ < 3) {
        std::lock_guard<std::mutex> lock(mu);
        std::cerr << "error: " << st.error_message() << "\n";
      }
      std::lock_guard<std::mutex> lock(done_mu);
      if (!st.ok() && !stop) {
        failed.push_back(s);
      } else {
        --active;
      }
      done_cv.notify_all();
    };
    send = [&](Slot* s) {
      s->req.Clear();
      s->resp.Clear();
      make_report(*s->gen, &s->req, s->worker);
      pace(ok + errors);
      s->ctx = std::make_unique<grpc::ClientContext>();
      Authorize(s->ctx.get(), o.token);
      s->t0 = std::chrono::steady_clock::now();
      auto callback = [&finished, s](grpc::Status st) { finished(s, st); };
      if (o.noop) {
        noop->async()->Evaluate(s->ctx.get(), &s->req, &s->resp, std::move(callback));
      } else {
        moderation->async()->Evaluate(s->ctx.get(), &s->req, &s->resp, std::move(callback));
      }
    };
    for (int w = 0; w < o.concurrency; ++w) {
      auto s = std::make_unique<Slot>();
      s->worker = w;
      corpus::CorpusOptions copts;
      copts.seed = o.seed + w;
      s->gen = std::make_unique<corpus::CorpusGenerator>(copts);
      slots.push_back(std::move(s));
    }
    for (auto& s : slots) send(s.get());
    const auto deadline = start + std::chrono::milliseconds(o.duration_ms);
    std::unique_lock<std::mutex> lock(done_mu);
    // (wait_until is true whenever a slot has failed, even past the deadline.)
    while (done_cv.wait_until(lock, deadline, [&] { return !failed.empty(); }) &&
           std::chrono::steady_clock::now() < deadline) {
      Slot* s = failed.front();
      failed.pop_front();
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      send(s);
      lock.lock();
    }
    stop = true;
    active -= static_cast<int>(failed.size());
    failed.clear();
    done_cv.wait(lock, [&] { return active == 0; });
    lock.unlock();
    for (auto& s : slots)
      latencies.insert(latencies.end(), s->latencies.begin(), s->latencies.end());
  }
  std::vector<std::thread> threads;
  for (int w = 0; w < (o.stream || !o.callback ? o.concurrency : 0); ++w) {
    threads.emplace_back([&, w] {
      corpus::CorpusOptions copts;
      copts.seed = o.seed + w;
      corpus::CorpusGenerator gen(copts);
      std::vector<double> local;
      if (!o.stream) {
        while (!stop) {
          v1::EvaluateRequest req;
          make_report(gen, &req, w);
          pace(ok + errors);
          v1::EvaluateResponse resp;
          grpc::ClientContext ctx;
          Authorize(&ctx, o.token);
          auto t0 = std::chrono::steady_clock::now();
          grpc::Status st =
              o.noop ? noop->Evaluate(&ctx, req, &resp) : moderation->Evaluate(&ctx, req, &resp);
          double secs =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (st.ok()) {
            ++ok;
            local.push_back(secs);
          } else {
            if (errors++ < 3) std::cerr << "error: " << st.error_message() << "\n";
          }
        }
      } else {
        grpc::ClientContext ctx;
        Authorize(&ctx, o.token);
        auto stream = o.noop ? noop->EvaluateStream(&ctx) : moderation->EvaluateStream(&ctx);
        std::mutex smu;
        std::map<std::string, std::chrono::steady_clock::time_point> sent;
        std::atomic<int> in_flight{0};
        std::thread reader([&] {
          v1::EvaluateResponse resp;
          while (stream->Read(&resp)) {
            std::chrono::steady_clock::time_point t0;
            {
              std::lock_guard<std::mutex> lock(smu);
              auto it = sent.find(resp.verdict().report_id());
              if (it == sent.end()) continue;
              t0 = it->second;
              sent.erase(it);
            }
            --in_flight;
            if (resp.error().empty()) {
              ++ok;
              local.push_back(
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            } else if (errors++ < 3) {
              std::cerr << "error: " << resp.error() << "\n";
            }
          }
        });
        while (!stop) {
          if (in_flight >= o.window) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            continue;
          }
          v1::EvaluateRequest req;
          make_report(gen, &req, w);
          pace(ok + errors + in_flight);
          {
            std::lock_guard<std::mutex> lock(smu);
            sent[req.report().report_id()] = std::chrono::steady_clock::now();
          }
          ++in_flight;
          if (!stream->Write(req)) break;
        }
        stream->WritesDone();
        reader.join();
        grpc::Status st = stream->Finish();
        if (!st.ok()) std::cerr << "stream: " << st.error_message() << "\n";
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), local.begin(), local.end());
    });
  }
  if (!threads.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(o.duration_ms));
    stop = true;
    for (auto& t : threads) t.join();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    if (latencies.empty()) return 0.0;
    return latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))] *
           1000;
  };
  std::printf(
      "%s %s%s, concurrency %d%s, %.1fs: %llu ok, %llu errors, %.0f reports/s, "
      "latency ms p50 %.2f p90 %.2f p99 %.2f\n",
      o.noop ? "noop" : "carewatchd", o.stream ? "EvaluateStream" : "Evaluate",
      !o.stream && o.callback ? " (callback)" : "", o.concurrency,
      o.stream ? (" window " + std::to_string(o.window)).c_str() : "", secs,
      static_cast<unsigned long long>(ok.load()), static_cast<unsigned long long>(errors.load()),
      ok / secs, pct(0.5), pct(0.9), pct(0.99));
  return errors > 0 && ok == 0 ? kExitFailure : kExitOk;
}

}  // namespace carewatch::cli

namespace carewatch::cli {

int RunEvaluateClient(const std::string& server, const std::string& token,
                      const std::string& report_file, const std::string& ca_file) {
  std::string error;
  auto content = rules::ReadFileToString(report_file, &error);
  if (!content) {
    std::cerr << report_file << ": error: " << error << "\n";
    return kExitFailure;
  }
  v1::EvaluateRequest req;
  Status s = eval::ParseReportJson(*content, req.mutable_report());
  if (!s.ok()) {
    std::cerr << report_file << ": error: " << s.message() << "\n";
    return kExitFailure;
  }
  if (!req.report().has_received_at()) {
    // A report without a receipt time was received now (examples/report.json
    // has none, so the quick start's obligations are not already overdue).
    int64_t now = std::time(nullptr);
    req.mutable_report()->mutable_received_at()->set_seconds(now);
    std::cerr << "received_at not given: sent as " << rules::FormatDateTime(now) << "\n";
  }
  auto stub = v1::Moderation::NewStub(Connect(server, ca_file));
  grpc::ClientContext ctx;
  Authorize(&ctx, token);
  v1::EvaluateResponse resp;
  grpc::Status st = stub->Evaluate(&ctx, req, &resp);
  if (!st.ok()) {
    std::cerr << "error: " << st.error_message() << " (" << server::GrpcCodeName(st.error_code())
              << ")\n";
    return kExitFailure;
  }
  std::cout << eval::ToJson(resp.verdict()) << "\n";
  return kExitOk;
}

int RunActionClient(const std::string& server, const std::string& token,
                    const v1::RecordActionRequest& req, const std::string& ca_file) {
  auto stub = v1::Moderation::NewStub(Connect(server, ca_file));
  grpc::ClientContext ctx;
  Authorize(&ctx, token);
  v1::RecordActionResponse resp;
  grpc::Status st = stub->RecordAction(&ctx, req, &resp);
  if (!st.ok()) {
    std::cerr << "error: " << st.error_message() << " (" << server::GrpcCodeName(st.error_code())
              << ")\n";
    return kExitFailure;
  }
  std::cout << eval::ToJson(resp) << "\n";
  return kExitOk;
}

}  // namespace carewatch::cli

namespace carewatch::cli {

int RunPush(const PushOptions& o) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (o.input != "-") {
    file.open(o.input, std::ios::binary);
    if (!file) {
      std::cerr << o.input << ": error: cannot read\n";
      return kExitFailure;
    }
    in = &file;
  }
  auto channel = Connect(o.server, o.ca_file);
  auto moderation = v1::Moderation::NewStub(channel);
  // One bounded queue per worker; a report and its actions go to the same
  // worker, so each report is acknowledged before its actions are sent.
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<v1::ReplayEvent> items;
    bool closed = false;
  };
  std::vector<Queue> queues(o.concurrency);
  std::atomic<uint64_t> reports{0}, actions{0}, refused{0}, failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < o.concurrency; ++w) {
    workers.emplace_back([&, w] {
      Queue& q = queues[w];
      for (;;) {
        v1::ReplayEvent e;
        {
          std::unique_lock<std::mutex> lock(q.mu);
          q.cv.wait(lock, [&] { return q.closed || !q.items.empty(); });
          if (q.items.empty()) return;
          e = std::move(q.items.front());
          q.items.pop_front();
        }
        q.cv.notify_all();
        if (stop) continue;
        grpc::ClientContext ctx;
        Authorize(&ctx, o.token);
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        grpc::Status st;
        if (e.has_report()) {
          v1::EvaluateRequest req;
          *req.mutable_report() = std::move(*e.mutable_report());
          v1::EvaluateResponse resp;
          st = moderation->Evaluate(&ctx, req, &resp);
          ++reports;
        } else {
          v1::RecordActionResponse resp;
          st = moderation->RecordAction(&ctx, e.action(), &resp);
          ++actions;
        }
        if (st.ok()) continue;
        // Refusals of bad lines are the server doing its job; anything else
        // (unavailable, internal) stops the push.
        if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
            st.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
          if (refused++ < 3) std::cerr << "refused: " << st.error_message() << "\n";
        } else {
          if (failed++ < 3) std::cerr << "error: " << st.error_message() << "\n";
          stop = true;
        }
      }
    });
  }
  const auto start = std::chrono::steady_clock::now();
  std::string line;
  uint64_t lineno = 0, bad = 0;
  std::hash<std::string> hash;
  while (!stop && (o.limit == 0 || lineno < o.limit) && std::getline(*in, line)) {
    ++lineno;
    v1::ReplayEvent e;
    google::protobuf::util::JsonParseOptions options;
    if (line.size() > eval::kMaxReportJsonBytes ||
        !google::protobuf::util::JsonStringToMessage(line, &e, options).ok() ||
        (!e.has_report() && !e.has_action())) {
      if (bad++ < 3) std::cerr << o.input << ":" << lineno << ": error: not a scenario line\n";
      continue;
    }
    const std::string key = e.has_report()
                                ? e.report().service_id() + '\0' + e.report().report_id()
                                : e.action().service_id() + '\0' + e.action().report_id();
    Queue& q = queues[hash(key) % queues.size()];
    std::unique_lock<std::mutex> lock(q.mu);
    q.cv.wait(lock, [&] { return q.items.size() < 256 || stop; });
    q.items.push_back(std::move(e));
    lock.unlock();
    q.cv.notify_all();
  }
  for (Queue& q : queues) {
    {
      std::lock_guard<std::mutex> lock(q.mu);
      q.closed = true;
    }
    q.cv.notify_all();
  }
  for (std::thread& t : workers) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t sent = reports + actions;
  std::cout << "pushed " << sent << " lines (" << reports << " reports, " << actions
            << " actions) in " << std::fixed << std::setprecision(1) << secs
            << " s = " << std::setprecision(0) << (secs > 0 ? sent / secs : 0) << " lines/s; "
            << refused << " refused, " << bad << " unreadable\n";
  return failed ? kExitFailure : kExitOk;
}

}  // namespace carewatch::cli

namespace carewatch::cli {

void RegisterClientCommands(CommandTable& table) {
  struct TokenOptions {
    std::string principal, role, service;
  };
  auto tok = std::make_shared<TokenOptions>();
  CLI::App* token_cmd = table.Add("token", "Tokens for carewatchd", [tok] {
    return RunTokenNew(tok->principal, tok->role, tok->service);
  });
  auto* token_new = token_cmd->add_subcommand("new", "Print a new token and its tokens-file line");
  token_new->add_option("--principal", tok->principal, "Who holds it")->required();
  token_new->add_option("--role", tok->role, "platform, regulator, rule_author or admin")
      ->required();
  token_new->add_option("--service", tok->service, "For platforms: their service_id");
  token_cmd->require_subcommand(1);

  struct CallOptions {
    std::string server, token, ca_file, report_file;
    std::string service, report, action, taken_at;
  };
  auto call = std::make_shared<CallOptions>();
  auto connection = [](CLI::App* cmd, CallOptions* c) {
    cmd->add_option("--server", c->server, "carewatchd HOST:PORT")->required();
    cmd->add_option("--token", c->token, "Platform token")->required();
    cmd->add_option("--ca", c->ca_file, "CA certificate for a TLS server");
  };
  CLI::App* evaluate =
      table.Add("evaluate", "Send one report to a carewatchd (Moderation.Evaluate)", [call] {
        return RunEvaluateClient(call->server, call->token, call->report_file, call->ca_file);
      });
  evaluate->add_option("report", call->report_file, "A JSON ContentReport")->required();
  connection(evaluate, call.get());

  CLI::App* action =
      table.Add("action", "Record an action with a carewatchd (Moderation.RecordAction)", [call] {
        v1::RecordActionRequest req;
        req.set_service_id(call->service);
        req.set_report_id(call->report);
        req.set_action(call->action);
        int64_t t = std::time(nullptr);
        if (!call->taken_at.empty()) {
          auto parsed = rules::ParseDateTime(call->taken_at);
          if (!parsed) {
            std::cerr << "error: --taken-at: bad time '" << call->taken_at << "'\n";
            return kExitUsage;
          }
          t = *parsed;
        }
        req.mutable_taken_at()->set_seconds(t);
        return RunActionClient(call->server, call->token, req, call->ca_file);
      });
  connection(action, call.get());
  action->add_option("--service", call->service, "service_id")->required();
  action->add_option("--report", call->report, "report_id")->required();
  action->add_option("--action", call->action, "remove_content, report_to_nca, ...")->required();
  action->add_option("--taken-at", call->taken_at, "When (RFC 3339); default now");

  struct LoadCommand {
    LoadOptions load;
    std::string duration = "10s";
  };
  auto lo = std::make_shared<LoadCommand>();
  LoadOptions& load = lo->load;
  CLI::App* load_cmd = table.Add("load", "Load generator for Evaluate / EvaluateStream", [lo] {
    std::string error;
    auto d = rules::ParseDuration(lo->duration, &error);
    if (!d) {
      std::cerr << "error: --duration: " << error << "\n";
      return kExitUsage;
    }
    lo->load.duration_ms = *d * 1000;
    return RunLoad(lo->load);
  });
  load_cmd->add_option("--server", load.server, "carewatchd HOST:PORT");
  load_cmd->add_option("--token", load.token, "Platform token")->required();
  load_cmd->add_option("--service", load.service, "The token's service_id")->required();
  load_cmd->add_flag("--stream", load.stream, "EvaluateStream instead of unary Evaluate");
  load_cmd->add_flag("--callback", load.callback,
                     "Unary calls from gRPC's callback API, no thread per call (default: a "
                     "thread per call, blocked in it)");
  load_cmd->add_flag("--noop", load.noop,
                     "Call the no-op service of the same shape (the transport's limit)");
  load_cmd->add_option("-c,--concurrency", load.concurrency, "Concurrent calls (or streams)")
      ->check(CLI::Range(1, 1024));
  load_cmd->add_option("--window", load.window, "Reports in flight per stream")
      ->check(CLI::Range(1, 4096));
  load_cmd->add_option("--rate", load.rate, "Reports per second in all (0: unbounded)");
  load_cmd->add_option("--duration", lo->duration, "How long (e.g. 10s)");
  load_cmd->add_option("--run-id", load.run_id,
                       "Prefix of report ids (distinct runs, distinct reports)");
  load_cmd->add_option("--ca", load.ca_file, "CA certificate for a TLS server");

  auto push = std::make_shared<PushOptions>();
  CLI::App* push_cmd =
      table.Add("push", "Send a gen-scenario stream (reports and actions) to a carewatchd",
                [push] { return RunPush(*push); });
  push_cmd->add_option("input", push->input, "JSONL file, or - for stdin")->required();
  push_cmd->add_option("--server", push->server, "carewatchd HOST:PORT");
  push_cmd->add_option("--token", push->token, "Admin token (lines name several services)")
      ->required();
  push_cmd->add_option("-c,--concurrency", push->concurrency, "Calls in flight")
      ->check(CLI::Range(1, 1024));
  push_cmd->add_option("--limit", push->limit, "Lines to send (0: all)");
  push_cmd->add_option("--ca", push->ca_file, "CA certificate for a TLS server");
}

}  // namespace carewatch::cli
