// Cross-platform signals beside plain evaluation, side by side in one run,
// in process, on one real SQLite ledger (docs/performance.md):
//   (a) DutyEngine::SubmitReport of a flagged report: the baseline, what
//       Moderation.Evaluate costs below the transport;
//   (b) BlindEvaluate, 1 element a call (quota check, OPRF, a recorded
//       SIGNAL_EVALUATION event);
//   (c) BlindEvaluate, 100 elements a call;
//   (d) SubmitSignals of a token no other service holds (lookup, one row);
//   (e) SubmitSignals that completes a link: two alerts, two review
//       obligations opened through the duty engine;
//   (f) the client's side of one token: canonicalise, Blind, Finalize.
// Every row uses the same writer threads, so group commit helps each alike.
// Usage: carewatch_bench_signals [--n N] [--threads N] [--dir DIR]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "engine/duty/duty_engine.h"
#include "engine/eval/evaluator.h"
#include "engine/rules/loader.h"
#include "engine/signals/canonical.h"
#include "engine/signals/oprf.h"
#include "engine/signals/signals.h"
#include "tools/bench/bench_args.h"

using namespace carewatch;
using Clock = std::chrono::steady_clock;

namespace {

// Runs body(i) for i in [0, n) on `threads` threads; returns calls/s.
double Rate(int n, int threads, const std::function<void(int)>& body) {
  std::atomic<int> next{0};
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i; (i = next++) < n;) body(i);
    });
  }
  for (auto& th : pool) th.join();
  double s = std::chrono::duration<double>(Clock::now() - start).count();
  return n / s;
}

const char* kPack =
    "pack: b\nversion: \"1\"\nduties:\n"
    "  - {id: d, deadline: 24h, actions: [remove_content]}\n"
    "  - {id: review, deadline: 48h, actions: [review_linked_account]}\n"
    "rules:\n"
    "  - {id: r, duty: d, severity: high, when: {field: text, phrases: [signal]}}\n"
    "  - {id: linkage, duty: review, severity: high, when: {all: [{field: reason, equals: "
    "linkage_alert}, {field: reporter_type, equals: carewatch}]}}\n";

}  // namespace

int main(int argc, char** argv) {
  int n = 4000, threads = 16;
  std::string dir = "/tmp/carewatch-bench-signals";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--n"))
      n = static_cast<int>(bench::IntArg("--n", argv[i + 1], 1, 10000000));
    else if (!std::strcmp(argv[i], "--threads"))
      threads = static_cast<int>(bench::IntArg("--threads", argv[i + 1], 1, 4096));
    else if (!std::strcmp(argv[i], "--dir"))
      dir = argv[i + 1];
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ledger::LedgerOptions lo;
  lo.url = "sqlite://" + dir + "/ledger.db";
  std::unique_ptr<ledger::Ledger> ledger;
  if (Status s = ledger::Ledger::Open(lo, &ledger); !s.ok()) {
    std::fprintf(stderr, "ledger: %s\n", s.message().c_str());
    return 1;
  }
  duty::DutyEngineOptions d;
  d.hmac_key = "bench";
  duty::DutyEngine engine(ledger.get(), d);
  if (!engine.Recover().ok()) return 1;
  rules::LoadResult loaded = rules::LoadRuleSetFromSources(
      {{"pack.yaml", kPack}},
      [](const std::string&, std::string*) { return std::optional<std::string>(); });
  if (!loaded.ruleset) return 1;
  std::unique_ptr<eval::Evaluator> e;
  if (!eval::Evaluator::Create(loaded.ruleset, {}, &e).ok()) return 1;
  if (!engine.Activate(std::shared_ptr<const eval::Evaluator>(std::move(e))).ok()) return 1;
  signals::SignalOptions so;
  so.key_path = dir + "/signals.key";
  so.hmac_key = "bench";
  so.daily_quota = 100000000;
  signals::SignalEngine sig(ledger.get(), &engine, so);
  if (!sig.Open().ok()) return 1;

  const int64_t now = std::time(nullptr);
  std::atomic<int> errors{0};
  auto check = [&](const Status& s) {
    if (!s.ok() && errors++ == 0) std::fprintf(stderr, "error: %s\n", s.message().c_str());
  };

  double a = Rate(n, threads, [&](int i) {
    v1::ContentReport r;
    r.set_report_id("a-" + std::to_string(i));
    r.set_service_id("svc");
    r.mutable_received_at()->set_seconds(now);
    r.set_text("a signal here");
    v1::Verdict v;
    check(engine.SubmitReport(r, &v));
  });

  signals::Scalar blind;
  signals::Element blinded;
  check(signals::Blind(signals::TokenInput("email", "someone@example.test"), &blind, &blinded));
  const std::string element(reinterpret_cast<const char*>(blinded.data()), blinded.size());
  double b = Rate(n, threads, [&](int) {
    std::vector<std::string> out;
    int64_t left = 0;
    check(sig.BlindEvaluate("svc-" + std::to_string(0), "bench", {element}, &out, &left));
  });
  const int calls100 = std::max(1, n / 100);
  double c = Rate(calls100, threads, [&](int) {
    std::vector<std::string> out;
    int64_t left = 0;
    check(sig.BlindEvaluate("svc-1", "bench", std::vector<std::string>(100, element), &out, &left));
  });

  std::vector<std::string> tokens(n);
  for (int i = 0; i < n; ++i)
    check(sig.TokenOf("handle", "otherapp:user" + std::to_string(i), &tokens[i]));
  double dd = Rate(n, threads, [&](int i) {
    check(sig.Submit("svc-a", "d-" + std::to_string(i), {{"handle", tokens[i], "d"}}, nullptr));
  });
  double ee = Rate(n, threads, [&](int i) {
    check(sig.Submit("svc-b", "e-" + std::to_string(i), {{"handle", tokens[i], "d"}}, nullptr));
  });
  double f = Rate(n, threads, [&](int i) {
    std::string canonical;
    check(signals::Canonicalize("email", "User" + std::to_string(i) + "@Example.test", &canonical));
    signals::Scalar bl;
    signals::Element be;
    check(signals::Blind(signals::TokenInput("email", canonical), &bl, &be));
    std::string out;
    check(signals::Finalize(signals::TokenInput("email", canonical), bl, element, &out));
  });
  if (errors > 0) {
    std::fprintf(stderr, "%d errors\n", errors.load());
    return 1;
  }
  std::printf("signals benchmark: %d calls a row, %d threads, one SQLite ledger\n", n, threads);
  std::printf("(a) DutyEngine::SubmitReport, flagged report      %10.0f /s   baseline\n", a);
  std::printf("(b) BlindEvaluate, 1 element a call               %10.0f /s   %.2fx (a)\n", b,
              b / a);
  std::printf("(c) BlindEvaluate, 100 elements a call            %10.0f elements/s   %.2fx (a)\n",
              c * 100, c * 100 / a);
  std::printf("(d) SubmitSignals, token held by no one else      %10.0f /s   %.2fx (a)\n", dd,
              dd / a);
  std::printf("(e) SubmitSignals completing a link (2 alerts)    %10.0f /s   %.2fx (a)\n", ee,
              ee / a);
  std::printf("(f) client side of one token (Blind + Finalize)   %10.0f /s   %.2fx (a)\n", f,
              f / a);
  std::printf("ledger: %llu events in %llu commits\n",
              static_cast<unsigned long long>(ledger->size()),
              static_cast<unsigned long long>(ledger->commits()));
  return 0;
}
