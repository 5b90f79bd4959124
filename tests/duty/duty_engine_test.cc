#include "engine/duty/duty_engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "engine/common/digest.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/copy.h"
#include "engine/ledger/pg_backend.h"
#include "engine/ledger/verify.h"
#include "engine/rules/duration.h"
#include "tests/test_ledger.h"
#include "tests/testing.h"

namespace carewatch::duty {
namespace {

constexpr int64_t kT0 = 1767607200;  // 2026-01-05T10:00:00Z
constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 86400;

// Duty d: 1h deadline, two actions; systemic when, within a day, at least 2
// breaches and at least half the obligations due are breached. `grace` is
// the duty's record_grace.
std::string Pack(const std::string& grace = "0s") {
  return "pack: t\nversion: \"1\"\nduties:\n"
         "  - {id: d, deadline: 1h, record_grace: " +
         grace +
         ", actions: [remove_content, report_to_nca],\n"
         "     systemic: {window: 1d, min_breaches: 2, min_breach_rate: 0.5}}\n"
         "rules:\n"
         "  - {id: r, duty: d, severity: high, when: {field: text, phrases: [signal]}}\n";
}

std::shared_ptr<const eval::Evaluator> LoadEvaluator(const std::string& pack,
                                                     const std::string& accountability = "") {
  std::vector<rules::SourceFile> files = {{"pack.yaml", pack}};
  if (!accountability.empty()) files.push_back({"acc.yaml", accountability});
  rules::LoadResult loaded = rules::LoadRuleSetFromSources(files, testing::FakeFiles{}.Reader());
  EXPECT_TRUE(loaded.ruleset) << testing::Describe(loaded.diagnostics);
  if (!loaded.ruleset) return nullptr;
  std::unique_ptr<eval::Evaluator> e;
  EXPECT_TRUE(eval::Evaluator::Create(loaded.ruleset, {}, &e).ok());
  return std::shared_ptr<const eval::Evaluator>(std::move(e));
}

v1::ContentReport MakeReport(const std::string& id, int64_t at, const std::string& service = "svc",
                             const std::string& text = "a signal here") {
  v1::ContentReport r;
  r.set_report_id(id);
  r.set_service_id(service);
  r.mutable_received_at()->set_seconds(at);
  r.set_text(text);
  return r;
}

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/cw-duty-" + name + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

// The engine on a simulated server clock `now_`: reports and actions are
// recorded when they are claimed unless a test says otherwise.
class DutyEngineTest : public ::testing::Test {
 protected:
  void Start(const std::string& accountability_yaml = "", ledger::Ledger* ledger = nullptr,
             const std::string& grace = "0s") {
    auto e = LoadEvaluator(Pack(grace), accountability_yaml);
    ASSERT_TRUE(e);
    DutyEngineOptions options;
    options.hmac_key = "test-key";
    options.keep_history = true;
    options.now = [this] { return now_; };
    engine_ = std::make_unique<DutyEngine>(ledger, options);
    ASSERT_TRUE(engine_->Recover().ok());
    ASSERT_TRUE(engine_->Activate(e).ok());
  }

  v1::Verdict Report(const std::string& id, int64_t at, const std::string& service = "svc",
                     const std::string& text = "a signal here") {
    now_ = std::max(now_, at);
    v1::Verdict v;
    Status s = engine_->SubmitReport(MakeReport(id, at, service, text), &v);
    EXPECT_TRUE(s.ok()) << s.message();
    return v;
  }

  // An action claimed at `at`, recorded at `recorded` (default: `at`).
  Status Act(const std::string& id, const std::string& action, int64_t at,
             std::vector<v1::Obligation>* out = nullptr, const std::string& service = "svc",
             int64_t recorded = 0) {
    now_ = std::max(now_, recorded ? recorded : at);
    std::vector<v1::Obligation> ignored;
    return engine_->RecordAction({service, id, action, at, "mod-1"}, out ? out : &ignored);
  }

  Status Sweep(int64_t t) {
    now_ = std::max(now_, t);
    return engine_->Sweep(t);
  }

  v1::ObligationStatus StatusOf(const std::vector<v1::Obligation>& obs) {
    return obs.empty() ? v1::OBLIGATION_STATUS_UNSPECIFIED : obs[0].status();
  }

  int64_t now_ = kT0;
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
  EXPECT_EQ(engine_->NextSweepDue(), kT0 + kHour);
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
  ASSERT_TRUE(Sweep(kT0 + 5 * kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty()) << "a met obligation is never breached";
  EXPECT_EQ(engine_->counts().met, 1u);
}

TEST_F(DutyEngineTest, DischargedByReviewBeforeTheDeadline) {
  Start();
  Report("r1", kT0);
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "reviewed_not_illegal", kT0 + 60, &obs).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_DISCHARGED);
  ASSERT_TRUE(Sweep(kT0 + 5 * kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty());
}

TEST_F(DutyEngineTest, SweeperBreachesMissedDeadlines) {
  Start();
  Report("r1", kT0);
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 60).ok());
  ASSERT_TRUE(Sweep(kT0 + kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty()) << "not before the deadline has passed";
  ASSERT_TRUE(Sweep(kT0 + kHour + 1).ok());
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
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour).ok());
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
  ASSERT_TRUE(Sweep(kT0 + 30).ok());
  Status s = Sweep(kT0 + 10);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("backwards"), std::string::npos);
  EXPECT_EQ(engine_->clock(), kT0 + 30);
}

TEST_F(DutyEngineTest, RetriedReportIsIdempotent) {
  Start();
  v1::Verdict first = Report("r1", kT0);
  now_ += 5;
  v1::Verdict again = Report("r1", kT0);
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
  ASSERT_TRUE(Sweep(kT0 + kHour + 1).ok());
  EXPECT_TRUE(engine_->Findings().empty()) << "one breach is below min_breaches";
  ASSERT_TRUE(Sweep(kT0 + kHour + 601).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].status(), "open");
  EXPECT_EQ(findings[0].breaches(), 2);
  EXPECT_EQ(findings[0].opened_at().seconds(), kT0 + kHour + 601)
      << "opened at the sweep, in server time";
  ASSERT_TRUE(Sweep(kT0 + kHour + 1201).ok());
  findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u) << "one finding grows while the condition holds";
  EXPECT_EQ(findings[0].breaches(), 3);
  EXPECT_EQ(findings[0].obligations(), 3);
  EXPECT_DOUBLE_EQ(findings[0].breach_rate(), 1.0);
  // A day later the breaches leave the window: the finding closes.
  ASSERT_TRUE(Sweep(kT0 + 26 * kHour).ok());
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
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour).ok());
  EXPECT_EQ(engine_->Breaches().size(), 2u);
  EXPECT_TRUE(engine_->Findings().empty());
}

TEST_F(DutyEngineTest, FindingsAreSeparatePerService) {
  Start();
  Report("a1", kT0, "svc-a");
  Report("a2", kT0, "svc-a");
  Report("b1", kT0, "svc-b");
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour).ok());
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
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour).ok());
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

// ---- two clocks --------------------------------------------------------

TEST_F(DutyEngineTest, ClaimedTimesOutsideTheSaneRangeAreRefusedNamingTheField) {
  Start();
  uint64_t events = engine_->counts().events;
  auto submit = [&](v1::ContentReport r) {
    v1::Verdict v;
    return engine_->SubmitReport(r, &v);
  };
  v1::ContentReport r = MakeReport("r1", kT0 + 301);  // beyond max_clock_skew (5m)
  Status s = submit(r);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("report.received_at: 2026-01-05T10:05:01Z is later than server time"),
            std::string::npos)
      << s.message();
  r.mutable_received_at()->set_seconds(INT64_MAX);
  s = submit(r);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("report.received_at"), std::string::npos) << s.message();
  r.mutable_received_at()->set_seconds(kT0);
  r.mutable_received_at()->set_nanos(-5);
  s = submit(r);
  EXPECT_NE(s.message().find("report.received_at.nanos: -5 is outside"), std::string::npos)
      << s.message();
  r.mutable_received_at()->set_nanos(2000000000);
  EXPECT_EQ(submit(r).code(), Status::Code::kInvalidArgument);
  r.mutable_received_at()->set_nanos(0);
  r.mutable_received_at()->set_seconds(946684799);  // 1999-12-31T23:59:59Z
  s = submit(r);
  EXPECT_NE(s.message().find("is before 2000-01-01"), std::string::npos) << s.message();

  constexpr int64_t kYear3000 = 32503680000;
  std::vector<v1::Obligation> obs;
  s = engine_->RecordAction({"svc", "anything", "remove_content", kYear3000, "m"}, &obs);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("taken_at: 3000-01-01T00:00:00Z is later than server time"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(engine_->counts().events, events) << "nothing refused is recorded";
  EXPECT_EQ(engine_->counts().reports, 0u);
}

TEST_F(DutyEngineTest, ClaimWithinTheSkewIsAcceptedAndMovesNoClock) {
  Start();
  Report("r1", kT0 + 299);  // 5 minutes ahead, within max_clock_skew
  ASSERT_TRUE(Act("nope", "remove_content", kT0 + 299).ok());
  EXPECT_TRUE(Sweep(kT0 + 1).ok()) << "the engine's clock is the server's, not a claim";
  EXPECT_EQ(engine_->clock(), kT0 + 1);
}

