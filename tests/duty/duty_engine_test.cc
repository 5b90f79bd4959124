#include "engine/duty/duty_engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/rules/duration.h"
#include "tests/testing.h"

namespace carewatch::duty {
namespace {

constexpr int64_t kT0 = 1767607200;  // 2026-01-05T10:00:00Z
constexpr int64_t kHour = 3600;

// Duty d: 1h deadline, two actions; systemic when, within a day, at least 2
// breaches and at least half the obligations are breached.
std::string Pack(const std::string& accountability = "") {
  return "pack: t\nversion: \"1\"\nduties:\n"
         "  - {id: d, deadline: 1h, actions: [remove_content, report_to_nca],\n"
         "     systemic: {window: 1d, min_breaches: 2, min_breach_rate: 0.5}}\n"
         "rules:\n"
         "  - {id: r, duty: d, severity: high, when: {field: text, phrases: [signal]}}\n";
}

class DutyEngineTest : public ::testing::Test {
 protected:
  void Start(const std::string& accountability_yaml = "", ledger::Ledger* ledger = nullptr) {
    std::vector<rules::SourceFile> files = {{"pack.yaml", Pack()}};
    if (!accountability_yaml.empty()) files.push_back({"acc.yaml", accountability_yaml});
    rules::LoadResult loaded = rules::LoadRuleSetFromSources(files, testing::FakeFiles{}.Reader());
    ASSERT_TRUE(loaded.ruleset) << testing::Describe(loaded.diagnostics);
    std::unique_ptr<eval::Evaluator> e;
    ASSERT_TRUE(eval::Evaluator::Create(loaded.ruleset, {}, &e).ok());
    DutyEngineOptions options;
    options.hmac_key = "test-key";
    options.keep_history = true;
    engine_ = std::make_unique<DutyEngine>(ledger, options);
    ASSERT_TRUE(engine_->Recover().ok());
    ASSERT_TRUE(engine_->Activate(std::move(e), kT0).ok());
  }

  v1::Verdict Report(const std::string& id, int64_t at, const std::string& service = "svc",
                     const std::string& text = "a signal here") {
    v1::ContentReport r;
    r.set_report_id(id);
    r.set_service_id(service);
    r.mutable_received_at()->set_seconds(at);
    r.set_text(text);
    v1::Verdict v;
    Status s = engine_->SubmitReport(r, &v);
    EXPECT_TRUE(s.ok()) << s.message();
    return v;
  }

  Status Act(const std::string& id, const std::string& action, int64_t at,
             std::vector<v1::Obligation>* out = nullptr, const std::string& service = "svc") {
    std::vector<v1::Obligation> ignored;
    return engine_->RecordAction({service, id, action, at, "mod-1"}, out ? out : &ignored);
  }

  v1::ObligationStatus StatusOf(const std::vector<v1::Obligation>& obs) {
    return obs.empty() ? v1::OBLIGATION_STATUS_UNSPECIFIED : obs[0].status();
  }

