#include <gtest/gtest.h>

#include <atomic>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "engine/ledger/derive.h"
#include "engine/ledger/verify.h"
#include "engine/signals/signals.h"
#include "tests/test_ledger.h"
#include "tests/testing.h"

namespace carewatch::signals {
namespace {

constexpr int64_t kT0 = 1767607200;  // 2026-01-05T10:00:00Z
constexpr int64_t kDay = 86400;

// The review duty as the shipped pack has it, with a 1h deadline.
const char* kPack =
    "pack: t\nversion: \"1\"\nduties:\n"
    "  - {id: review, deadline: 1h, record_grace: 0s, actions: [review_linked_account]}\n"
    "rules:\n"
    "  - id: linkage\n    duty: review\n    severity: high\n"
    "    when: {all: [{field: reason, equals: linkage_alert}, {field: reporter_type, equals: "
    "carewatch}]}\n";

// A signal engine on a real ledger (SQLite, or PostgreSQL: tests/test_ledger.h)
// and a simulated clock.
class SignalEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/cw-signals-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    url_ = carewatch::testing::FreshLedgerUrl(dir_);
  }
  void TearDown() override {
    signals_.reset();
    engine_.reset();
    ledger_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open(int min_services = 2, std::vector<std::string> sharing = {}) {
    ledger::LedgerOptions lo;
    lo.url = url_;
    lo.signing_key_path = dir_ + "/ledger.key";
    lo.now = [this] { return now_ * 1000; };
    ASSERT_TRUE(ledger::Ledger::Open(lo, &ledger_).ok());
    duty::DutyEngineOptions d;
    d.hmac_key = "k";
    d.now = [this] { return now_.load(); };
    engine_ = std::make_unique<duty::DutyEngine>(ledger_.get(), d);
    ASSERT_TRUE(engine_->Recover().ok());
    auto e = testing::MakeEvaluator(kPack);
    ASSERT_TRUE(e);
    ASSERT_TRUE(engine_->Activate(std::shared_ptr<const eval::Evaluator>(std::move(e))).ok());
    SignalOptions o;
    o.key_path = dir_ + "/signals.key";
    o.window_seconds = 7 * kDay;
    o.retention_seconds = 30 * kDay;
    o.min_services = min_services;
    o.name_sharing = std::move(sharing);
    o.hmac_key = "k";
    o.now = [this] { return now_.load(); };
    signals_ = std::make_unique<SignalEngine>(ledger_.get(), engine_.get(), o);
    ASSERT_TRUE(signals_->Open().ok());
  }
  void Reopen(int min_services = 2) {
    signals_.reset();
    engine_.reset();
    ledger_.reset();
    Open(min_services);
  }

  std::string Token(const std::string& value) {
    std::string t;
    EXPECT_TRUE(signals_->TokenOf("handle", value, &t).ok());
    return t;
  }
  std::vector<v1::LinkageAlert> Submit(const std::string& service, const std::string& report,
                                       const std::string& token) {
    std::vector<v1::LinkageAlert> alerts;
    Status s =
        signals_->Submit(service, report, {{"handle", token, "csea.grooming-response"}}, &alerts);
    EXPECT_TRUE(s.ok()) << s.message();
    return alerts;
  }
  std::vector<v1::LinkageAlert> Alerts(const std::string& service) {
    ledger::AlertQuery q;
    q.service_id = service;
    std::vector<v1::LinkageAlert> out;
    EXPECT_TRUE(signals_->ListAlerts(q, &out).ok());
    return out;
  }
  int64_t CountRows(const char* table) {
    std::vector<std::string> rows =
        carewatch::testing::LedgerQuery(url_, std::string("SELECT COUNT(*) FROM ") + table);
    return rows.size() == 1 ? std::stoll(rows[0]) : -1;
  }

  std::string dir_, url_;
  std::atomic<int64_t> now_{kT0};  // read by the ledger's writer too
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<duty::DutyEngine> engine_;
  std::unique_ptr<SignalEngine> signals_;
};

TEST_F(SignalEngineTest, NoAlertBelowTheMinimumOfServices) {
  Open(/*min_services=*/3);
  const std::string t = Token("otherapp:alice");
  EXPECT_TRUE(Submit("s1", "r1", t).empty());
  EXPECT_TRUE(Submit("s2", "r2", t).empty()) << "two services, a minimum of three";
  EXPECT_TRUE(Submit("s2", "r3", t).empty()) << "the same service again counts once";
  auto third = Submit("s3", "r4", t);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].other_services(), 2);
  EXPECT_EQ(Alerts("s1").size(), 1u);
  ASSERT_EQ(Alerts("s2").size(), 1u);
  // s2's alert names both of its reports, and nobody else's.
  const v1::LinkageAlert s2 = Alerts("s2")[0];
  EXPECT_EQ(std::vector<std::string>(s2.report_ids().begin(), s2.report_ids().end()),
            (std::vector<std::string>{"r2", "r3"}));
}

