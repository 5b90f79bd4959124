#include "engine/report/report.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace carewatch::report {
namespace {

constexpr int64_t kT0 = 1767607200;  // 2026-01-05T10:00:00Z
constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 86400;

ledger::EvidenceItem Item(uint64_t seq, v1::EventType type, int64_t at) {
  ledger::EvidenceItem item;
  item.event.seq = seq;
  item.event.leaf_hash = std::string(32, static_cast<char>(seq));
  item.parsed.set_seq(seq);
  item.parsed.set_type(type);
  item.parsed.mutable_time()->set_seconds(at);
  return item;
}

ledger::EvidenceItem Opened(uint64_t seq, const std::string& id, int64_t received,
                            const std::string& service = "svc") {
  ledger::EvidenceItem item = Item(seq, v1::OBLIGATION_OPENED, received);
  auto* o = item.parsed.mutable_obligation_opened();
  o->set_service_id(service);
  o->set_report_id("r-" + id);
  o->mutable_received_at()->set_seconds(received);
  o->mutable_obligation()->set_obligation_id(id);
  o->mutable_obligation()->set_duty_id("d");
  o->mutable_obligation()->mutable_deadline()->set_seconds(received + kHour);
  return item;
}

ledger::EvidenceItem Met(uint64_t seq, const std::string& id, int64_t at) {
  ledger::EvidenceItem item = Item(seq, v1::OBLIGATION_MET, at);
  item.parsed.mutable_obligation_closed()->set_obligation_id(id);
  item.parsed.mutable_obligation_closed()->mutable_at()->set_seconds(at);
  return item;
}

ledger::EvidenceItem Breached(uint64_t seq, const std::string& id, int64_t deadline) {
  ledger::EvidenceItem item = Item(seq, v1::DUTY_BREACHED, deadline);
  auto* b = item.parsed.mutable_breach();
  b->set_obligation_id(id);
  b->set_kind("missed");
  b->mutable_at()->set_seconds(deadline);
  b->mutable_deadline()->set_seconds(deadline);
  return item;
}

// Four obligations an hour apart (deadlines kT0+1h..kT0+4h): the first and
// third met, the second and fourth breached; a finding over a 2h window
// evaluated at kT0+2h and kT0+4h.
FindingEvidence Sample() {
  FindingEvidence fe;
  v1::Finding& f = fe.finding;
  f.set_finding_id("fd-1");
  f.set_service_id("svc");
  f.set_duty_id("d");
  f.set_status("open");
  f.mutable_opened_at()->set_seconds(kT0 + 2 * kHour);
  f.mutable_thresholds()->set_window_seconds(2 * kHour);
  f.mutable_thresholds()->set_min_breaches(1);
  f.mutable_thresholds()->set_min_breach_rate(0.5);
  f.add_obligation_ids("o2");
  f.add_obligation_ids("o4");
  uint64_t seq = 1;
  ledger::EvidenceItem rs = Item(seq++, v1::RULESET_ACTIVATED, kT0 - kDay);
  auto* terms = rs.parsed.mutable_ruleset_activated()->add_duties();
  terms->set_id("d");
  terms->set_statute("OSA 2023 s.10");
  terms->set_summary("Act on it");
  fe.items.push_back(rs);
  for (const auto& [svc, name] : {std::pair{"svc", "A. Person"}, {"other", "B. Elsewhere"}}) {
    ledger::EvidenceItem acc = Item(seq++, v1::ACCOUNTABILITY_CHANGED, kT0 - kDay);
    auto* a = acc.parsed.mutable_accountability_changed();
    a->set_service_id(svc);
    a->set_duty("*");
    a->set_name(name);
    a->set_role("Head");
    a->mutable_from()->set_seconds(kT0 - 10 * kDay);
    fe.items.push_back(acc);
  }
  for (int i = 0; i < 4; ++i)
    fe.items.push_back(Opened(seq++, "o" + std::to_string(i + 1), kT0 + i * kHour));
  fe.items.push_back(Opened(seq++, "elsewhere", kT0, "other"));  // another service
  ledger::EvidenceItem action = Item(seq++, v1::ACTION_RECORDED, kT0 + 600);
  action.parsed.mutable_action_recorded()->set_action("remove_content");
  action.parsed.mutable_action_recorded()->mutable_taken_at()->set_seconds(kT0 + 600);
  action.parsed.mutable_action_recorded()->add_obligation_ids("o1");
  fe.items.push_back(action);
  fe.items.push_back(Met(seq++, "o1", kT0 + 600));
  fe.items.push_back(Breached(seq++, "o2", kT0 + 2 * kHour));
  ledger::EvidenceItem opened = Item(seq++, v1::FINDING_OPENED, kT0 + 2 * kHour);
  opened.parsed.mutable_finding()->mutable_window_start()->set_seconds(kT0);
  opened.parsed.mutable_finding()->mutable_window_end()->set_seconds(kT0 + 2 * kHour);
  fe.items.push_back(opened);
  fe.items.push_back(Met(seq++, "o3", kT0 + 2 * kHour + 600));
  fe.items.push_back(Breached(seq++, "o4", kT0 + 4 * kHour));
  ledger::EvidenceItem updated = Item(seq++, v1::FINDING_UPDATED, kT0 + 4 * kHour);
  updated.parsed.mutable_finding()->mutable_window_start()->set_seconds(kT0 + 2 * kHour);
  updated.parsed.mutable_finding()->mutable_window_end()->set_seconds(kT0 + 4 * kHour);
  fe.items.push_back(updated);
  fe.checked = fe.verified = true;
  fe.message = "verified";
  return fe;
}

TEST(ReportTimeline, ObligationsActionsBreachesTenuresAndTheRateComeFromTheEvidence) {
  Timeline t = BuildTimeline(Sample());
  ASSERT_EQ(t.obligations.size(), 4u) << "the other service's obligation is not this finding's";
  EXPECT_EQ(t.obligations[0].obligation_id, "o1");
  EXPECT_EQ(t.obligations[0].outcome, "met");
  ASSERT_EQ(t.obligations[0].actions.size(), 1u);
  EXPECT_EQ(t.obligations[0].actions[0].second, "remove_content");
  EXPECT_EQ(t.obligations[1].outcome, "breached");
  EXPECT_EQ(t.obligations[1].breach_kind, "missed");
  EXPECT_TRUE(t.obligations[1].in_finding);
  EXPECT_FALSE(t.obligations[2].in_finding);
  ASSERT_EQ(t.tenures.size(), 1u) << "only the service's own accountable people";
  EXPECT_EQ(t.tenures[0].name, "A. Person");
  EXPECT_EQ(t.tenures[0].to, INT64_MAX) << "in post";
  EXPECT_EQ(t.statute, "OSA 2023 s.10");
  EXPECT_EQ(t.summary, "Act on it");
  // Points from the first window's end (kT0+2h) to the last (kT0+4h): at
  // kT0+2h o1, o2 are due (1 breached); at +3h o2, o3; at +4h o3, o4.
  ASSERT_EQ(t.rate.size(), 3u);
  EXPECT_EQ(t.rate[0].at, kT0 + 2 * kHour);
  EXPECT_EQ(t.rate[0].due, 2);
  EXPECT_EQ(t.rate[0].breached, 1);
  EXPECT_EQ(t.rate[1].at, kT0 + 3 * kHour);
  EXPECT_EQ(t.rate[1].due, 2);
  EXPECT_EQ(t.rate[1].breached, 1);
  EXPECT_EQ(t.rate[2].at, kT0 + 4 * kHour);
  EXPECT_DOUBLE_EQ(t.rate[2].rate, 0.5);
  EXPECT_LT(t.start, kT0);
  EXPECT_GT(t.end, kT0 + 4 * kHour);
}

TEST(ReportHtml, WhatTheSourceSaysIsEscapedAndNothingIsFetched) {
  ReportData d;
  d.cover.generated_at = kT0;
  d.cover.key_given = d.cover.checkpoint_verified = true;
  d.cover.ledger_checked = d.cover.ledger_verified = true;
  FindingEvidence fe = Sample();
  fe.finding.set_service_id("<script>alert(1)</script>");
  fe.finding.set_finding_id("fd-\"onmouseover=x");
  d.findings.push_back(fe);
  ServiceTrend t;
  t.service_id = "<img src=x>";
  ledger::PeriodStats p;
  p.period = "2026-01";
  p.reports = 1234567;
  t.periods.push_back(p);
  d.trends.push_back(t);
  std::string html = RenderHtml(d);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("\"onmouseover"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  EXPECT_NE(html.find("1,234,567"), std::string::npos);
  EXPECT_NE(html.find("default-src 'none'"), std::string::npos) << "fetching nothing, by policy";
  EXPECT_NE(html.find("data-verified=\"all\""), std::string::npos);
  EXPECT_NE(html.find("class=\"timeline\""), std::string::npos);
}

TEST(ReportHtml, TheCoverSaysWhatWasNotVerified) {
  ReportData d;
  d.findings.push_back(Sample());
  d.cover.checkpoint_verified = true;
  // No key given, no ledger check: not everything is verified.
  EXPECT_NE(RenderHtml(d).find("data-verified=\"partial\""), std::string::npos);
  d.cover.key_given = true;
  d.cover.ledger_checked = d.cover.ledger_verified = true;
  EXPECT_NE(RenderHtml(d).find("data-verified=\"all\""), std::string::npos);
  d.findings[0].verified = false;
  d.findings[0].message = "entry seq 7: inclusion proof does not verify";
  std::string html = RenderHtml(d);
  EXPECT_NE(html.find("data-verified=\"failed\""), std::string::npos);
  EXPECT_NE(html.find("entry seq 7: inclusion proof does not verify"), std::string::npos);
  d.findings[0].verified = true;
  d.cover.findings_after_checkpoint = 2;
  html = RenderHtml(d);
  EXPECT_NE(html.find("data-verified=\"all\""), std::string::npos)
      << "findings newer than the checkpoint are left out, not failed";
  EXPECT_NE(html.find("2 findings recorded after this checkpoint are not in this report"),
            std::string::npos);
  d.cover.checkpoint_verified = false;
  EXPECT_NE(RenderHtml(d).find("data-verified=\"failed\""), std::string::npos)
      << "a checkpoint not signed by the given key";
}

// A log whose signing key changed says so on the cover, in the source's
// words escaped.
TEST(ReportHtml, TheCoverListsTheLogsKeyChanges) {
  ReportData d;
  EXPECT_EQ(RenderHtml(d).find("key-rotations"), std::string::npos) << "none, no list";
  v1::KeyRotationEntry r;
  r.set_seq(379);
  r.mutable_recorded_at()->set_seconds(1796144760);
  r.mutable_rotated()->set_previous_verifier_key("carewatch/x+dd46487a+AAAA");
  r.mutable_rotated()->set_verifier_key("carewatch/x+bf329a76+BBBB");
  r.mutable_rotated()->set_reason("<b>scheduled</b>");
  d.cover.key_rotations.push_back(r);
  const std::string html = RenderHtml(d);
  EXPECT_NE(html.find("<li>event 379, 2026-12-01 17:06 UTC: key dd46487a handed over to "
                      "bf329a76 (&lt;b&gt;scheduled&lt;/b&gt;)"),
            std::string::npos)
      << html.substr(
             html.find("key-rotations") == std::string::npos ? 0 : html.find("key-rotations"), 400);
}

TEST(ReportHtml, ChangesForPeople) {
  EXPECT_EQ(ChangeText(160, 100), "+60.0%");
  EXPECT_EQ(ChangeText(50, 100), "-50.0%");
  EXPECT_EQ(ChangeText(100, 100), "0%");
  EXPECT_EQ(ChangeText(5, 0), "new");
  EXPECT_EQ(ChangeText(0, 0), "");
  // Counts a server sent, not ones a ledger could hold: no wrapped difference,
  // no 300-digit percentage.
  EXPECT_EQ(ChangeText(INT64_MAX, 1), "+9.22e+20%");
  EXPECT_EQ(ChangeText(INT64_MIN, INT64_MAX), "-200.0%");
  // The same change as `audit stats` prints it from a ledger copy.
  EXPECT_EQ(ledger::FormatChange(INT64_MIN, INT64_MAX), "-200.0%");
}

// The statistics come from the source the report checks (`report --server`:
// the carewatchd of the party held to account), so any count may arrive.
// Found by fuzz_report_stats: the axis bound and the stacked sums
// overflowed, and INT64_MIN printed as "--,...".
TEST(ReportHtml, StatisticsAtTheEndsOfTheirRangeStillRender) {
  ReportData d;
  d.cover.generated_at = kT0;
  ServiceTrend t;
  t.service_id = "example-social";
  ledger::PeriodStats p;
  p.period = "2026-01";
  p.reports = INT64_MAX;
  p.flagged = INT64_MIN;
  p.breaches_by_kind = {{"missed", INT64_MAX}, {"late", INT64_MAX}, {"late_recorded", 5}};
  t.periods.push_back(p);
  p.period = "2026-02";
  p.reports = 3;
  p.has_previous = true;
  p.previous = {INT64_MAX, 0, 0, 0, 0};
  t.periods.push_back(p);
  d.trends.push_back(t);
  std::string html = RenderHtml(d);
  EXPECT_NE(html.find(">9,223,372,036,854,775,807<"), std::string::npos);
  EXPECT_NE(html.find(">-9,223,372,036,854,775,808<"), std::string::npos);
  EXPECT_EQ(html.find(">--"), std::string::npos);
  EXPECT_EQ(html.find("nan"), std::string::npos);
}

TEST(ReportHtml, BundleFileNamesStayInTheirDirectory) {
  EXPECT_EQ(BundleFileName("fd-0abf"), "finding-fd-0abf.json");
  EXPECT_EQ(BundleFileName("../../etc/x"), "finding-.._.._etc_x.json");
}

TEST(ReportHtml, ALongFindingDrawsAnEvenSampleWithinTheLaneLimit) {
  FindingEvidence fe = Sample();
  uint64_t seq = 100;
  for (int i = 0; i < 300; ++i) {
    std::string id = "m" + std::to_string(i);
    fe.items.push_back(Opened(seq++, id, kT0 + i * 60));
    if (i % 3 == 0)
      fe.items.push_back(Breached(seq++, id, kT0 + i * 60 + kHour));
    else
      fe.items.push_back(Met(seq++, id, kT0 + i * 60 + 60));
  }
  ReportData d;
  d.findings.push_back(fe);
  std::string html = RenderHtml(d);
  const std::string lane = "class=\"obligation\"",
                    breached_lane = lane + " data-outcome=\"breached\"";
  size_t drawn = 0, breached = 0;
  for (size_t at = 0; (at = html.find(lane, at)) != std::string::npos; ++at) {
    ++drawn;
    if (html.compare(at, breached_lane.size(), breached_lane) == 0) ++breached;
  }
  EXPECT_EQ(drawn, 120u);
  // 102 of the 304 are breached (a third): so are about a third of those drawn.
  EXPECT_GE(breached, 36u);
  EXPECT_LE(breached, 44u);
  EXPECT_NE(html.find("120 of 304 obligations in the evidence drawn (evenly spaced in time"),
            std::string::npos);
}

}  // namespace
}  // namespace carewatch::report
