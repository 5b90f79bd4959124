#include "engine/report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

namespace carewatch::report {

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string ChangeText(int64_t now, int64_t before) {
  if (before == 0) return now == 0 ? "" : "new";
  if (now == before) return "0%";
  // In doubles: the difference of two counts may not fit an int64_t.
  double pct = 100.0 * (static_cast<double>(now) - static_cast<double>(before)) /
               static_cast<double>(before);
  char buf[48];
  // Past a trillion percent, in powers of ten rather than 300 digits.
  std::snprintf(buf, sizeof buf, std::fabs(pct) < 1e12 ? "%+.1f%%" : "%+.3g%%", pct);
  return buf;
}

std::string BundleFileName(const std::string& finding_id) {
  std::string name = "finding-";
  for (char c : finding_id.substr(0, 200)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    name += ok ? c : '_';
  }
  return name + ".json";
}

Timeline BuildTimeline(const FindingEvidence& fe) {
  const v1::Finding& f = fe.finding;
  Timeline t;
  t.window_seconds = f.thresholds().window_seconds();
  t.min_breaches = f.thresholds().min_breaches();
  t.min_breach_rate = f.thresholds().min_breach_rate();
  std::map<std::string, TimelineObligation> obligations;
  std::set<std::string> own(f.obligation_ids().begin(), f.obligation_ids().end());
  int64_t first_window_end = INT64_MAX, first_window_start = INT64_MAX, last_window_end = 0;
  int64_t latest = 0;
  for (const ledger::EvidenceItem& item : fe.items) {
    const v1::LedgerEvent& e = item.parsed;
    latest = std::max(latest, e.time().seconds());
    switch (e.type()) {
      case v1::OBLIGATION_OPENED: {
        const auto& o = e.obligation_opened();
        if (o.service_id() != f.service_id() || o.obligation().duty_id() != f.duty_id()) break;
        TimelineObligation& x = obligations[o.obligation().obligation_id()];
        x.obligation_id = o.obligation().obligation_id();
        x.report_id = o.report_id();
        x.received = o.received_at().seconds();
        x.deadline = o.obligation().deadline().seconds();
        if (x.outcome.empty()) x.outcome = "open";
        x.in_finding = own.count(x.obligation_id) > 0;
        break;
      }
      case v1::ACTION_RECORDED:
        for (const std::string& id : e.action_recorded().obligation_ids()) {
          auto it = obligations.find(id);
          if (it == obligations.end()) continue;
          it->second.actions.emplace_back(e.action_recorded().taken_at().seconds(),
                                          e.action_recorded().action());
        }
        break;
      case v1::OBLIGATION_MET:
      case v1::OBLIGATION_DISCHARGED: {
        auto it = obligations.find(e.obligation_closed().obligation_id());
        if (it == obligations.end()) break;
        it->second.outcome = e.type() == v1::OBLIGATION_MET ? "met" : "discharged";
        it->second.decided_at = e.obligation_closed().at().seconds();
        break;
      }
      case v1::DUTY_BREACHED: {
        auto it = obligations.find(e.breach().obligation_id());
        if (it == obligations.end()) break;
        it->second.outcome = "breached";
        it->second.breach_kind = e.breach().kind();
        it->second.breach_at = e.breach().at().seconds();
        it->second.decided_at = e.breach().at().seconds();
        break;
      }
      case v1::FINDING_OPENED:
      case v1::FINDING_UPDATED:
        if (e.finding().has_window_end()) {
          first_window_end = std::min(first_window_end, e.finding().window_end().seconds());
          first_window_start = std::min(first_window_start, e.finding().window_start().seconds());
          last_window_end = std::max(last_window_end, e.finding().window_end().seconds());
        }
        break;
      case v1::ACCOUNTABILITY_CHANGED: {
        rules::Accountability a = ledger::AccountabilityFromEvent(e.accountability_changed());
        if (a.service_id != f.service_id() || !a.CoversDuty(f.duty_id())) break;
        Tenure ten;
        ten.name = a.name;
        ten.role = a.role;
        ten.scope = a.duty_pattern;
        ten.from = a.from;
        ten.to = a.to.value_or(INT64_MAX);
        t.tenures.push_back(std::move(ten));
        break;
      }
      case v1::RULESET_ACTIVATED:
        for (const auto& d : e.ruleset_activated().duties()) {
          if (d.id() != f.duty_id()) continue;
          t.statute = d.statute();
          t.summary = d.summary();
        }
        break;
      default:
        break;
    }
  }
  for (auto& [id, o] : obligations) {
    std::sort(o.actions.begin(), o.actions.end());
    t.obligations.push_back(std::move(o));
  }
  std::sort(t.obligations.begin(), t.obligations.end(),
            [](const TimelineObligation& a, const TimelineObligation& b) {
              return std::tie(a.deadline, a.obligation_id) < std::tie(b.deadline, b.obligation_id);
            });
  std::sort(t.tenures.begin(), t.tenures.end(),
            [](const Tenure& a, const Tenure& b) { return a.from < b.from; });

  // The rolling rate, at every deadline from the first window's end to the
  // last one's: there the evidence holds every obligation of the window.
  if (t.window_seconds > 0 && first_window_end != INT64_MAX) {
    std::vector<std::pair<int64_t, bool>> due;  // deadline, breached (decided ones)
    for (const auto& o : t.obligations) {
      if (o.outcome == "open") continue;
      due.emplace_back(o.deadline, o.outcome == "breached");
    }
    std::vector<int64_t> points = {first_window_end};
    for (const auto& [d, b] : due)
      if (d > first_window_end && d <= last_window_end) points.push_back(d);
    if (last_window_end > first_window_end) points.push_back(last_window_end);
    std::sort(points.begin(), points.end());
    points.erase(std::unique(points.begin(), points.end()), points.end());
    for (int64_t at : points) {
      RatePoint p;
      p.at = at;
      for (const auto& [d, b] : due) {
        if (d <= at - t.window_seconds || d > at) continue;
        ++p.due;
        if (b) ++p.breached;
      }
      p.rate = p.due ? static_cast<double>(p.breached) / p.due : 0.0;
      t.rate.push_back(p);
    }
  }

  // The span: from the first obligation's receipt (or the first window's
  // end, where the rate starts) to the last thing that happened.
  int64_t start = first_window_end;
  int64_t end = std::max(last_window_end == 0 ? INT64_MIN : last_window_end, latest);
  for (const auto& o : t.obligations) {
    start = std::min(start, o.received);
    end = std::max(end, o.deadline);
  }
  if (f.has_closed_at()) end = std::max(end, f.closed_at().seconds());
  if (start == INT64_MAX) start = f.opened_at().seconds();
  if (end <= start) end = start + 3600;
  // A margin either side, so the first and last marks are not on the edge.
  const int64_t margin = std::max<int64_t>(60, (end - start) / 50);
  start -= margin;
  end += margin;
  t.start = start;
  t.end = end;
  return t;
}

}  // namespace carewatch::report