  std::unique_ptr<DutyEngine> engine_;
};

TEST_F(DutyEngineTest, ReportOpensAnObligation) {
  Start();
  v1::Verdict v = Report("r1", kT0);
  ASSERT_EQ(v.obligations_size(), 1);
  EXPECT_EQ(v.obligations(0).status(), v1::OBLIGATION_STATUS_OPEN);
  EXPECT_EQ(v.obligations(0).deadline().seconds(), kT0 + kHour);
  EXPECT_GT(v.ledger_seq(), 0u);
  EXPECT_EQ(engine_->counts().open, 1u);
  EXPECT_EQ(engine_->NextDeadline(), kT0 + kHour);
}

TEST_F(DutyEngineTest, UnflaggedReportsAreOnlyCounted) {
  Start();
  uint64_t events = engine_->counts().events;
  v1::Verdict v = Report("quiet", kT0, "svc", "nothing to see");
  EXPECT_EQ(v.flags_size(), 0);
  EXPECT_EQ(engine_->counts().events, events) << "no event for a report that matched nothing";
  EXPECT_EQ(engine_->counts().reports, 1u);
}

TEST_F(DutyEngineTest, MetWhenAllActionsAreOnTime) {
  Start();
  Report("r1", kT0);
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 600, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_OPEN);
  ASSERT_TRUE(Act("r1", "report_to_nca", kT0 + 1200, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_MET);
  ASSERT_TRUE(engine_->Sweep(kT0 + 5 * kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty()) << "a met obligation is never breached";
  EXPECT_EQ(engine_->counts().met, 1u);
}

TEST_F(DutyEngineTest, DischargedByReviewBeforeTheDeadline) {
  Start();
  Report("r1", kT0);
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "reviewed_not_illegal", kT0 + 60, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_DISCHARGED);
  ASSERT_TRUE(engine_->Sweep(kT0 + 5 * kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty());
}

TEST_F(DutyEngineTest, SweeperBreachesMissedDeadlines) {
  Start();
  Report("r1", kT0);
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 60).ok());
  ASSERT_TRUE(engine_->Sweep(kT0 + kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty()) << "not before the deadline has passed";
  ASSERT_TRUE(engine_->Sweep(kT0 + kHour + 1).ok());
  auto breaches = engine_->Breaches();
  ASSERT_EQ(breaches.size(), 1u);
  EXPECT_EQ(breaches[0].kind(), "missed");
  EXPECT_EQ(breaches[0].at().seconds(), kT0 + kHour);
  ASSERT_EQ(breaches[0].missing_actions_size(), 1);
  EXPECT_EQ(breaches[0].missing_actions(0), "report_to_nca");
}

TEST_F(DutyEngineTest, LateActionBeforeTheSweeperIsALateBreach) {
  Start();
  Report("r1", kT0);
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 60).ok());
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "report_to_nca", kT0 + 2 * kHour, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_BREACHED);
  auto breaches = engine_->Breaches();
  ASSERT_EQ(breaches.size(), 1u);
  EXPECT_EQ(breaches[0].kind(), "late");
  EXPECT_EQ(breaches[0].at().seconds(), kT0 + 2 * kHour);
}

TEST_F(DutyEngineTest, BreachIsNeverUndone) {
  Start();
  Report("r1", kT0);
  ASSERT_TRUE(engine_->Sweep(kT0 + 2 * kHour).ok());
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 3 * kHour, &obs).ok());
  ASSERT_TRUE(Act("r1", "report_to_nca", kT0 + 3 * kHour, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_BREACHED);
  EXPECT_EQ(engine_->Breaches().size(), 1u);
}

TEST_F(DutyEngineTest, DuplicateActionsDoNotDoubleCount) {
  Start();
  Report("r1", kT0);
  uint64_t before = engine_->counts().events;
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 60).ok());
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 120).ok());
  EXPECT_EQ(engine_->counts().events, before + 2) << "both recorded";
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "report_to_nca", kT0 + 180, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_MET);
  EXPECT_EQ(engine_->counts().met, 1u);
}

TEST_F(DutyEngineTest, ActionsForUnknownReportsAreRecordedAndOweNothing) {
  Start();
  uint64_t before = engine_->counts().events;
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("nope", "remove_content", kT0, &obs).ok());
  EXPECT_TRUE(obs.empty());
  EXPECT_EQ(engine_->counts().events, before + 1);
}

TEST_F(DutyEngineTest, BadActionsAreRefusedNamingTheField) {
  Start();
  Report("r1", kT0);
  Status s = Act("r1", "remove_content", kT0 - 10);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("taken_at"), std::string::npos) << s.message();
  s = Act("r1", "launch_rocket", kT0 + 10);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown action 'launch_rocket'"), std::string::npos) << s.message();
  EXPECT_EQ(engine_->counts().open, 1u) << "refused actions change nothing";
}

