// carewatch_hostile: normal load against a running carewatchd, first alone
// and then beside a mix of hostile clients, sampling the server's RSS and
// thread count. Prints the figures docs/performance.md records and exits 1
// when a bound is crossed or normal calls stop being served.
//
//   carewatch_hostile --server HOST:PORT --pid PID --platform TOKEN
//     --service SVC --regulator TOKEN --author TOKEN --seconds N
//     [--max-rss-mb M] [--max-threads T]
//
// The attacks (each from its own threads, for the whole attack phase):
//   ids        reports with 1 MB ids and categorical values
//   noauth     4 MB bodies without a valid token
//   streams    300 EvaluateStream calls opened and held idle
//   urls       reports with a 1 MB URL (list lookups must stay linear)
//   compile    Rules.Validate of a slow pack, again and again
//   reasons    reports with a new reason each (the statistics stay bounded)
// and a regulator reading GetStats and ListBreaches throughout.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "carewatch/v1/service.grpc.pb.h"

namespace {

using namespace carewatch;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string server, platform, service, regulator, author;
  int pid = 0;
  int seconds = 20;
  int64_t max_rss_mb = 1024;
  int max_threads = 400;
  std::string attacks = "ids,noauth,streams,urls,compile,reasons";
  bool On(const std::string& name) const {
    return ("," + attacks + ",").find("," + name + ",") != std::string::npos;
  }
};

int64_t NowSeconds() { return std::time(nullptr); }

// VmRSS (kB) and Threads of a process.
std::pair<int64_t, int> Sample(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  int64_t rss = 0;
  int threads = 0;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::atoll(line.c_str() + 6);
    if (line.rfind("Threads:", 0) == 0) threads = std::atoi(line.c_str() + 8);
  }
  return {rss, threads};
}

v1::ContentReport Report(const std::string& id, const std::string& service) {
  v1::ContentReport r;
  r.set_report_id(id);
  r.set_service_id(service);
  r.mutable_received_at()->set_seconds(NowSeconds());
  r.set_reporter_type("user");
  r.set_surface("direct_message");
  r.set_reason("grooming");
  r.set_subject_age_band("13_to_15");
  r.set_text("an ordinary report with nothing in it");
  return r;
}

struct Latencies {
  std::mutex mu;
  std::vector<double> ms;
  std::atomic<int64_t> ok{0}, failed{0};
  void Add(double v) {
    std::lock_guard<std::mutex> lock(mu);
    ms.push_back(v);
  }
  double Percentile(double p) {
    std::lock_guard<std::mutex> lock(mu);
    if (ms.empty()) return 0;
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
  }
};

class Run {
 public:
  explicit Run(const Options& o)
      : o_(o), channel_(grpc::CreateChannel(o.server, grpc::InsecureChannelCredentials())) {}