TEST(DutyEngineClock, APoisonedLedgerCannotStopTheSweeperAfterARestart) {
  // An event from a ledger written before two clocks, claiming the year
  // 3000, and a new one claiming a time just inside the skew: after a
  // restart the sweeper still runs at server time and enforces deadlines.
  std::string dir = TempDir("poison");
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  int64_t now = kT0;
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [&now] { return now; };
  {
    std::unique_ptr<ledger::Ledger> l;
    ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
    std::vector<v1::LedgerEvent> old(1);
    old[0].set_type(v1::ACTION_RECORDED);
    old[0].mutable_time()->set_seconds(32503680000);  // format 0: no recorded_at
    old[0].mutable_action_recorded()->set_report_id("ghost");
    ASSERT_TRUE(l->Append(&old).ok());
    DutyEngine engine(l.get(), options);
    ASSERT_TRUE(engine.Recover().ok());
    ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
    std::vector<v1::Obligation> obs;
    ASSERT_TRUE(engine.RecordAction({"svc", "ghost", "remove_content", kT0 + 290, "m"}, &obs).ok());
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(MakeReport("r1", kT0), &v).ok());
  }
  now = kT0 + 10;
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  DutyEngine engine(l.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  EXPECT_EQ(engine.clock(), kT0) << "the clock is the latest server time recorded";
  ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
  ASSERT_TRUE(engine.Sweep(kT0 + 10).ok());
  now = kT0 + 2 * kHour;
  ASSERT_TRUE(engine.Sweep(now).ok());
  EXPECT_EQ(engine.counts().breached, 1u) << "r1's deadline is enforced after the restart";
  std::filesystem::remove_all(dir);
}

TEST_F(DutyEngineTest, EveryEventRecordsServerTimeBesideTheClaim) {
  std::string dir = TempDir("recorded");
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  Start("", l.get());
  now_ = kT0 + kHour / 2;
  v1::Verdict v;
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("r1", kT0), &v).ok());  // backfilled 30m
  std::vector<ledger::StoredEvent> rows;
  ASSERT_TRUE(l->backend().ReadEvents(v.ledger_seq(), 1, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  v1::LedgerEvent e;
  ASSERT_TRUE(e.ParseFromString(rows[0].payload));
  EXPECT_EQ(e.type(), v1::REPORT_FLAGGED);
  EXPECT_EQ(e.format(), 2u);
  EXPECT_EQ(e.time().seconds(), kT0) << "the claim";
  EXPECT_EQ(e.recorded_at().seconds(), kT0 + kHour / 2) << "the server's time";
  EXPECT_EQ(e.report_flagged().received_at().seconds(), kT0);
  engine_.reset();
  l.reset();
  std::filesystem::remove_all(dir);
}

// ---- late recording ------------------------------------------------------

TEST_F(DutyEngineTest, ActionRecordedWithinGraceIsJudgedByItsClaim) {
  Start("", nullptr, "1h");
  Report("r1", kT0);  // deadline kT0 + 1h, grace until kT0 + 2h
  ASSERT_TRUE(Sweep(kT0 + kHour + 30 * 60).ok());
  EXPECT_TRUE(engine_->Breaches().empty()) << "the sweeper waits for record_grace";
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 600, &obs, "svc", kT0 + kHour + 40 * 60).ok());
  ASSERT_TRUE(Act("r1", "report_to_nca", kT0 + 900, &obs, "svc", kT0 + kHour + 45 * 60).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_MET);
}

TEST_F(DutyEngineTest, SweeperBreachesOnceGraceHasPassed) {
  Start("", nullptr, "1h");
  Report("r1", kT0);
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour).ok());
  EXPECT_TRUE(engine_->Breaches().empty());
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour + 1).ok());
  auto breaches = engine_->Breaches();
  ASSERT_EQ(breaches.size(), 1u);
  EXPECT_EQ(breaches[0].kind(), "missed");
  EXPECT_EQ(breaches[0].at().seconds(), kT0 + kHour) << "attributed to the deadline";
  EXPECT_EQ(breaches[0].recorded_at().seconds(), kT0 + 2 * kHour + 1);
}

TEST_F(DutyEngineTest, ActionRecordedAfterGraceIsLateRecordedWhateverItClaims) {
  // The case: a report backfilled three days after it was received,
  // and actions claiming times inside the deadline, recorded now.
  Start("", nullptr, "1h");
  now_ = kT0 + 3 * kDay;
  v1::Verdict v;
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("r1", kT0), &v).ok());
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + 600, &obs, "svc", kT0 + 3 * kDay).ok());
  EXPECT_EQ(StatusOf(obs), v1::OBLIGATION_STATUS_BREACHED);
  auto breaches = engine_->Breaches();
  ASSERT_EQ(breaches.size(), 1u);
  EXPECT_EQ(breaches[0].kind(), "late_recorded");
  ASSERT_EQ(breaches[0].late_actions_size(), 1);
  EXPECT_EQ(breaches[0].late_actions(0), "remove_content");
  ASSERT_EQ(breaches[0].missing_actions_size(), 1);
  EXPECT_EQ(breaches[0].missing_actions(0), "report_to_nca");
  ASSERT_TRUE(Act("r1", "report_to_nca", kT0 + 700, &obs, "svc", kT0 + 3 * kDay).ok());
  EXPECT_EQ(engine_->Breaches().size(), 1u) << "a breach is never undone nor repeated";
}

TEST_F(DutyEngineTest, LateBreachListsTheLateActionApartFromTheMissingOnes) {
  Start();
  Report("r1", kT0);
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(Act("r1", "remove_content", kT0 + kHour + 60, &obs).ok());
  auto breaches = engine_->Breaches();
  ASSERT_EQ(breaches.size(), 1u);
  EXPECT_EQ(breaches[0].kind(), "late");
  ASSERT_EQ(breaches[0].late_actions_size(), 1);
  EXPECT_EQ(breaches[0].late_actions(0), "remove_content");
  ASSERT_EQ(breaches[0].missing_actions_size(), 1);
  EXPECT_EQ(breaches[0].missing_actions(0), "report_to_nca");
}

// ---- findings ------------------------------------------------------------

TEST_F(DutyEngineTest, NewReportsNeitherDiluteNorCloseAFinding) {
  // Two breaches of two obligations due: a finding. A batch of new reports
  // (not yet due) used to count in the denominator and close it.
  Start();
  Report("r1", kT0);
  Report("r2", kT0 + 60);
  ASSERT_TRUE(Sweep(kT0 + kHour + 61).ok());
  ASSERT_EQ(engine_->Findings().size(), 1u);
  for (int i = 0; i < 20; ++i) Report("new" + std::to_string(i), kT0 + kHour + 100);
  ASSERT_TRUE(Sweep(kT0 + kHour + 200).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].status(), "open");
  EXPECT_EQ(findings[0].obligations(), 2) << "pending obligations are not in the denominator";
  EXPECT_EQ(findings[0].window_breaches(), 2);
}

TEST_F(DutyEngineTest, FindingCarriesThresholdsWindowAndCountsByKind) {
  Start();
  Report("r1", kT0);
  Report("r2", kT0 + 60);
  Report("r3", kT0 + 120);
  ASSERT_TRUE(Act("r3", "remove_content", kT0 + kHour + 200).ok());  // late
  ASSERT_TRUE(Sweep(kT0 + kHour + 300).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  const v1::Finding& f = findings[0];
  EXPECT_EQ(f.thresholds().window_seconds(), kDay);
  EXPECT_EQ(f.thresholds().min_breaches(), 2);
  EXPECT_DOUBLE_EQ(f.thresholds().min_breach_rate(), 0.5);
  EXPECT_EQ(f.window_end().seconds(), kT0 + kHour + 300);
  EXPECT_EQ(f.window_start().seconds(), kT0 + kHour + 300 - kDay);
  EXPECT_EQ(f.breaches(), 3);
  EXPECT_EQ(f.breaches_missed(), 2);
  EXPECT_EQ(f.breaches_late(), 1);
  EXPECT_EQ(f.breaches_late_recorded(), 0);
  EXPECT_EQ(f.obligation_ids_size(), 3);
}

TEST_F(DutyEngineTest, ABreachBelongsToOneFindingOnly) {
  // F1 closes when met obligations come due and the rate falls; its breaches
  // stay in the window. F2 opens only with breaches of its own.
  Start();
  Report("b1", kT0);
  Report("b2", kT0 + 10);
  ASSERT_TRUE(Sweep(kT0 + kHour + 20).ok());
  for (int i = 0; i < 4; ++i) {
    std::string id = "m" + std::to_string(i);
    Report(id, kT0 + kHour + 30);
    ASSERT_TRUE(Act(id, "remove_content", kT0 + kHour + 40).ok());
    ASSERT_TRUE(Act(id, "report_to_nca", kT0 + kHour + 40).ok());
  }
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour + 31).ok());  // 2 of 6 due: 33%
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].status(), "closed");
  EXPECT_GE(findings[0].closed_at().seconds(), findings[0].opened_at().seconds());
  for (int i = 0; i < 4; ++i) Report("x" + std::to_string(i), kT0 + 2 * kHour + 40);
  ASSERT_TRUE(Sweep(kT0 + 3 * kHour + 41).ok());  // 6 of 10 due: 60%
  findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[1].status(), "open");
  EXPECT_EQ(findings[1].breaches(), 4) << "b1 and b2 stay F1's";
  EXPECT_EQ(findings[1].window_breaches(), 6);
  EXPECT_GE(findings[1].opened_at().seconds(), findings[0].closed_at().seconds());
}