TEST_F(DutyEngineTest, ClockGoingBackwardsIsRefused) {
  Start();
  Report("r1", kT0);
  ASSERT_TRUE(engine_->Sweep(kT0 + 30).ok());
  Status s = engine_->Sweep(kT0 + 10);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("backwards"), std::string::npos);
  EXPECT_EQ(engine_->clock(), kT0 + 30);
}

TEST_F(DutyEngineTest, RetriedReportIsIdempotent) {
  Start();
  v1::Verdict first = Report("r1", kT0);
  v1::Verdict again = Report("r1", kT0 + 5);
  EXPECT_EQ(first.SerializeAsString(), again.SerializeAsString());
  EXPECT_EQ(engine_->counts().open, 1u);
  EXPECT_EQ(engine_->counts().flagged, 1u);
}

TEST_F(DutyEngineTest, MissingReportFieldsAreNamed) {
  Start();
  v1::ContentReport r;
  r.set_service_id("svc");
  r.mutable_received_at()->set_seconds(kT0);
  v1::Verdict v;
  Status s = engine_->SubmitReport(r, &v);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("report_id"), std::string::npos);
}

TEST_F(DutyEngineTest, FindingOpensGrowsAndCloses) {
  Start();
  // Three reports, none acted on; their deadlines pass one after another.
  Report("r1", kT0);
  Report("r2", kT0 + 600);
  Report("r3", kT0 + 1200);
  ASSERT_TRUE(engine_->Sweep(kT0 + kHour + 1).ok());
  EXPECT_TRUE(engine_->Findings().empty()) << "one breach is below min_breaches";
  ASSERT_TRUE(engine_->Sweep(kT0 + kHour + 601).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].status(), "open");
  EXPECT_EQ(findings[0].breaches(), 2);
  EXPECT_EQ(findings[0].opened_at().seconds(), kT0 + 600 + kHour);
  ASSERT_TRUE(engine_->Sweep(kT0 + kHour + 1201).ok());
  findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u) << "one finding grows while the condition holds";
  EXPECT_EQ(findings[0].breaches(), 3);
  EXPECT_EQ(findings[0].obligations(), 3);
  EXPECT_DOUBLE_EQ(findings[0].breach_rate(), 1.0);
  // A day later the breaches leave the window: the finding closes.
  ASSERT_TRUE(engine_->Sweep(kT0 + 26 * kHour).ok());
  findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].status(), "closed");
  EXPECT_EQ(findings[0].breaches(), 3);
}

TEST_F(DutyEngineTest, NoFindingWhenTheRateIsLow) {
  Start();
  // 2 breaches among 5 obligations: 40% < 50%.
  for (int i = 0; i < 5; ++i) Report("r" + std::to_string(i), kT0 + i);
  for (int i = 2; i < 5; ++i) {
    ASSERT_TRUE(Act("r" + std::to_string(i), "remove_content", kT0 + 100).ok());
    ASSERT_TRUE(Act("r" + std::to_string(i), "report_to_nca", kT0 + 100).ok());
  }
  ASSERT_TRUE(engine_->Sweep(kT0 + 2 * kHour).ok());
  EXPECT_EQ(engine_->Breaches().size(), 2u);
  EXPECT_TRUE(engine_->Findings().empty());
}

TEST_F(DutyEngineTest, FindingsAreSeparatePerService) {
  Start();
  Report("a1", kT0, "svc-a");
  Report("a2", kT0, "svc-a");
  Report("b1", kT0, "svc-b");
  ASSERT_TRUE(engine_->Sweep(kT0 + 2 * kHour).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].service_id(), "svc-a");
}