TEST_F(SignalEngineTest, TokensMeetOnlyWithinTheWindowAndAreDeletedAfterRetention) {
  Open();
  const std::string t = Token("otherapp:bob");
  Submit("s1", "r1", t);
  now_ += 8 * kDay;  // past the 7-day window
  EXPECT_TRUE(Submit("s2", "r2", t).empty());
  now_ += 1 * kDay;
  EXPECT_EQ(Submit("s1", "r3", t).size(), 1u) << "s2's token is within the window";
  EXPECT_EQ(CountRows("signal_tokens"), 3);
  now_ += 40 * kDay;
  ASSERT_TRUE(signals_->Prune().ok());
  EXPECT_EQ(CountRows("signal_tokens"), 0);
  EXPECT_EQ(CountRows("signal_alert_tokens"), 0);
  EXPECT_EQ(Alerts("s1").size(), 1u) << "alerts stay in the log";
}

// The window moving past the signals that raised an alert changes nothing
// the alert said: it is not delivered again for that (its first_seen and
// count of services stay), only when something is added.
TEST_F(SignalEngineTest, AnAlertIsNotDeliveredAgainWhenOnlyTheWindowMoves) {
  Open();
  const std::string t = Token("otherapp:dana");
  Submit("s1", "r1", t);
  now_ += 1 * kDay;
  Submit("s2", "r2", t);
  now_ += 1 * kDay;
  Submit("s3", "r3", t);
  ASSERT_EQ(Alerts("s2").size(), 1u);
  const v1::LinkageAlert before = Alerts("s2")[0];
  EXPECT_EQ(before.first_seen().seconds(), kT0);
  EXPECT_EQ(before.other_services(), 2);
  // s1's signal leaves the 7-day window; s2 submits the same report again.
  now_ = kT0 + 7 * kDay + kDay / 2;
  EXPECT_TRUE(Submit("s2", "r2", t).empty()) << "nothing the alert says changed";
  const v1::LinkageAlert after = Alerts("s2")[0];
  EXPECT_EQ(after.cursor(), before.cursor()) << "no new event for it";
  // A new report of s2's is added: delivered again, still saying what it said.
  auto added = Submit("s2", "r4", t);
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(added[0].alert_id(), before.alert_id());
  EXPECT_EQ(std::vector<std::string>(added[0].report_ids().begin(), added[0].report_ids().end()),
            (std::vector<std::string>{"r2", "r4"}));
  EXPECT_EQ(added[0].first_seen().seconds(), kT0);
  EXPECT_EQ(added[0].other_services(), 2);
}

TEST_F(SignalEngineTest, NamesAreSharedOnlyBetweenServicesThatBothOptedIn) {
  Open(2, {"s1", "s2"});
  const std::string t = Token("otherapp:carol");
  Submit("s1", "r1", t);
  Submit("s2", "r2", t);
  Submit("s3", "r3", t);
  auto names = [&](const std::string& s) {
    auto a = Alerts(s);
    EXPECT_EQ(a.size(), 1u);
    return std::vector<std::string>(a[0].other_service_ids().begin(),
                                    a[0].other_service_ids().end());
  };
  EXPECT_EQ(names("s1"), std::vector<std::string>{"s2"});
  EXPECT_EQ(names("s2"), std::vector<std::string>{"s1"});
  EXPECT_TRUE(names("s3").empty()) << "s3 did not opt in";
  EXPECT_EQ(Alerts("s1")[0].other_services(), 2);
}