TEST_F(DutyEngineTest, MostSpecificAccountabilityScopeWins) {
  Start(
      "accountability:\n"
      "  - {service_id: svc, duty: \"*\", name: A. General, role: CEO, from: 2025-01-01}\n"
      "  - {service_id: svc, duty: \"d\", name: B. Specific, role: Head of Safety, from: "
      "2025-01-01, to: 2026-01-05}\n");
  // `to: 2026-01-05` includes that whole day: B. Specific is in post at 11:00.
  Report("r1", kT0);
  Report("r2", kT0 + 60);
  ASSERT_TRUE(Sweep(kT0 + 2 * kHour).ok());
  auto findings = engine_->Findings();
  ASSERT_EQ(findings.size(), 1u);
  ASSERT_EQ(findings[0].accountable_size(), 1);
  EXPECT_EQ(findings[0].accountable(0).name(), "B. Specific");
  EXPECT_EQ(findings[0].accountable(0).breaches(), 2);
  EXPECT_EQ(findings[0].accountable(0).tenure_to().seconds(), kT0 + 14 * kHour)
      << "midnight after the date";
  EXPECT_EQ(findings[0].accountable(0).scope(), "d");
}

// ---- acknowledged means durable -----------------------------------------

TEST_F(DutyEngineTest, SameReportIdWithOtherContentIsRefused) {
  Start();
  v1::Verdict first = Report("r1", kT0);
  v1::Verdict v;
  Status s = engine_->SubmitReport(MakeReport("r1", kT0, "svc", "another signal"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists);
  EXPECT_NE(s.message().find("ledger seq " + std::to_string(first.ledger_seq())), std::string::npos)
      << s.message();
  Report("quiet", kT0, "svc", "nothing to see");
  s = engine_->SubmitReport(MakeReport("quiet", kT0, "svc", "a signal after all"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << "unflagged reports too";
  EXPECT_EQ(engine_->counts().open, 1u);
}

TEST(DutyEngineDurable, IdempotencySurvivesARestartUnflaggedReportsIncluded) {
  std::string dir = TempDir("idem");
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [] { return kT0; };
  auto stats_reports = [](ledger::Ledger& l) {
    std::vector<ledger::StatsRow> rows;
    EXPECT_TRUE(l.backend().QueryStats("svc", "0000", "9999", &rows).ok());
    int64_t n = 0;
    for (const auto& r : rows) n += r.reports;
    return n;
  };
  {
    std::unique_ptr<ledger::Ledger> l;
    ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
    DutyEngine engine(l.get(), options);
    ASSERT_TRUE(engine.Recover().ok());
    ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(MakeReport("quiet", kT0, "svc", "nothing"), &v).ok());
    EXPECT_EQ(stats_reports(*l), 1) << "counted durably before the answer";
  }
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  DutyEngine engine(l.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
  v1::Verdict v;
  ASSERT_TRUE(engine.SubmitReport(MakeReport("quiet", kT0, "svc", "nothing"), &v).ok());
  EXPECT_EQ(v.flags_size(), 0);
  EXPECT_EQ(stats_reports(*l), 1) << "a retry after a restart is not counted again";
  Status s = engine.SubmitReport(MakeReport("quiet", kT0, "svc", "a signal now"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists);
  EXPECT_NE(s.message().find("matched no rule"), std::string::npos) << s.message();
  EXPECT_EQ(engine.counts().flagged, 0u);
  std::filesystem::remove_all(dir);
}

using carewatch::testing::WriteLockHolder;

// An engine serving Pack() on a fresh durable ledger whose writer waits up
// to `busy_ms` for a write lock held elsewhere before it retries.
struct DurableEngine {
  DurableEngine(const std::string& name, int busy_ms) : dir(TempDir(name)) {
    lo.url = carewatch::testing::FreshLedgerUrl(dir);
    lo.signing_key_path = dir + "/ledger.key";
    lo.busy_timeout_ms = busy_ms;
    EXPECT_TRUE(ledger::Ledger::Open(lo, &l).ok());
    DutyEngineOptions options;
    options.hmac_key = "k";
    options.now = [] { return kT0; };
    engine = std::make_unique<DutyEngine>(l.get(), options);
    EXPECT_TRUE(engine->Recover().ok());
    EXPECT_TRUE(engine->Activate(LoadEvaluator(Pack())).ok());
  }
  ~DurableEngine() {
    engine.reset();
    l.reset();
    std::filesystem::remove_all(dir);
  }
  std::string dir;
  ledger::LedgerOptions lo;
  std::unique_ptr<ledger::Ledger> l;
  std::unique_ptr<DutyEngine> engine;
};

// Submits r1 on one thread and, once it waits for the ledger, its retry on
// another; returns both outcomes.
void SubmitAndRetry(DutyEngine& engine, const std::function<void()>& while_waiting, Status* first,
                    v1::Verdict* first_verdict, Status* retry, v1::Verdict* retry_verdict) {
  uint64_t before = engine.counts().events;
  std::thread a([&] { *first = engine.SubmitReport(MakeReport("r1", kT0), first_verdict); });
  while (engine.counts().events == before) std::this_thread::yield();  // a is waiting
  std::thread b([&] { *retry = engine.SubmitReport(MakeReport("r1", kT0), retry_verdict); });
  while_waiting();
  a.join();
  b.join();
}

TEST(DutyEngineDurable, UnderAHeldWriteLockNothingIsAcknowledgedUntilItIsWritten) {
  // The lock is held far longer than 50 ms: the writer retries.
  DurableEngine d("lock-fail", 50);
  DutyEngine& engine = *d.engine;
  ledger::Ledger* l = d.l.get();
  WriteLockHolder lock(d.lo.url);
  std::atomic<int> answered{0};
  Status first, retry;
  v1::Verdict fv, rv;
  const uint64_t before = engine.counts().events;
  std::thread a([&] {
    first = engine.SubmitReport(MakeReport("r1", kT0), &fv);
    ++answered;
  });
  while (engine.counts().events == before) std::this_thread::yield();  // a is waiting
  std::thread b([&] {
    retry = engine.SubmitReport(MakeReport("r1", kT0), &rv);
    ++answered;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(answered.load(), 0) << "nothing is answered while its event cannot be written";
  EXPECT_NE(l->health().message().find("retrying"), std::string::npos) << l->health().message();
  v1::Verdict nv;
  Status fresh = engine.SubmitReport(MakeReport("r2", kT0), &nv);
  EXPECT_EQ(fresh.code(), Status::Code::kUnavailable) << "new work is refused meanwhile";
  lock.Release();
  a.join();
  b.join();
  ASSERT_TRUE(first.ok()) << first.message();
  ASSERT_TRUE(retry.ok()) << retry.message();
  EXPECT_EQ(rv.ledger_seq(), fv.ledger_seq()) << "the retry names the first one's event";
  EXPECT_TRUE(l->health().ok()) << "recovered by itself";
  v1::Verdict after;
  EXPECT_TRUE(engine.SubmitReport(MakeReport("r3", kT0), &after).ok());
}

TEST(DutyEngineDurable, RetryWaitsForTheFirstSubmissionAndNamesItsSeq) {
  DurableEngine d("lock-wait", 5000);
  DutyEngine& engine = *d.engine;
  ledger::Ledger* l = d.l.get();
  WriteLockHolder lock(d.lo.url);
  Status first, retry;
  v1::Verdict fv, rv;
  SubmitAndRetry(
      engine, [&] { lock.Release(); }, &first, &fv, &retry, &rv);
  ASSERT_TRUE(first.ok()) << first.message();
  ASSERT_TRUE(retry.ok()) << retry.message();
  EXPECT_EQ(rv.ledger_seq(), fv.ledger_seq());
  std::vector<ledger::StoredEvent> rows;
  ASSERT_TRUE(l->backend().ReadEvents(fv.ledger_seq(), 1, &rows).ok());
  ASSERT_EQ(rows.size(), 1u) << "the seq named holds the event";
  v1::LedgerEvent e;
  ASSERT_TRUE(e.ParseFromString(rows[0].payload));
  EXPECT_EQ(e.type(), v1::REPORT_FLAGGED);
  EXPECT_EQ(e.report_flagged().report_id(), "r1");
}

TEST(DutyEngineDurable, ThenAnswersOnceDurableWithoutAThreadWaiting) {
  DurableEngine d("then", 5000);
  DutyEngine& engine = *d.engine;
  WriteLockHolder lock(d.lo.url);
  v1::Verdict first;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status outcome = Status::Unavailable("not yet");
  std::thread::id ran_on;
  {
    DutyEngine::Pending pending;
    ASSERT_TRUE(engine.SubmitReport(MakeReport("r1", kT0), &first, &pending).ok());
    pending.Then([&](const Status& s) {
      std::lock_guard<std::mutex> g(mu);
      outcome = s;
      ran_on = std::this_thread::get_id();
      done = true;
      cv.notify_all();
    });
  }  // nothing waits for it here
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    std::lock_guard<std::mutex> g(mu);
    EXPECT_FALSE(done) << "not answered while its event cannot be written";
  }
  // A retry meanwhile waits for the first submission's outcome.
  Status retry;
  v1::Verdict again;
  std::thread b([&] { retry = engine.SubmitReport(MakeReport("r1", kT0), &again); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  lock.Release();
  b.join();
  {
    std::unique_lock<std::mutex> g(mu);
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(20), [&] { return done; }));
    EXPECT_TRUE(outcome.ok()) << outcome.message();
    EXPECT_NE(ran_on, std::this_thread::get_id());
  }
  ASSERT_TRUE(retry.ok()) << retry.message();
  EXPECT_GT(first.ledger_seq(), 0u);
  EXPECT_EQ(again.ledger_seq(), first.ledger_seq()) << "the retry names the first one's event";
}

// ---- the invariants of findings, over generated scenarios ----------------

// One generated scenario: reports of two services, some backfilled; actions
// on time, late, within grace and after it; sweeps; a restart half-way.
struct Outcome {
  std::vector<v1::Breach> breaches;
  std::vector<v1::Finding> findings;
};

// `ledger` false: the engine keeps everything in memory, the windows'
// every deadline among it (the reference the stored windows must match).
Outcome RunScenario(uint32_t seed, bool restart, const std::string& dir, bool ledger = true) {
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  int64_t now = kT0;
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.keep_history = true;
  options.now = [&now] { return now; };
  auto evaluator = LoadEvaluator(Pack("30m"));
  std::unique_ptr<ledger::Ledger> l;
  std::unique_ptr<DutyEngine> engine;
  auto open = [&] {
    engine.reset();
    l.reset();
    if (ledger) {
      EXPECT_TRUE(ledger::Ledger::Open(lo, &l).ok());
    }
    engine = std::make_unique<DutyEngine>(l.get(), options);
    EXPECT_TRUE(engine->Recover().ok());
    EXPECT_TRUE(engine->Activate(evaluator).ok());
  };
  open();
  std::vector<std::pair<std::string, int64_t>> reports;  // (service|id, received_at)
  const char* actions[] = {"remove_content", "report_to_nca", "reviewed_not_illegal"};
  for (int step = 0; step < 400; ++step) {
    if (restart && step == 200) open();
    now += 60 + pick(900);
    int what = pick(10);
    if (what < 5) {
      // A report, sometimes backfilled up to two days.
      std::string service = pick(2) ? "svc-a" : "svc-b";
      std::string id = "r" + std::to_string(step);
      int64_t received = pick(4) == 0 ? now - pick(2 * static_cast<int>(kDay)) : now - pick(120);
      v1::Verdict v;
      EXPECT_TRUE(engine->SubmitReport(MakeReport(id, received, service), &v).ok());
      reports.push_back({service + "|" + id, received});
    } else if (what < 9 && !reports.empty()) {
      // An action claimed anywhere from the receipt to a little after now.
      auto& [key, received] = reports[pick(static_cast<int>(reports.size()))];
      std::string service = key.substr(0, key.find('|'));
      std::string id = key.substr(key.find('|') + 1);
      int64_t span = std::max<int64_t>(1, now + 120 - received);
      int64_t taken = received + static_cast<int64_t>(rng() % static_cast<uint32_t>(span));
      std::vector<v1::Obligation> obs;
      Status s = engine->RecordAction(
          {service, id, actions[pick(3) == 0 ? 2 : pick(2)], taken, "m"}, &obs);
      EXPECT_TRUE(s.ok()) << s.message();
    } else {
      EXPECT_TRUE(engine->Sweep(now).ok());
    }
  }
  now += 3 * kDay;
  EXPECT_TRUE(engine->Sweep(now).ok());
  return {engine->Breaches(), engine->Findings()};
}

void CheckFindingInvariants(const Outcome& o) {
  std::map<std::string, const v1::Breach*> breached;
  for (const v1::Breach& b : o.breaches) {
    EXPECT_TRUE(breached.emplace(b.obligation_id(), &b).second) << "one breach an obligation";
  }
  std::set<std::string> member;
  std::map<std::pair<std::string, std::string>, std::vector<const v1::Finding*>> by_scope;
  for (const v1::Finding& f : o.findings) {
    by_scope[{f.service_id(), f.duty_id()}].push_back(&f);
    if (f.status() == "closed") {
      EXPECT_GE(f.closed_at().seconds(), f.opened_at().seconds()) << f.finding_id();
    }
    EXPECT_EQ(f.breaches(), f.obligation_ids_size()) << f.finding_id();
    EXPECT_EQ(f.breaches(), f.breaches_missed() + f.breaches_late() + f.breaches_late_recorded());
    EXPECT_LE(f.window_breaches(), f.obligations());
    EXPECT_GT(f.breaches(), 0) << "an episode has breaches of its own";
    for (const std::string& id : f.obligation_ids()) {
      EXPECT_TRUE(member.insert(id).second) << id << " is in two findings";
      auto b = breached.find(id);
      ASSERT_NE(b, breached.end()) << id << " is in a finding but was never breached";
      EXPECT_EQ(b->second->service_id(), f.service_id());
    }
  }
  for (auto& [scope, list] : by_scope) {
    std::sort(list.begin(), list.end(), [](const v1::Finding* a, const v1::Finding* b) {
      return a->opened_at().seconds() < b->opened_at().seconds();
    });
    for (size_t i = 0; i + 1 < list.size(); ++i) {
      EXPECT_EQ(list[i]->status(), "closed") << "only the last finding of a scope may be open";
      EXPECT_GE(list[i + 1]->opened_at().seconds(), list[i]->closed_at().seconds())
          << "findings of one scope never overlap";
    }
  }
}

TEST(DutyEngineProperties, FindingsAreCoherentInAnyArrivalOrderAndAcrossRestarts) {
  size_t findings = 0, late_recorded = 0;
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    std::string dir_a = TempDir("prop-a" + std::to_string(seed));
    std::string dir_b = TempDir("prop-b" + std::to_string(seed));
    Outcome straight = RunScenario(seed, false, dir_a);
    Outcome restarted = RunScenario(seed, true, dir_b);
    CheckFindingInvariants(straight);
    CheckFindingInvariants(restarted);
    ASSERT_EQ(straight.findings.size(), restarted.findings.size()) << "seed " << seed;
    for (size_t i = 0; i < straight.findings.size(); ++i) {
      EXPECT_EQ(straight.findings[i].SerializeAsString(), restarted.findings[i].SerializeAsString())
          << "a restart changes no finding (seed " << seed << ")";
    }
    EXPECT_EQ(straight.breaches.size(), restarted.breaches.size());
    // The stored windows (counts by hour, the start's hour read from the
    // store as it moves) decide exactly as windows holding every deadline.
    Outcome in_memory = RunScenario(seed, false, dir_a + "-memory", /*ledger=*/false);
    ASSERT_EQ(in_memory.findings.size(), straight.findings.size()) << "seed " << seed;
    for (size_t i = 0; i < straight.findings.size(); ++i) {
      EXPECT_EQ(in_memory.findings[i].SerializeAsString(), straight.findings[i].SerializeAsString())
          << "seed " << seed;
    }
    findings += straight.findings.size();
    for (const auto& b : straight.breaches) late_recorded += b.kind() == "late_recorded";
    std::filesystem::remove_all(dir_a);
    std::filesystem::remove_all(dir_b);
  }
  EXPECT_GT(findings, 5u) << "the scenarios exercise findings";
  EXPECT_GT(late_recorded, 0u) << "and late recording";
}

TEST(DutyEngineRecovery, StateIsRebuiltFromTheLedger) {
  std::string dir = TempDir("recover");
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  int64_t now = kT0;
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [&now] { return now; };
  v1::Verdict first;
  {
    std::unique_ptr<ledger::Ledger> l;
    ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
    DutyEngine engine(l.get(), options);
    ASSERT_TRUE(engine.Recover().ok());
    ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
    ASSERT_TRUE(engine.SubmitReport(MakeReport("r1", kT0, "svc", "signal"), &first).ok());
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(MakeReport("r2", kT0, "svc", "signal"), &v).ok());
    std::vector<v1::Obligation> obs;
    now = kT0 + 10;
    ASSERT_TRUE(engine.RecordAction({"svc", "r1", "remove_content", kT0 + 10, "m"}, &obs).ok());
  }
  now = kT0 + 20;
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  DutyEngine engine(l.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
  EXPECT_EQ(engine.counts().open, 2u);
  // The retried report gets its first verdict back, and r1 remembers its action.
  v1::Verdict again;
  ASSERT_TRUE(engine.SubmitReport(MakeReport("r1", kT0, "svc", "signal"), &again).ok());
  EXPECT_EQ(again.ledger_seq(), first.ledger_seq());
  std::vector<v1::Obligation> obs;
  now = kT0 + 30;
  ASSERT_TRUE(engine.RecordAction({"svc", "r1", "report_to_nca", kT0 + 30, "m"}, &obs).ok());
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0].status(), v1::OBLIGATION_STATUS_MET);
  now = kT0 + 2 * kHour;
  ASSERT_TRUE(engine.Sweep(now).ok());
  EXPECT_EQ(engine.counts().breached, 1u) << "r2 was never acted on";
  std::filesystem::remove_all(dir);
}

// A ledger-backed engine on a simulated server clock, restartable.
class DutyEngineState : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    lo_.url = carewatch::testing::FreshLedgerUrl(dir_);
    lo_.signing_key_path = dir_ + "/ledger.key";
    // A restart on PostgreSQL reads its rows a chunk at a time: three here,
    // so that every restart below crosses chunk boundaries.
    ledger::SetPostgresReadChunk(3);
  }
  void TearDown() override {
    engine_.reset();
    ledger_.reset();
    ledger::SetPostgresReadChunk(4096);
    std::filesystem::remove_all(dir_);
  }
  void Open(int64_t retention = 90 * kDay) {
    engine_.reset();
    ledger_.reset();
    ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
    DutyEngineOptions options;
    options.hmac_key = "k";
    options.now = [this] { return now_; };
    options.retention_seconds = retention;
    engine_ = std::make_unique<DutyEngine>(ledger_.get(), options);
    Status s = engine_->Recover();
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(engine_->Activate(LoadEvaluator(Pack())).ok());
  }
  void Exec(const std::string& sql) { carewatch::testing::LedgerSql(lo_.url, sql); }
  // The rows of window_hours, by (hour, service, duty).
  using Hours = std::map<std::tuple<int64_t, std::string, std::string>, int64_t>;
  static Status ReadHours(ledger::LedgerBackend& b, Hours* out) {
    out->clear();
    return b.EachWindowHour(INT64_MIN, [&](const ledger::LedgerBackend::WindowHourRow& r) {
      (*out)[{r.hour, std::string(r.service_id), std::string(r.duty_id)}] += r.decided;
    });
  }
  // A report received now and breached two hours later joins the one open
  // finding (a delta, not a new finding), which then holds `breaches`.
  void ExpectALaterBreachGrowsTheOneFindingTo(int breaches) {
    v1::Verdict v;
    ASSERT_TRUE(engine_->SubmitReport(MakeReport("late", now_), &v).ok());
    now_ += 2 * kHour;
    ASSERT_TRUE(engine_->Sweep(now_).ok());
    std::vector<v1::Finding> found;
    ASSERT_TRUE(ledger_->backend().QueryFindings({}, &found).ok());
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].breaches(), breaches);
    EXPECT_EQ(found[0].obligation_ids_size(), breaches);
    EXPECT_TRUE(ledger::VerifyLedger(ledger_->backend(), "").ok);
  }
  // n reports at kT0 + i, the first `closed` of them met by both actions.
  void Populate(int n, int closed) {
    for (int i = 0; i < n; ++i) {
      now_ = kT0 + i;
      v1::Verdict v;
      ASSERT_TRUE(engine_->SubmitReport(MakeReport("r" + std::to_string(i), kT0 + i), &v).ok());
    }
    std::vector<v1::Obligation> obs;
    for (int i = 0; i < closed; ++i) {
      for (const char* a : {"remove_content", "report_to_nca"}) {
        ASSERT_TRUE(
            engine_->RecordAction({"svc", "r" + std::to_string(i), a, now_, "m"}, &obs).ok());
      }
      ASSERT_EQ(obs[0].status(), v1::OBLIGATION_STATUS_MET);
    }
  }

  std::string dir_;
  ledger::LedgerOptions lo_;
  int64_t now_ = kT0;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<DutyEngine> engine_;
};