TEST_F(DutyEngineTest, AccountableManagersByTenureMidWindow) {
  // A. Old in post until 10:30 on the day; B. New from then. Breaches at
  // 11:00 (deadline of r1, received 10:00) fall to B; a breach at 10:20
  // (r0 received 09:20) falls to A; one before anyone was in post is unattributed.
  Start(
      "accountability:\n"
      "  - {service_id: svc, duty: \"d\", name: A. Old, role: Head of Safety, from: "
      "2026-01-05T08:00:00Z,"
      " to: 2026-01-05T10:30:00Z}\n"
      "  - {service_id: svc, duty: \"*\", name: B. New, role: Head of Safety, from: "
      "2026-01-05T10:30:00Z}\n"
      "  - {service_id: other, duty: \"d\", name: C. Elsewhere, role: Head, from: 2020-01-01}\n");
  Report("early", kT0 - 4 * kHour);  // deadline 07:00: nobody in post
  Report("r0", kT0 - 40 * 60);       // deadline 10:20: A. Old
  Report("r1", kT0);                 // deadline 11:00: B. New
  ASSERT_TRUE(engine_->Sweep(kT0 + 2 * kHour).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  const v1::Finding& f = findings[0];
  EXPECT_EQ(f.breaches(), 3);
  ASSERT_EQ(f.accountable_size(), 2);
  EXPECT_EQ(f.accountable(0).name(), "A. Old");
  EXPECT_EQ(f.accountable(0).breaches(), 1);
  EXPECT_EQ(f.accountable(1).name(), "B. New");
  EXPECT_EQ(f.accountable(1).breaches(), 1);
  EXPECT_EQ(f.unattributed_breaches(), 1);
}

TEST(DutyEngineRecovery, StateIsRebuiltFromTheLedger) {
  std::string dir = ::testing::TempDir() + "/cw-duty-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  ledger::LedgerOptions lo;
  lo.url = "sqlite://" + dir + "/ledger.db";
  auto load = [] {
    rules::LoadResult loaded =
        rules::LoadRuleSetFromSources({{"pack.yaml", Pack()}}, testing::FakeFiles{}.Reader());
    std::unique_ptr<eval::Evaluator> e;
    EXPECT_TRUE(eval::Evaluator::Create(loaded.ruleset, {}, &e).ok());
    return std::shared_ptr<const eval::Evaluator>(std::move(e));
  };
  DutyEngineOptions options;
  options.hmac_key = "k";
  v1::Verdict first;
  {
    std::unique_ptr<ledger::Ledger> l;
    ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
    DutyEngine engine(l.get(), options);
    ASSERT_TRUE(engine.Recover().ok());
    ASSERT_TRUE(engine.Activate(load(), kT0).ok());
    v1::ContentReport r;
    r.set_report_id("r1");
    r.set_service_id("svc");
    r.mutable_received_at()->set_seconds(kT0);
    r.set_text("signal");
    ASSERT_TRUE(engine.SubmitReport(r, &first).ok());
    r.set_report_id("r2");
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(r, &v).ok());
    std::vector<v1::Obligation> obs;
    ASSERT_TRUE(engine.RecordAction({"svc", "r1", "remove_content", kT0 + 10, "m"}, &obs).ok());
  }
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  DutyEngine engine(l.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  ASSERT_TRUE(engine.Activate(load(), kT0 + 20).ok());
  EXPECT_EQ(engine.counts().open, 2u);
  // The retried report gets its first verdict back, and r1 remembers its action.
  v1::ContentReport r;
  r.set_report_id("r1");
  r.set_service_id("svc");
  r.mutable_received_at()->set_seconds(kT0);
  r.set_text("signal");
  v1::Verdict again;
  ASSERT_TRUE(engine.SubmitReport(r, &again).ok());
  EXPECT_EQ(again.ledger_seq(), first.ledger_seq());
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(engine.RecordAction({"svc", "r1", "report_to_nca", kT0 + 30, "m"}, &obs).ok());
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0].status(), v1::OBLIGATION_STATUS_MET);
  ASSERT_TRUE(engine.Sweep(kT0 + 2 * kHour).ok());
  EXPECT_EQ(engine.counts().breached, 1u) << "r2 was never acted on";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::duty