TEST_F(SignalEngineTest, AnIgnoredAlertIsBreachedAndTheLedgerVerifies) {
  Open();
  const std::string t = Token("otherapp:dave");
  Submit("s1", "r1", t);
  ASSERT_EQ(Submit("s2", "r2", t).size(), 1u);
  now_ += 2 * 3600;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().breached, 2u);
  ASSERT_TRUE(ledger_->Flush().ok());
  ledger::VerifyReport report = ledger::VerifyLedger(ledger_->backend(), "");
  EXPECT_TRUE(report.ok) << report.message;
}

TEST_F(SignalEngineTest, AReviewObligationACrashLeftUnopenedIsOpenedOnStart) {
  Open();
  // The state a crash leaves between an alert's event and its review
  // obligation: the LINKAGE_DETECTED event is durable, nothing else.
  std::vector<v1::LedgerEvent> events(1);
  v1::LedgerEvent& e = events[0];
  e.set_type(v1::LINKAGE_DETECTED);
  e.set_format(ledger::kTwoClockFormat);
  e.mutable_time()->set_seconds(now_);
  e.mutable_recorded_at()->set_seconds(now_);
  v1::LinkageAlert* a = e.mutable_linkage_alert();
  a->set_alert_id("a1");
  a->set_service_id("s1");
  a->add_report_ids("r1");
  a->set_token_kind("handle");
  a->set_status("open");
  a->set_review_report_id("linkage:a1");
  ASSERT_TRUE(ledger_->Append(&events).ok());
  EXPECT_EQ(engine_->counts().open, 0u);
  Reopen();
  EXPECT_EQ(engine_->counts().open, 1u) << "Open() opened the missing review obligation";
  Reopen();
  EXPECT_EQ(engine_->counts().open, 1u) << "and opening again changes nothing";
  now_ += 2 * 3600;
  ASSERT_TRUE(engine_->Sweep(now_).ok());
  EXPECT_EQ(engine_->counts().breached, 1u);
}

TEST_F(SignalEngineTest, ConcurrentSubmissionsOfOneTokenRaiseOneAlertPerService) {
  Open();
  const std::string t = Token("otherapp:frank");
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      std::vector<v1::LinkageAlert> alerts;
      EXPECT_TRUE(signals_
                      ->Submit("s" + std::to_string(i % 4), "r" + std::to_string(i),
                               {{"handle", t, "c"}}, &alerts)
                      .ok());
    });
  }
  for (auto& th : threads) th.join();
  for (int s = 0; s < 4; ++s) {
    auto a = Alerts("s" + std::to_string(s));
    ASSERT_EQ(a.size(), 1u) << "s" << s;
    EXPECT_EQ(a[0].report_ids_size(), 2);
    EXPECT_EQ(a[0].other_services(), 3);
  }
  EXPECT_EQ(engine_->counts().open, 4u) << "one review obligation per service";
}

TEST_F(SignalEngineTest, TheQuotaCountsAcrossRestartsAndResetsDaily) {
  Open();
  SignalOptions o = signals_->options();
  ASSERT_EQ(o.daily_quota, 10000);
  std::vector<std::string> out;
  int64_t remaining = 0;
  Scalar blind;
  Element blinded;
  ASSERT_TRUE(Blind("x", &blind, &blinded).ok());
  const std::string e(reinterpret_cast<const char*>(blinded.data()), blinded.size());
  std::vector<std::string> many(100, e);
  for (int i = 0; i < 99; ++i)
    ASSERT_TRUE(signals_->BlindEvaluate("s1", "p", many, &out, &remaining).ok());
  EXPECT_EQ(remaining, 100);
  Reopen();
  ASSERT_TRUE(signals_->BlindEvaluate("s1", "p", many, &out, &remaining).ok());
  EXPECT_EQ(remaining, 0);
  EXPECT_EQ(signals_->BlindEvaluate("s1", "p", {e}, &out, &remaining).code(),
            Status::Code::kResourceExhausted);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(signals_->BlindEvaluate("s2", "p", {e}, &out, &remaining).ok())
      << "quotas are per service";
  now_ += kDay;
  EXPECT_TRUE(signals_->BlindEvaluate("s1", "p", {e}, &out, &remaining).ok()) << "a new UTC day";
}

}  // namespace
}  // namespace carewatch::signals