TEST_F(DutyEngineState, MemoryHoldsOpenWorkAndClosedWorkIsReadFromTheStore) {
  Open();
  Populate(200, 190);
  ASSERT_TRUE(engine_->Sweep(now_).ok());  // closed work is durable: forgotten
  EXPECT_EQ(engine_->obligations_in_memory(), 10u);
  EXPECT_EQ(engine_->reports_in_memory(), 10u);
  EXPECT_EQ(engine_->counts().met, 190u);
  EXPECT_EQ(engine_->counts().open, 10u);
  // A closed report answers from the store: an action on it owes nothing and
  // sees its obligation met; a retry gets its whole verdict back.
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(engine_->RecordAction({"svc", "r3", "remove_content", now_, "m"}, &obs).ok());
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0].status(), v1::OBLIGATION_STATUS_MET);
  v1::Verdict v;
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("r3", kT0 + 3), &v).ok());
  EXPECT_EQ(v.flags_size(), 1);
  ASSERT_EQ(v.obligations_size(), 1);
  EXPECT_EQ(v.obligations(0).status(), v1::OBLIGATION_STATUS_MET);
  EXPECT_EQ(engine_->counts().flagged, 200u) << "a retry is not a new report";
  Status s = engine_->SubmitReport(MakeReport("r3", kT0 + 3, "svc", "other signal words"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists);
  ASSERT_TRUE(engine_->Sweep(now_ + 1).ok());
  EXPECT_EQ(engine_->reports_in_memory(), 10u) << "read for one command, then forgotten";
}

