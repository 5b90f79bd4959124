#include "engine/duty/obligation.h"

#include <gtest/gtest.h>

namespace carewatch::duty {
namespace {

const std::vector<std::string> kRequired = {"remove_content", "report_to_nca"};
constexpr int64_t kDeadline = 1000;

TEST(Obligation, OpenBeforeTheDeadline) {
  auto o = ResolveObligation(kDeadline, kRequired, {{"remove_content", 100}}, 500);
  EXPECT_EQ(o.state, ObligationState::kOpen);
}

TEST(Obligation, MetWhenEveryActionIsOnTime) {
  auto o = ResolveObligation(kDeadline, kRequired,
                             {{"report_to_nca", 900}, {"remove_content", 100}}, 2000);
  EXPECT_EQ(o.state, ObligationState::kMet);
  EXPECT_EQ(o.decided_at, 900);
}

TEST(Obligation, ActionAtTheDeadlineIsOnTime) {
  auto o = ResolveObligation(kDeadline, kRequired,
                             {{"remove_content", 1}, {"report_to_nca", kDeadline}}, 5000);
  EXPECT_EQ(o.state, ObligationState::kMet);
}

TEST(Obligation, MissedWhenAnActionNeverCame) {
  auto o = ResolveObligation(kDeadline, kRequired, {{"remove_content", 100}}, 1001);
  EXPECT_EQ(o.state, ObligationState::kBreached);
  EXPECT_EQ(o.breach, BreachKind::kMissed);
  EXPECT_EQ(o.decided_at, kDeadline);
}

TEST(Obligation, LateWhenAnActionCameAfterTheDeadline) {
  auto o = ResolveObligation(kDeadline, kRequired,
                             {{"remove_content", 100}, {"report_to_nca", 1500}}, 2000);
  EXPECT_EQ(o.state, ObligationState::kBreached);
  EXPECT_EQ(o.breach, BreachKind::kLate);
  EXPECT_EQ(o.decided_at, 1500);
}

TEST(Obligation, ActionsAfterNowDoNotCount) {
  auto o = ResolveObligation(kDeadline, kRequired,
                             {{"remove_content", 100}, {"report_to_nca", 900}}, 800);
  EXPECT_EQ(o.state, ObligationState::kOpen);
}

TEST(Obligation, DischargedByReviewBeforeTheDeadline) {
  auto o = ResolveObligation(kDeadline, kRequired, {{"reviewed_not_illegal", 300}}, 5000);
  EXPECT_EQ(o.state, ObligationState::kDischarged);
  EXPECT_EQ(o.decided_at, 300);
}

TEST(Obligation, ReviewAfterTheDeadlineDoesNotDischarge) {
  auto o = ResolveObligation(kDeadline, kRequired, {{"reviewed_not_illegal", 1300}}, 5000);
  EXPECT_EQ(o.state, ObligationState::kBreached);
  EXPECT_EQ(o.breach, BreachKind::kMissed);
}

TEST(Obligation, ReviewAfterMetDoesNotChangeIt) {
  auto o = ResolveObligation(
      kDeadline, kRequired,
      {{"remove_content", 10}, {"report_to_nca", 20}, {"reviewed_not_illegal", 30}}, 5000);
  EXPECT_EQ(o.state, ObligationState::kMet);
}

TEST(Obligation, DuplicatesAndUnrelatedActionsAreIgnored) {
  auto o = ResolveObligation(
      kDeadline, kRequired,
      {{"remove_content", 10}, {"remove_content", 20}, {"suspend_account", 30}}, 5000);
  EXPECT_EQ(o.state, ObligationState::kBreached);
  EXPECT_EQ(o.breach, BreachKind::kMissed);
}

}  // namespace
}  // namespace carewatch::duty
