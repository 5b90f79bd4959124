// Many threads share one Evaluator (one read-only Hyperscan database set),
// each with its own Context. Run under ThreadSanitizer by `make test`.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine/eval/evaluator.h"
#include "engine/rules/loader.h"
#include "tools/corpus/corpus.h"

namespace carewatch::eval {
namespace {

std::unique_ptr<Evaluator> ShippedEvaluator() {
  rules::LoadResult loaded = rules::LoadRuleSet({CAREWATCH_SOURCE_DIR "/rules"});
  EXPECT_TRUE(loaded.ruleset);
  std::unique_ptr<Evaluator> e;
  EXPECT_TRUE(Evaluator::Create(loaded.ruleset, {}, &e).ok());
  return e;
}

std::vector<v1::ContentReport> Corpus(int n) {
  corpus::CorpusOptions options;
  options.seed = 7;
  options.signal_fraction = 0.3;
  corpus::CorpusGenerator gen(options);
  std::vector<v1::ContentReport> out(n);
  for (auto& r : out) gen.Next(&r);
  return out;
}

TEST(EvaluatorThreads, ManyThreadsAgreeWithOneThread) {
  auto e = ShippedEvaluator();
  ASSERT_TRUE(e);
  auto reports = Corpus(400);
  std::vector<std::string> expected(reports.size());
  {
    auto ctx = e->NewContext();
    v1::Verdict v;
    for (size_t i = 0; i < reports.size(); ++i) {
      ASSERT_TRUE(e->Evaluate(reports[i], *ctx, &v).ok());
      expected[i] = v.SerializeAsString();
    }
  }
  int flagged = 0;
  for (const auto& s : expected) {
    v1::Verdict v;
    v.ParseFromString(s);
    flagged += v.flags_size() > 0;
  }
  EXPECT_GT(flagged, 20) << "the corpus must exercise the rules";

  constexpr int kThreads = 8;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto ctx = e->NewContext();
      v1::Verdict v;
      for (int round = 0; round < 3; ++round) {
        for (size_t i = t; i < reports.size(); i += 1 + (t % 3)) {
          // Alternate between a private Context and the shared pool.
          Status s = (i % 2) ? e->Evaluate(reports[i], *ctx, &v) : e->Evaluate(reports[i], &v);
          if (!s.ok() || v.SerializeAsString() != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace carewatch::eval

namespace carewatch::eval {
namespace {

// Hyperscan and the RE2::Set alternative must flag exactly the same rules:
// a cross-check of the Hyperscan pattern translation on a whole corpus.
TEST(EvaluatorCrossCheck, HyperscanAgreesWithRe2Set) {
  rules::LoadResult loaded = rules::LoadRuleSet({CAREWATCH_SOURCE_DIR "/rules"});
  ASSERT_TRUE(loaded.ruleset);
  std::unique_ptr<Evaluator> hs, re2set;
  ASSERT_TRUE(Evaluator::Create(loaded.ruleset, {}, &hs).ok());
  EvaluatorOptions options;
  options.use_re2_set = true;
  ASSERT_TRUE(Evaluator::Create(loaded.ruleset, options, &re2set).ok());
  auto reports = Corpus(2000);
  int flagged = 0;
  for (const auto& r : reports) {
    v1::Verdict a, b;
    ASSERT_TRUE(hs->Evaluate(r, &a).ok());
    ASSERT_TRUE(re2set->Evaluate(r, &b).ok());
    ASSERT_EQ(a.SerializeAsString(), b.SerializeAsString()) << r.DebugString();
    flagged += a.flags_size() > 0;
  }
  EXPECT_GT(flagged, 100);
}

// Skipping the scan of fields that no rule can use on a report (gate_scans)
// changes no verdict, with the shipped packs and with 2,000 generated rules
// on top (conditions of every kind), and does skip: with the shipped packs,
// whose text rules are for minors, fewer bytes are scanned.
TEST(EvaluatorCrossCheck, GatedScansGiveTheSameVerdicts) {
  rules::LoadResult shipped = rules::LoadRuleSet({CAREWATCH_SOURCE_DIR "/rules"});
  ASSERT_TRUE(shipped.ruleset);
  std::vector<rules::SourceFile> files;
  std::string error;
  for (const auto& pack : shipped.ruleset->packs()) {
    files.push_back({pack.file, *rules::ReadFileToString(pack.file, &error)});
  }
  files.push_back({"generated.yaml", corpus::GenerateRulePack(2000, 7)});
  rules::LoadResult scaled = rules::LoadRuleSetFromSources(files, rules::ReadFileToString);
  ASSERT_TRUE(scaled.ruleset);
  auto reports = Corpus(2000);
  for (const auto& set : {shipped.ruleset, scaled.ruleset}) {
    EvaluatorOptions off;
    off.gate_scans = false;
    std::unique_ptr<Evaluator> gated, ungated;
    ASSERT_TRUE(Evaluator::Create(set, {}, &gated).ok());
    ASSERT_TRUE(Evaluator::Create(set, off, &ungated).ok());
    auto gated_ctx = gated->NewContext();
    auto ungated_ctx = ungated->NewContext();
    int flagged = 0;
    for (const auto& r : reports) {
      v1::Verdict a, b;
      ASSERT_TRUE(gated->Evaluate(r, *gated_ctx, &a).ok());
      ASSERT_TRUE(ungated->Evaluate(r, *ungated_ctx, &b).ok());
      ASSERT_EQ(a.SerializeAsString(), b.SerializeAsString()) << r.DebugString();
      flagged += a.flags_size() > 0;
    }
    EXPECT_GT(flagged, 100);
    EXPECT_LE(gated_ctx->bytes_scanned(), ungated_ctx->bytes_scanned());
    if (set == shipped.ruleset) {
      EXPECT_LT(gated_ctx->bytes_scanned(), ungated_ctx->bytes_scanned() * 3 / 4)
          << "reports about adults need no text scan with the shipped packs";
    }
  }
}

// Evaluate without a Context uses the calling thread's own one for each
// Evaluator: switching between Evaluators (as after a reload) on one thread,
// even to a new one made where an old one was freed, gives each its own
// verdicts.
TEST(EvaluatorThreads, ThreadContextsFollowTheEvaluator) {
  auto make = [](const std::string& phrase) {
    rules::LoadResult r = rules::LoadRuleSetFromSources(
        {{"p.yaml",
          "pack: p\nversion: \"1\"\nduties:\n"
          "  - {id: d, deadline: 1h, actions: [remove_content]}\nrules:\n"
          "  - {id: r, duty: d, severity: low, when: {field: text, phrases: [" +
              phrase + "]}}\n"}},
        nullptr);
    std::unique_ptr<Evaluator> e;
    EXPECT_TRUE(Evaluator::Create(r.ruleset, {}, &e).ok());
    return e;
  };
  v1::ContentReport alpha, beta;
  alpha.set_text("say alpha now");
  beta.set_text("say beta now");
  auto flags = [](const Evaluator& e, const v1::ContentReport& r) {
    v1::Verdict v;
    EXPECT_TRUE(e.Evaluate(r, &v).ok());
    return v.flags_size();
  };
  auto a = make("alpha");
  auto b = make("beta");
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(flags(*a, alpha), 1);
    EXPECT_EQ(flags(*b, alpha), 0);
    EXPECT_EQ(flags(*b, beta), 1);
    EXPECT_EQ(flags(*a, beta), 0);
  }
  for (int round = 0; round < 5; ++round) {  // freed and made again
    a = make(round % 2 ? "alpha" : "beta");
    EXPECT_EQ(flags(*a, alpha), round % 2 ? 1 : 0);
    EXPECT_EQ(flags(*a, beta), round % 2 ? 0 : 1);
  }
}

}  // namespace
}  // namespace carewatch::eval