TEST_F(DutyEngineState, ARestartReadsTheStateNotTheLog) {
  Open();
  Populate(50, 40);
  now_ = kT0 + 49;
  DutyEngine::Counts before = engine_->counts();
  std::optional<int64_t> due = engine_->NextSweepDue();
  ASSERT_TRUE(due.has_value());
  engine_.reset();
  ledger_.reset();
  // Damage the payload of every event of closed work: a restart that replayed
  // the log would stop on them; one that reads the state never reads them.
  carewatch::testing::LedgerSql(lo_.url, "UPDATE events SET payload = ?1 WHERE type = ?2",
                                {carewatch::testing::SqlBytes(std::string(1, '\0')),
                                 carewatch::testing::SqlInt(v1::ACTION_RECORDED)});
  Open();
  DutyEngine::Counts after = engine_->counts();
  EXPECT_EQ(after.reports, before.reports);
  EXPECT_EQ(after.flagged, before.flagged);
  EXPECT_EQ(after.open, before.open);
  EXPECT_EQ(after.met, before.met);
  EXPECT_EQ(engine_->NextSweepDue(), due);
  EXPECT_EQ(engine_->clock(), kT0 + 49);
  // The open work goes on: the ten open obligations are breached on time,
  // and two of them with half of what came due opens a finding.
  now_ = kT0 + 3 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().breached, 10u);
  EXPECT_EQ(engine_->counts().findings_open, 0u) << "10 of 50 due is below the 50% rate";
  // ...and `verify` still finds the damage.
  EXPECT_FALSE(ledger::VerifyLedger(ledger_->backend(), "").ok);
}

// A restart costs one row per open obligation: the reports they belong to
// are read from the store only when a command needs one.
TEST_F(DutyEngineState, ARestartDoesNotReadTheReportsOfOpenWork) {
  Open();
  Populate(50, 40);
  now_ = kT0 + 49;
  engine_.reset();
  ledger_.reset();
  // Damage the REPORT_FLAGGED events of five of the ten open reports: a
  // restart that read them would stop there.
  carewatch::testing::LedgerSql(
      lo_.url,
      "UPDATE events SET payload = ?1 WHERE seq IN (SELECT seq FROM report_index WHERE "
      "report_id IN ('r45', 'r46', 'r47', 'r48', 'r49'))",
      {carewatch::testing::SqlBytes(std::string(1, '\0'))});
  Open();
  EXPECT_EQ(engine_->counts().open, 10u);
  EXPECT_EQ(engine_->obligations_in_memory(), 10u);
  EXPECT_EQ(engine_->reports_in_memory(), 0u) << "no report is read at start-up";
  // An action on an open report reads it then, and meets its obligation.
  std::vector<v1::Obligation> obs;
  for (const char* a : {"remove_content", "report_to_nca"}) {
    ASSERT_TRUE(engine_->RecordAction({"svc", "r41", a, now_, "m"}, &obs).ok());
  }
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0].status(), v1::OBLIGATION_STATUS_MET);
  // A retry of an open report gets its first verdict back from the store.
  v1::Verdict v;
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("r42", kT0 + 42), &v).ok());
  ASSERT_EQ(v.obligations_size(), 1);
  EXPECT_EQ(v.obligations(0).status(), v1::OBLIGATION_STATUS_OPEN);
  EXPECT_GT(v.ledger_seq(), 0u);
  // An action on a damaged report is refused, naming what to run.
  Status s = engine_->RecordAction({"svc", "r45", "remove_content", now_, "m"}, &obs);
  EXPECT_EQ(s.code(), Status::Code::kDataLoss);
  EXPECT_NE(s.message().find("carewatch verify"), std::string::npos) << s.message();
  // The sweep needs no report: the rest are breached on time.
  now_ = kT0 + 3 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().breached, 9u);
  EXPECT_EQ(engine_->counts().met, 41u);
}

// The systemic windows a restart reads back (rows of several services, by
// deadline, interleaved) decide later findings exactly as the windows of an
// engine that never restarted.
TEST_F(DutyEngineState, WindowsReadByARestartDecideAsThoseNeverRestarted) {
  Open();
  ledger::LedgerOptions other = lo_;
  other.url = carewatch::testing::FreshLedgerUrl(dir_, "twin");
  std::unique_ptr<ledger::Ledger> ledger2;
  ASSERT_TRUE(ledger::Ledger::Open(other, &ledger2).ok());
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [this] { return now_; };
  DutyEngine twin(ledger2.get(), options);
  ASSERT_TRUE(twin.Recover().ok());
  ASSERT_TRUE(twin.Activate(LoadEvaluator(Pack())).ok());
  // Each service's share of breaches: none, 4 of 10 (below the 50% rate),
  // 6 of 10 (a finding).
  const std::vector<std::pair<std::string, int>> services = {{"a", 0}, {"b", 4}, {"c", 6}};
  auto submit = [&](const std::string& id, const std::string& service, bool act) {
    for (DutyEngine* e : {engine_.get(), &twin}) {
      v1::Verdict v;
      ASSERT_TRUE(e->SubmitReport(MakeReport(id, now_, service), &v).ok());
      if (!act) continue;
      std::vector<v1::Obligation> obs;
      for (const char* a : {"remove_content", "report_to_nca"})
        ASSERT_TRUE(e->RecordAction({service, id, a, now_, "m"}, &obs).ok());
    }
  };
  for (int i = 0; i < 10; ++i) {
    for (const auto& [service, missed] : services) {
      now_ = kT0 + i * 60;
      submit(service + std::to_string(i), service, i >= missed);
    }
  }
  now_ = kT0 + 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_TRUE(twin.Sweep(now_).ok());
  Open();  // only engine_ restarts
  // Two more breaches each: b reaches 6 of 12, the rate.
  for (int i = 0; i < 2; ++i) {
    for (const auto& [service, missed] : services)
      submit(service + "-late" + std::to_string(i), service, false);
  }
  now_ += 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_TRUE(twin.Sweep(now_).ok());
  std::vector<v1::Finding> restarted, never;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &restarted).ok());
  ASSERT_TRUE(ledger2->backend().QueryFindings({}, &never).ok());
  ASSERT_EQ(restarted.size(), 2u) << "b and c";
  ASSERT_EQ(restarted.size(), never.size());
  for (size_t i = 0; i < never.size(); ++i) {
    EXPECT_EQ(restarted[i].service_id(), never[i].service_id());
    EXPECT_EQ(restarted[i].obligations(), never[i].obligations()) << never[i].service_id();
    EXPECT_EQ(restarted[i].window_breaches(), never[i].window_breaches());
    EXPECT_EQ(restarted[i].breaches(), never[i].breaches());
    EXPECT_EQ(restarted[i].obligation_ids_size(), never[i].obligation_ids_size());
  }
}