  // Unary Evaluate from 4 threads until `stop`.
  void Normal(std::atomic<bool>& stop, Latencies* lat, const std::string& tag) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        auto stub = v1::Moderation::NewStub(channel_);
        for (int64_t i = 0; !stop; ++i) {
          grpc::ClientContext ctx;
          ctx.AddMetadata("authorization", "Bearer " + o_.platform);
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          v1::EvaluateRequest req;
          *req.mutable_report() =
              Report(tag + "-" + std::to_string(t) + "-" + std::to_string(i), o_.service);
          v1::EvaluateResponse resp;
          auto start = Clock::now();
          grpc::Status st = stub->Evaluate(&ctx, req, &resp);
          double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
          if (st.ok()) {
            lat->Add(ms);
            ++lat->ok;
          } else {
            ++lat->failed;
            if (lat->failed < 5) std::cerr << "normal call failed: " << st.error_message() << "\n";
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }

  void Attacks(std::atomic<bool>& stop, std::vector<std::thread>* threads) {
    auto platform = [this](grpc::ClientContext* ctx) {
      ctx->AddMetadata("authorization", "Bearer " + o_.platform);
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    };
    // Huge ids and categorical values.
    if (o_.On("ids"))
      threads->emplace_back([&, platform] {
        auto stub = v1::Moderation::NewStub(channel_);
        for (int i = 0; !stop; ++i) {
          v1::EvaluateRequest req;
          *req.mutable_report() = Report(std::string(1 << 20, 'i'), o_.service);
          if (i % 2) {
            req.mutable_report()->set_report_id("big-reason-" + std::to_string(i));
            req.mutable_report()->set_reason(std::string(1 << 20, 'r'));
          }
          grpc::ClientContext ctx;
          platform(&ctx);
          v1::EvaluateResponse resp;
          Count(stub->Evaluate(&ctx, req, &resp), StatusCodeOk(grpc::INVALID_ARGUMENT));
        }
      });
    // Large bodies without a valid token.
    if (o_.On("noauth"))
      threads->emplace_back([&] {
        auto stub = v1::Moderation::NewStub(channel_);
        v1::EvaluateRequest req;
        *req.mutable_report() = Report("noauth", o_.service);
        req.mutable_report()->set_text(std::string(4 << 20, 'x'));
        while (!stop) {
          grpc::ClientContext ctx;
          ctx.AddMetadata("authorization", "Bearer not-a-token");
          v1::EvaluateResponse resp;
          Count(stub->Evaluate(&ctx, req, &resp), StatusCodeOk(grpc::UNAUTHENTICATED));
        }
      });
    // Idle streams, opened and held.
    if (o_.On("streams"))
      threads->emplace_back([&] {
        struct Held {
          grpc::ClientContext ctx;
          std::unique_ptr<grpc::ClientReaderWriter<v1::EvaluateRequest, v1::EvaluateResponse>> s;
        };
        auto stub = v1::Moderation::NewStub(channel_);
        std::vector<std::unique_ptr<Held>> held;
        for (int i = 0; i < 300 && !stop; ++i) {
          auto h = std::make_unique<Held>();
          h->ctx.AddMetadata("authorization", "Bearer " + o_.platform);
          h->s = stub->EvaluateStream(&h->ctx);
          held.push_back(std::move(h));
        }
        while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        for (auto& h : held) h->ctx.TryCancel();
        for (auto& h : held) h->s->Finish();
      });
    // Reports with a 1 MB URL.
    if (o_.On("urls"))
      threads->emplace_back([&, platform] {
        auto stub = v1::Moderation::NewStub(channel_);
        for (int i = 0; !stop; ++i) {
          v1::EvaluateRequest req;
          *req.mutable_report() = Report("url-" + std::to_string(i), o_.service);
          req.mutable_report()->add_urls("https://a.example.test/" +
                                         std::string((1 << 20) - 40, 'p'));
          grpc::ClientContext ctx;
          platform(&ctx);
          v1::EvaluateResponse resp;
          // Over the default max_field_bytes by a little, or evaluated: both
          // are answers; what matters is the time it takes.
          Count(stub->Evaluate(&ctx, req, &resp), [](const grpc::Status&) { return true; });
        }
      });
    // A slow pack posted for validation, over and over from two callers.
    std::string pack =
        "pack: slow\nversion: \"1\"\nduties:\n  - {id: d, deadline: 24h, actions: "
        "[remove_content]}\nrules:\n";
    for (int i = 0; i < 2000; ++i) {
      pack += "  - {id: r" + std::to_string(i) +
              ", duty: d, severity: low, when: {field: text, regex: 'w" + std::to_string(i) +
              "[a-z]{2,9}q(x|y)+z'}}\n";
    }
    for (int t = 0; t < (o_.On("compile") ? 2 : 0); ++t) {
      threads->emplace_back([&, pack] {
        auto stub = v1::Rules::NewStub(channel_);
        v1::RulePackSet set;
        set.add_files()->set_path("slow.yaml");
        set.mutable_files(0)->set_content(pack);
        while (!stop) {
          grpc::ClientContext ctx;
          ctx.AddMetadata("authorization", "Bearer " + o_.author);
          v1::ValidateResponse resp;
          Count(stub->Validate(&ctx, set, &resp), [](const grpc::Status& s) {
            return s.ok() || s.error_code() == grpc::RESOURCE_EXHAUSTED ||
                   s.error_code() == grpc::DEADLINE_EXCEEDED;
          });
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      });
    }
    // A new reason in every report.
    if (o_.On("reasons"))
      threads->emplace_back([&, platform] {
        auto stub = v1::Moderation::NewStub(channel_);
        for (int i = 0; !stop; ++i) {
          v1::EvaluateRequest req;
          *req.mutable_report() = Report("reason-" + std::to_string(i), o_.service);
          req.mutable_report()->set_reason("r" + std::to_string(i) + std::string(50, 'x'));
          grpc::ClientContext ctx;
          platform(&ctx);
          v1::EvaluateResponse resp;
          Count(stub->Evaluate(&ctx, req, &resp), StatusCodeOk(grpc::OK));
        }
      });
    // The regulator reads throughout; every read must be answered.
    threads->emplace_back([&] {
      auto stub = v1::Audit::NewStub(channel_);
      while (!stop) {
        grpc::ClientContext ctx;
        ctx.AddMetadata("authorization", "Bearer " + o_.regulator);
        v1::GetStatsRequest req;
        req.set_period("month");
        v1::GetStatsResponse resp;
        grpc::Status st = stub->GetStats(&ctx, req, &resp);
        if (!st.ok()) {
          ++audit_failed_;
          std::cerr << "GetStats failed under attack: " << st.error_message() << "\n";
        } else {
          ++audit_ok_;
          stats_bytes_ = std::max<int64_t>(stats_bytes_, resp.ByteSizeLong());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }

  std::atomic<int64_t> attacks{0}, unexpected{0};
  std::atomic<int64_t> audit_ok_{0}, audit_failed_{0}, stats_bytes_{0};

 private:
  static std::function<bool(const grpc::Status&)> StatusCodeOk(grpc::StatusCode c) {
    return [c](const grpc::Status& s) { return s.error_code() == c; };
  }
  void Count(const grpc::Status& s, const std::function<bool(const grpc::Status&)>& expected) {
    ++attacks;
    if (!expected(s)) {
      if (++unexpected < 5)
        std::cerr << "unexpected answer to an attack: " << s.error_code() << " "
                  << s.error_message().substr(0, 200) << "\n";
    }
  }
  Options o_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"carewatch_hostile: normal load beside hostile clients"};
  app.add_option("--server", o.server)->required();
  app.add_option("--pid", o.pid, "carewatchd's pid (RSS and threads)")->required();
  app.add_option("--platform", o.platform)->required();
  app.add_option("--service", o.service)->required();
  app.add_option("--regulator", o.regulator)->required();
  app.add_option("--author", o.author)->required();
  app.add_option("--seconds", o.seconds, "Length of each phase");
  app.add_option("--max-rss-mb", o.max_rss_mb, "Fail above this RSS");
  app.add_option("--max-threads", o.max_threads, "Fail above this many threads");
  app.add_option("--attacks", o.attacks,
                 "Comma-separated: ids,noauth,streams,urls,compile,reasons");
  CLI11_PARSE(app, argc, argv);

  Run run(o);
  auto phase = [&](bool attack, Latencies* lat, int64_t* max_rss, int* max_threads) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> attackers;
    if (attack) run.Attacks(stop, &attackers);
    std::thread normal([&] { run.Normal(stop, lat, attack ? "attack" : "calm"); });
    auto start = Clock::now(), end = start + std::chrono::seconds(o.seconds);
    int next_print = 10;
    while (Clock::now() < end) {
      auto [rss, threads] = Sample(o.pid);
      *max_rss = std::max(*max_rss, rss);
      *max_threads = std::max(*max_threads, threads);
      int elapsed = static_cast<int>(
          std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count());
      if (elapsed >= next_print) {  // the curve, not only the peak
        std::printf("  %s %3d s: RSS %lld MB, threads %d\n", attack ? "attack" : "calm  ", elapsed,
                    static_cast<long long>(rss / 1024), threads);
        std::fflush(stdout);
        next_print += 10;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    stop = true;
    normal.join();
    for (auto& t : attackers) t.join();
  };
  Latencies calm, hostile;
  int64_t calm_rss = 0, hostile_rss = 0;
  int calm_threads = 0, hostile_threads = 0;
  phase(false, &calm, &calm_rss, &calm_threads);
  phase(true, &hostile, &hostile_rss, &hostile_threads);
  auto [after_rss, after_threads] = Sample(o.pid);

  double calm_rate = static_cast<double>(calm.ok) / o.seconds;
  double hostile_rate = static_cast<double>(hostile.ok) / o.seconds;
  std::printf(
      "normal load alone:    %.0f calls/s, p50 %.2f ms, p99 %.2f ms, max RSS %lld MB, "
      "max threads %d\n",
      calm_rate, calm.Percentile(0.5), calm.Percentile(0.99),
      static_cast<long long>(calm_rss / 1024), calm_threads);
  std::printf(
      "beside the attacks:   %.0f calls/s, p50 %.2f ms, p99 %.2f ms, max RSS %lld MB, "
      "max threads %d\n",
      hostile_rate, hostile.Percentile(0.5), hostile.Percentile(0.99),
      static_cast<long long>(hostile_rss / 1024), hostile_threads);
  std::printf("after the attacks:    RSS %lld MB, threads %d\n",
              static_cast<long long>(after_rss / 1024), after_threads);
  std::printf(
      "attack calls: %lld (%lld answered other than expected); regulator reads: %lld "
      "answered, %lld failed, largest GetStats %lld bytes\n",
      static_cast<long long>(run.attacks.load()), static_cast<long long>(run.unexpected.load()),
      static_cast<long long>(run.audit_ok_.load()),
      static_cast<long long>(run.audit_failed_.load()),
      static_cast<long long>(run.stats_bytes_.load()));
  std::printf("throughput under attack / alone = %.2f; p99 under attack / alone = %.2f\n",
              calm_rate > 0 ? hostile_rate / calm_rate : 0,
              calm.Percentile(0.99) > 0 ? hostile.Percentile(0.99) / calm.Percentile(0.99) : 0);
  bool ok = true;
  auto fail = [&](const std::string& why) {
    std::printf("FAIL: %s\n", why.c_str());
    ok = false;
  };
  if (hostile_rss / 1024 > o.max_rss_mb)
    fail("RSS " + std::to_string(hostile_rss / 1024) + " MB above " + std::to_string(o.max_rss_mb));
  if (hostile_threads > o.max_threads)
    fail("threads " + std::to_string(hostile_threads) + " above " + std::to_string(o.max_threads));
  if (calm.failed || hostile.failed) fail("normal calls failed");
  if (hostile.ok == 0) fail("no normal call was served under attack");
  if (run.audit_failed_ || run.audit_ok_ == 0) fail("regulator reads failed under attack");
  if (run.unexpected) fail("attacks were answered other than expected");
  if (Sample(o.pid).first == 0) fail("carewatchd is gone");
  std::printf("%s\n", ok ? "hostile soak: passed" : "hostile soak: FAILED");
  return ok ? 0 : 1;
}