// The windows hold their decided obligations as counts by hour: only the
// deadlines of the last two hours (and, for a window with breaches, of the
// hour it starts in) one by one, before and after a restart.
TEST_F(DutyEngineState, WindowsHoldCountsByHourNotEveryDeadline) {
  Open();
  for (int i = 0; i < 100; ++i) {
    now_ = kT0 + i * kHour;
    const std::string id = "r" + std::to_string(i);
    v1::Verdict v;
    ASSERT_TRUE(engine_->SubmitReport(MakeReport(id, now_), &v).ok());
    std::vector<v1::Obligation> obs;
    for (const char* a : {"remove_content", "report_to_nca"})
      ASSERT_TRUE(engine_->RecordAction({"svc", id, a, now_, "m"}, &obs).ok());
    ASSERT_TRUE(engine_->Sweep(now_).ok());
  }
  EXPECT_EQ(engine_->counts().met, 100u);
  EXPECT_LE(engine_->window_deadlines_in_memory(), 3u);
  Open();
  EXPECT_LE(engine_->window_deadlines_in_memory(), 3u);
  // Two breaches count against the met obligations that came due in the
  // day's window, read back as counts: below the rate, no finding.
  for (const char* id : {"x1", "x2"}) {
    v1::Verdict v;
    ASSERT_TRUE(engine_->SubmitReport(MakeReport(id, now_), &v).ok());
  }
  now_ += 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  std::vector<v1::Finding> found;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &found).ok());
  EXPECT_TRUE(found.empty());
}

// A sweep that breaches obligations whose deadlines lie in the hour its
// window starts in, and reads that hour from the store in the same
// command: the breaches it has not yet written count too.
TEST_F(DutyEngineState, TheWindowsStartHourCountsWhatTheSameSweepDecided) {
  Open();
  const int64_t sweep = kT0 + 2 * kDay + 30 * 60;  // 10:30, two days on
  const int64_t start = sweep - kDay;              // the window's start
  now_ = sweep - 600;
  for (int64_t after : {600, 1200}) {
    // Received a day before the sweep: due within the window's first hour.
    v1::Verdict v;
    ASSERT_TRUE(
        engine_->SubmitReport(MakeReport("old" + std::to_string(after), start + after - kHour), &v)
            .ok());
  }
  now_ = sweep;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().breached, 2u);
  std::vector<v1::Finding> found;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &found).ok());
  ASSERT_EQ(found.size(), 1u) << "2 of 2 breached";
  EXPECT_EQ(found[0].obligations(), 2);
  EXPECT_EQ(found[0].window_breaches(), 2);
  EXPECT_TRUE(ledger::VerifyLedger(ledger_->backend(), "").ok);
}

// A decision an earlier command wrote, which the engine has not yet seen
// reach the store, is in both the store and the engine's list of
// decisions not yet known durable when the sweep reads the window's start
// hour: it counts once.
TEST_F(DutyEngineState, TheWindowsStartHourCountsEachDecisionOnce) {
  Open();
  const int64_t sweep = kT0 + 2 * kDay + 30 * 60;  // 10:30, two days on
  const int64_t start = sweep - kDay;              // the window's start
  now_ = sweep - 50 * 60;
  v1::Verdict v;
  // a: due 10 minutes into the window's first hour; c: due at 10:00 today.
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("a", start + 600 - kHour), &v).ok());
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("c", sweep - 90 * 60), &v).ok());
  now_ = sweep - 40 * 60;  // the window then starts in the hour before a's
  std::vector<v1::Obligation> obs;
  ASSERT_TRUE(engine_->RecordAction({"svc", "a", "remove_content", now_, "m"}, &obs).ok());
  ASSERT_EQ(engine_->counts().breached, 1u) << "a, late";
  now_ = sweep;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_EQ(engine_->counts().breached, 2u) << "c, missed";
  std::vector<v1::Finding> found;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &found).ok());
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].obligations(), 2) << "a and c, each once";
  EXPECT_EQ(found[0].window_breaches(), 2);
}

// A restart reads a window's decided obligations as one row an hour
// (window_hours, written with the decisions), not one row an obligation;
// the counts it reads back decide as those of an engine that never
// restarted.
TEST_F(DutyEngineState, ARestartReadsTheWindowsByHourNotByObligation) {
  Open();
  // 20 hours of 10 met obligations each, then 2 breaches in the last hour.
  std::vector<v1::Obligation> obs;
  for (int h = 0; h < 20; ++h) {
    for (int i = 0; i < 10; ++i) {
      now_ = kT0 + h * kHour + i * 60;
      const std::string id = "r" + std::to_string(h) + "-" + std::to_string(i);
      v1::Verdict v;
      ASSERT_TRUE(engine_->SubmitReport(MakeReport(id, now_), &v).ok());
      for (const char* a : {"remove_content", "report_to_nca"})
        ASSERT_TRUE(engine_->RecordAction({"svc", id, a, now_, "m"}, &obs).ok());
    }
  }
  ASSERT_EQ(engine_->counts().met, 200u);
  now_ += 6 * kHour;  // every deadline is hours behind the clock
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  Open();
  // 20 rows of counts, and the 30 deadlines of the hour before the clock
  // and later (the clock is the last action's time: a sweep that decides
  // nothing records none) one by one. A restart that read every decided
  // obligation read 200 rows.
  EXPECT_EQ(engine_->window_rows_loaded(), 20u + 30u);
  EXPECT_EQ(engine_->window_deadlines_in_memory(), 30u);
  // The counts decide: 200 met in the day's window against breaches that
  // reach the rate only when the met ones are not counted.
  for (int i = 0; i < 3; ++i) {
    v1::Verdict v;
    ASSERT_TRUE(engine_->SubmitReport(MakeReport("x" + std::to_string(i), now_), &v).ok());
  }
  now_ += 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().breached, 3u);
  std::vector<v1::Finding> found;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &found).ok());
  EXPECT_TRUE(found.empty()) << "3 breaches of 203 is below the rate";
  EXPECT_TRUE(ledger::VerifyLedger(ledger_->backend(), "").ok);
}

// A ledger written before window_hours: the table is built from its
// decided obligations when a writer opens it, with the counts the writes
// would have made; a read-only look before that derives the same counts.
TEST_F(DutyEngineState, TheWindowsHoursAreCarriedForwardFromTheDecidedObligations) {
  Open();
  Populate(30, 12);
  now_ = kT0 + 5 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());  // the other 18 breached
  Hours written;
  ASSERT_TRUE(ReadHours(ledger_->backend(), &written).ok());
  int64_t total = 0;
  for (const auto& [key, n] : written) total += n;
  EXPECT_EQ(total, 30) << "every decision counted once";
  engine_.reset();
  ledger_.reset();
  Exec("DROP TABLE window_hours");
  {
    std::unique_ptr<ledger::LedgerBackend> ro;
    ASSERT_TRUE(ledger::OpenBackend(lo_.url, /*read_only=*/true, &ro).ok());
    Hours derived;
    Status s = ReadHours(*ro, &derived);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(derived, written);
    EXPECT_TRUE(ledger::VerifyLedger(*ro, "").ok);
  }
  Open();
  Hours carried;
  ASSERT_TRUE(ReadHours(ledger_->backend(), &carried).ok());
  EXPECT_EQ(carried, written);
  EXPECT_TRUE(ledger::VerifyLedger(ledger_->backend(), "").ok);
}

// A replica prepares a report (evaluation, digests) and the writer records
// it: the log must be byte for byte what SubmitReport writes.
TEST_F(DutyEngineState, APreparedReportIsRecordedExactlyAsASubmittedOne) {
  Open();
  ledger::LedgerOptions other = lo_;
  other.url = carewatch::testing::FreshLedgerUrl(dir_, "prepared");
  other.signing_key_path = lo_.signing_key_path;  // the same key: the same checkpoints
  std::unique_ptr<ledger::Ledger> ledger2;
  ASSERT_TRUE(ledger::Ledger::Open(other, &ledger2).ok());
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [this] { return now_; };
  DutyEngine writer(ledger2.get(), options);
  ASSERT_TRUE(writer.Recover().ok());
  auto evaluator = LoadEvaluator(Pack());
  ASSERT_TRUE(writer.Activate(evaluator).ok());
  for (int i = 0; i < 20; ++i) {
    now_ = kT0 + i;
    // Every third report matches nothing: counted and indexed, no event.
    v1::ContentReport r = MakeReport("r" + std::to_string(i), kT0 + i, "svc",
                                     i % 3 == 0 ? "nothing to see" : "a signal here");
    v1::Verdict direct, queued;
    ASSERT_TRUE(engine_->SubmitReport(r, &direct).ok());
    v1::ReportFlagged prepared;
    ASSERT_TRUE(DutyEngine::Prepare(*evaluator, "k", r, &prepared).ok());
    Status s = writer.SubmitPrepared(prepared, &queued);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(ledger::SerializeDeterministic(direct), ledger::SerializeDeterministic(queued));
    if (i % 2 == 0) {
      std::vector<v1::Obligation> a, b;
      ASSERT_TRUE(
          engine_->RecordAction({"svc", r.report_id(), "remove_content", now_, "m"}, &a).ok());
      ActionInput in{"svc", r.report_id(), "remove_content", now_, "m"};
      ASSERT_TRUE(writer.RecordAction(in, &b).ok());
      ASSERT_EQ(a.size(), b.size());
    }
  }
  now_ += 2 * kHour;  // past the deadlines: the sweeps breach the same obligations
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_TRUE(writer.Sweep(now_).ok());
  EXPECT_GT(engine_->counts().breached, 0u);
  ASSERT_EQ(ledger_->size(), ledger2->size());
  ledger::Hash a, b;
  ASSERT_TRUE(ledger_->RootAt(ledger_->size(), &a).ok());
  ASSERT_TRUE(ledger2->RootAt(ledger2->size(), &b).ok());
  EXPECT_EQ(a, b) << "the same events in the same order";

  // A retry of a prepared report gets its first verdict and records nothing;
  // the same id with other content is refused.
  const uint64_t size = ledger2->size();
  v1::ReportFlagged again;
  ASSERT_TRUE(DutyEngine::Prepare(*evaluator, "k", MakeReport("r1", kT0 + 1), &again).ok());
  v1::Verdict v;
  ASSERT_TRUE(writer.SubmitPrepared(again, &v).ok());
  EXPECT_GT(v.ledger_seq(), 0u);
  v1::ReportFlagged changed;
  ASSERT_TRUE(
      DutyEngine::Prepare(*evaluator, "k", MakeReport("r1", kT0 + 1, "svc", "signal two"), &changed)
          .ok());
  EXPECT_EQ(writer.SubmitPrepared(changed, &v).code(), Status::Code::kAlreadyExists);
  // Evaluated with another rule set than the writer's: refused, nothing recorded.
  auto newer = LoadEvaluator(Pack("1m"));
  v1::ReportFlagged stale;
  ASSERT_TRUE(DutyEngine::Prepare(*newer, "k", MakeReport("fresh", now_), &stale).ok());
  Status s = writer.SubmitPrepared(stale, &v);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.message();
  EXPECT_NE(s.message().find("every replica must serve the same rules"), std::string::npos);
  EXPECT_EQ(ledger2->size(), size) << "nothing recorded by a retry or a refusal";
}

TEST_F(DutyEngineState, FindingsAndWindowsSurviveARestart) {
  Open();
  Populate(6, 0);
  now_ = kT0 + 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_EQ(engine_->counts().findings_open, 1u);
  Open();  // restart
  EXPECT_EQ(engine_->counts().findings_open, 1u);
  EXPECT_EQ(engine_->counts().breached, 6u);
  // A later breach in the window grows the same finding (a delta), not a new one.
  ExpectALaterBreachGrowsTheOneFindingTo(7);
}

// A ledger written before the windows' index held service, duty and status
// (obligations_decided, on deadline alone) is carried forward at its first
// writable open, and its windows are read back whole: the breaches' ids and
// findings too, which a restart reads from the table.
TEST_F(DutyEngineState, TheDecidedObligationsIndexOfAnEarlierLedgerIsCarriedForward) {
  if (lo_.url.rfind("sqlite", 0) != 0) GTEST_SKIP() << "the SQLite ledger's own schema";
  Open();
  Populate(6, 0);
  now_ = kT0 + 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_EQ(engine_->counts().findings_open, 1u);
  engine_.reset();
  ledger_.reset();
  const std::string indexes =
      "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_schema WHERE type = 'index' "
      "AND name LIKE 'obligations_decided%' ORDER BY name)";
  ASSERT_EQ(carewatch::testing::LedgerQuery(lo_.url, indexes),
            std::vector<std::string>{"obligations_decided_window"});
  Exec(
      "DROP INDEX obligations_decided_window; CREATE INDEX obligations_decided ON obligations "
      "(deadline) WHERE decided_seq > 0;");
  Open();
  EXPECT_EQ(carewatch::testing::LedgerQuery(lo_.url, indexes),
            std::vector<std::string>{"obligations_decided_window"});
  EXPECT_EQ(engine_->counts().findings_open, 1u);
  // A later breach grows the same finding by one: the six read back are
  // known to be in it already.
  ExpectALaterBreachGrowsTheOneFindingTo(7);
}

TEST_F(DutyEngineState, ALedgerCopiedToPostgreSQLKeepsItsStateAndItsRoot) {
  const std::string target = lo_.url;  // PostgreSQL when the suite runs there
  lo_.url = "sqlite://" + dir_ + "/source.db";
  Open();
  Populate(6, 2);
  v1::Verdict v;
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("quiet", now_, "svc", "nothing"), &v).ok());
  now_ = kT0 + 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_TRUE(ledger_->Flush().ok());
  const DutyEngine::Counts before = engine_->counts();
  ASSERT_EQ(before.findings_open, 1u);
  std::vector<v1::Finding> findings_before;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &findings_before).ok());
  v1::Checkpoint cp_before;
  ASSERT_TRUE(ledger_->LatestCheckpoint(&cp_before).ok());
  engine_.reset();
  ledger_.reset();
  ledger::CopyReport report;
  if (!carewatch::testing::OnPostgres()) {
    Status s = ledger::CopyLedger(lo_.url, "sqlite://" + dir_ + "/copy.db", &report);
    EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << "SQLite is no copy's target";
    return;
  }
  Status s = ledger::CopyLedger(lo_.url, target, &report);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(report.events, cp_before.tree_size());
  EXPECT_EQ(report.root_hex, HexEncode(cp_before.root_hash()));
  // Into a ledger that is not empty: refused.
  s = ledger::CopyLedger(lo_.url, target, &report);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.message();
  // carewatch on the copy: the same state, the same findings, the same
  // checkpoint, and the unflagged report's id still known.
  lo_.url = target;
  Open();
  const DutyEngine::Counts after = engine_->counts();
  EXPECT_EQ(after.reports, before.reports);
  EXPECT_EQ(after.flagged, before.flagged);
  EXPECT_EQ(after.open, before.open);
  EXPECT_EQ(after.met, before.met);
  EXPECT_EQ(after.breached, before.breached);
  EXPECT_EQ(after.findings_open, before.findings_open);
  std::vector<v1::Finding> findings_after;
  ASSERT_TRUE(ledger_->backend().QueryFindings({}, &findings_after).ok());
  ASSERT_EQ(findings_after.size(), findings_before.size());
  for (size_t i = 0; i < findings_after.size(); ++i) {
    EXPECT_EQ(findings_after[i].SerializeAsString(), findings_before[i].SerializeAsString());
  }
  v1::Checkpoint cp_after;
  ASSERT_TRUE(ledger_->LatestCheckpoint(&cp_after).ok());
  EXPECT_EQ(cp_after.tree_size(), cp_before.tree_size());
  EXPECT_EQ(cp_after.root_hash(), cp_before.root_hash());
  s = engine_->SubmitReport(MakeReport("quiet", now_, "svc", "other words"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << "the unflagged report's index came along";
  EXPECT_TRUE(ledger::VerifyLedger(ledger_->backend(), "").ok);
}

TEST_F(DutyEngineState, UnflaggedIdsAreForgottenAfterRetentionFlaggedOnesNever) {
  Open(/*retention=*/kDay);
  v1::Verdict v;
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("quiet", kT0, "svc", "nothing"), &v).ok());
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("loud", kT0), &v).ok());
  ASSERT_TRUE(engine_->Sweep(kT0 + 10).ok());
  Status s = engine_->SubmitReport(MakeReport("quiet", kT0, "svc", "other words"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << "within retention";
  now_ = kT0 + 2 * kDay;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_TRUE(engine_->SubmitReport(MakeReport("quiet", now_, "svc", "other words"), &v).ok())
      << "past retention the id names a new report";
  s = engine_->SubmitReport(MakeReport("loud", now_, "svc", "other signal"), &v);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << "flagged reports stay in the log's index";
}

TEST_F(DutyEngineState, AWindowLongerThanRetentionIsRefused) {
  ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.retention_seconds = 12 * kHour;  // the pack's window is 1d
  DutyEngine engine(ledger_.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  Status s = engine.Activate(LoadEvaluator(Pack()));
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("duty d: its systemic window 1d is longer than retention 12h"),
            std::string::npos)
      << s.message();
}

TEST_F(DutyEngineState, ALedgerOfTheEarlierSchemaIsCarriedForward) {
  Open();
  Populate(8, 3);
  now_ = kT0 + 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_TRUE(ledger_->Flush().ok());
  DutyEngine::Counts before = engine_->counts();
  v1::Checkpoint cp;
  ASSERT_TRUE(ledger_->LatestCheckpoint(&cp).ok());
  engine_.reset();
  ledger_.reset();
  // What schema 2 had: no stored subtrees, no state columns or tables.
  Exec(
      "DELETE FROM tree_nodes; DROP TABLE obligations; DROP TABLE obligation_actions; "
      "DROP TABLE counters; CREATE TABLE obligations (obligation_id TEXT PRIMARY KEY, "
      "service_id TEXT NOT NULL, duty_id TEXT NOT NULL, deadline INTEGER NOT NULL, opened_seq "
      "INTEGER NOT NULL, decided_seq INTEGER NOT NULL); UPDATE meta SET value = '2' WHERE key = "
      "'schema_version';");
  Open();
  DutyEngine::Counts after = engine_->counts();
  EXPECT_EQ(after.reports, before.reports);
  EXPECT_EQ(after.met, before.met);
  EXPECT_EQ(after.breached, before.breached);
  EXPECT_EQ(after.findings_open, before.findings_open);
  ledger::Hash root;
  ASSERT_TRUE(ledger_->RootAt(cp.tree_size(), &root).ok());
  EXPECT_EQ(root, cp.root_hash());
  std::vector<ledger::Hash> proof;
  ASSERT_TRUE(ledger_->InclusionProof(2, cp.tree_size(), &proof).ok());
  std::vector<ledger::StoredEvent> rows;
  ASSERT_TRUE(ledger_->backend().ReadEvents(2, 1, &rows).ok());
  EXPECT_TRUE(ledger::VerifyInclusion(rows[0].leaf_hash, 1, cp.tree_size(), proof, cp.root_hash()));
  ledger::VerifyReport r = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_F(DutyEngineState, AReloadThatAddsASystemicTestCountsWhatCameDueBefore) {
  Open();
  std::string plain = Pack();
  plain.replace(plain.find(",\n     systemic:"),
                plain.find("}}\n") + 1 - plain.find(",\n     systemic:"), "");
  ASSERT_EQ(plain.find("systemic"), std::string::npos) << plain;
  ASSERT_TRUE(engine_->Activate(LoadEvaluator(plain)).ok());
  Populate(4, 0);
  now_ = kT0 + 2 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  ASSERT_EQ(engine_->counts().breached, 4u);
  ASSERT_EQ(engine_->counts().findings_open, 0u) << "no systemic test yet";
  ASSERT_TRUE(engine_->Activate(LoadEvaluator(Pack())).ok());
  now_ += 60;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().findings_open, 1u)
      << "the four breaches already in the window count once the test exists";
}

TEST_F(DutyEngineState, VerifyFindsATamperedStateTable) {
  // A restart trusts the state tables, so `verify` checks them against the
  // log: reopening a met obligation or changing a total is found and named.
  Open();
  Populate(5, 3);
  engine_.reset();
  ledger_.reset();
  ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
  ledger::VerifyReport r = ledger::VerifyLedger(ledger_->backend(), "");
  ASSERT_TRUE(r.ok) << r.message;
  ledger_.reset();
  Exec(
      "UPDATE obligations SET decided_seq = 0, status = 1 WHERE obligation_id = (SELECT "
      "obligation_id FROM obligations WHERE status = 2 LIMIT 1)");
  ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
  r = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("table obligations: the row of obligation ob-"), std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find("differs from its events"), std::string::npos) << r.message;
  ledger_.reset();
  Exec("DELETE FROM obligations WHERE status = 1");  // the open ones, deleted
  ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
  r = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("is missing (deleted)"), std::string::npos) << r.message;
}

TEST_F(DutyEngineState, VerifyFindsATamperedCounter) {
  Open();
  Populate(3, 1);
  engine_.reset();
  ledger_.reset();
  Exec("UPDATE counters SET value = value - 1 WHERE name = 'breached' OR name = 'met'");
  ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
  ledger::VerifyReport r = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("table counters: 'met' is 0, the log and the statistics give 1"),
            std::string::npos)
      << r.message;
}

// A carewatch from before window_hours that went on deciding in a ledger
// this one had written (a rolling upgrade's older writer, or a step back)
// leaves the hours short, and the counters say by how much: `verify` does
// not check them, and the next writable open counts them again.
TEST_F(DutyEngineState, HoursAnEarlierCarewatchLeftShortAreCountedAgain) {
  Open();
  Populate(6, 4);
  now_ = kT0 + 5 * kHour;
  ASSERT_TRUE(engine_->Sweep(now_).ok());  // the other 2 breached
  Hours before;
  ASSERT_TRUE(ReadHours(ledger_->backend(), &before).ok());
  engine_.reset();
  ledger_.reset();
  // Two decisions the earlier carewatch recorded without counting them.
  Exec("UPDATE window_hours SET decided = decided - 2");
  Exec("UPDATE counters SET value = value - 2 WHERE name = 'window_hours'");
  {
    std::unique_ptr<ledger::LedgerBackend> ro;
    ASSERT_TRUE(ledger::OpenBackend(lo_.url, /*read_only=*/true, &ro).ok());
    ledger::VerifyReport r = ledger::VerifyLedger(*ro, "");
    EXPECT_TRUE(r.ok) << r.message;
  }
  Open();
  Hours after;
  ASSERT_TRUE(ReadHours(ledger_->backend(), &after).ok());
  EXPECT_EQ(after, before);
  ledger::VerifyReport r = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_F(DutyEngineState, VerifyFindsATamperedWindowHour) {
  // A restart trusts the windows' counts by hour: `verify` checks them.
  Open();
  Populate(3, 2);
  engine_.reset();
  ledger_.reset();
  Exec("UPDATE window_hours SET decided = decided + 5");
  ASSERT_TRUE(ledger::Ledger::Open(lo_, &ledger_).ok());
  ledger::VerifyReport r = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("table window_hours: the hour "), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("counts 7 decided obligations; the log gives 2"), std::string::npos)
      << r.message;
}

// ---- statistics for the regulator --------------------------------------

TEST(DutyEngineStats, PeriodsCountObligationsAndCompareWithTheYearBefore) {
  std::string dir = TempDir("stats");
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  int64_t now = kT0 - 400 * kDay;
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [&] { return now; };
  options.retention_seconds = 3000 * kDay;
  DutyEngine engine(l.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
  // January 2025: 2 reports, 1 flagged; January 2026: 5 reports, 3 flagged
  // (one in another service); February 2026: 1 unflagged.
  const int64_t jan25 = kT0 - 365 * kDay;
  auto submit = [&](const std::string& id, int64_t at, const std::string& service,
                    const std::string& text) {
    now = at;
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(MakeReport(id, at, service, text), &v).ok()) << id;
  };
  submit("a1", jan25, "svc", "a signal");
  submit("a2", jan25 + kHour, "svc", "nothing");
  submit("b1", kT0, "svc", "a signal");
  submit("b2", kT0 + kHour, "svc", "a signal");
  submit("b3", kT0 + 2 * kHour, "svc", "nothing");
  submit("b4", kT0 + 3 * kHour, "svc", "nothing");
  submit("o1", kT0 + 4 * kHour, "other", "a signal");
  submit("c1", kT0 + 40 * kDay, "svc", "nothing");
  ASSERT_TRUE(l->Flush().ok());

  std::vector<ledger::PeriodStats> stats;
  std::vector<std::string> services;
  ASSERT_TRUE(ledger::ComputeStats(l->backend(), "svc", "month", kT0 - 4 * kDay, INT64_MAX, &stats,
                                   &services)
                  .ok());
  ASSERT_EQ(stats.size(), 2u) << "January and February 2026; 2025 only for comparison";
  EXPECT_EQ(stats[0].period, "2026-01");
  EXPECT_EQ(stats[0].reports, 4);
  EXPECT_EQ(stats[0].flagged, 2);
  EXPECT_EQ(stats[0].obligations, 2) << "one duty per flagged report";
  ASSERT_TRUE(stats[0].has_year_ago);
  EXPECT_DOUBLE_EQ(stats[0].reports_year_change, 100.0);      // 2 -> 4
  EXPECT_DOUBLE_EQ(stats[0].obligations_year_change, 100.0);  // 1 -> 2
  EXPECT_TRUE(stats[0].has_previous) << "December 2025 is counted, if empty";
  EXPECT_EQ(stats[1].period, "2026-02");
  EXPECT_EQ(stats[1].obligations, 0);
  EXPECT_FALSE(stats[1].has_year_ago) << "February 2025 had no reports";
  EXPECT_EQ(services, std::vector<std::string>{"svc"});

  ASSERT_TRUE(
      ledger::ComputeStats(l->backend(), "", "year", INT64_MIN, INT64_MAX, &stats, &services).ok());
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[1].period, "2026");
  EXPECT_EQ(stats[1].obligations, 3) << "both services";
  EXPECT_TRUE(stats[1].has_year_ago);
  EXPECT_DOUBLE_EQ(stats[1].obligations_year_change, 200.0);
  EXPECT_EQ(services, (std::vector<std::string>{"other", "svc"}));
  std::filesystem::remove_all(dir);
}
}  // namespace
}  // namespace carewatch::duty

namespace carewatch::duty {
namespace {

// A platform chooses how many distinct reasons it sends; the statistics
// keep the largest kMaxBreakdownKeys - 1 and sum the rest, so the answer's
// size does not grow with them.
TEST(DutyEngineStats, BreakdownsAreBoundedWhateverValuesArrive) {
  std::string dir = TempDir("stats-cap");
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(dir);
  lo.signing_key_path = dir + "/ledger.key";
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &l).ok());
  int64_t now = kT0;
  DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = [&] { return now; };
  DutyEngine engine(l.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  ASSERT_TRUE(engine.Activate(LoadEvaluator(Pack())).ok());
  const int kReasons = 120;
  for (int i = 0; i < kReasons; ++i) {
    v1::ContentReport r = MakeReport("r" + std::to_string(i), kT0 + i, "svc", "nothing");
    r.set_reason("reason-" + std::to_string(i));
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(r, &v).ok());
  }
  // One reason more often than the rest: it is among those kept.
  for (int i = 0; i < 3; ++i) {
    v1::ContentReport r = MakeReport("x" + std::to_string(i), kT0 + 200 + i, "svc", "nothing");
    r.set_reason("reason-119");
    v1::Verdict v;
    ASSERT_TRUE(engine.SubmitReport(r, &v).ok());
  }
  ASSERT_TRUE(l->Flush().ok());
  std::vector<ledger::PeriodStats> stats;
  ASSERT_TRUE(
      ledger::ComputeStats(l->backend(), "svc", "month", INT64_MIN, INT64_MAX, &stats).ok());
  ASSERT_EQ(stats.size(), 1u);
  const auto& by_reason = stats[0].by_reason;
  EXPECT_EQ(by_reason.size(), ledger::kMaxBreakdownKeys);
  ASSERT_TRUE(by_reason.count("(others)"));
  EXPECT_EQ(by_reason.at("reason-119"), 4);
  int64_t sum = 0;
  for (const auto& [k, n] : by_reason) sum += n;
  EXPECT_EQ(sum, kReasons + 3) << "nothing is lost, only summed";
  EXPECT_EQ(by_reason.at("(others)"),
            kReasons + 3 - 4 - static_cast<int64_t>(ledger::kMaxBreakdownKeys - 2));
}

}  // namespace
}  // namespace carewatch::duty
