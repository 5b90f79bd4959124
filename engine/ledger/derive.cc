#include "engine/ledger/derive.h"

#include <algorithm>

#include "engine/ledger/audit.h"
#include "engine/rules/duration.h"

namespace carewatch::ledger {

int64_t RecordGraceOf(const v1::LedgerEvent& opened) {
  return opened.format() >= kTwoClockFormat ? opened.obligation_opened().record_grace_seconds() : 0;
}

int64_t SweepAt(const v1::LedgerEvent& opened) {
  const int64_t grace = RecordGraceOf(opened);
  const int64_t deadline = opened.obligation_opened().obligation().deadline().seconds();
  const int64_t recorded =
      opened.format() >= kTwoClockFormat ? opened.recorded_at().seconds() : deadline;
  const int64_t from = grace > 0 ? std::max(deadline, recorded) : deadline;
  return from > INT64_MAX - grace ? INT64_MAX : from + grace;
}

namespace {
std::string UtcDay(int64_t t) { return rules::FormatDate(t); }
}  // namespace

Status Derive(const std::vector<const v1::LedgerEvent*>& events, const FindingReader& read,
              DerivedBatch* out) {
  // Findings this batch changed, as they stand after each of its events.
  std::map<std::string, v1::Finding> current;
  auto& counters = out->counter_deltas;
  for (const v1::LedgerEvent* ep : events) {
    const v1::LedgerEvent& e = *ep;
    const uint64_t seq = e.seq();
    if (e.has_recorded_at() && e.type() != v1::STATS_ROLLUP && e.type() != v1::AUDIT_ACCESS)
      out->clock = std::max(out->clock, e.recorded_at().seconds());
    switch (e.payload_case()) {
      case v1::LedgerEvent::kReportFlagged: {
        const v1::ReportFlagged& r = e.report_flagged();
        for (const auto& ob : r.verdict().obligations())
          out->obligation_events.emplace_back(ob.obligation_id(), seq);
        out->flagged.push_back({r.service_id(), r.report_id(), r.report_digest(),
                                r.ruleset_version(), seq, e.recorded_at().seconds()});
        ++counters["reports"];
        ++counters["flagged"];
        break;
      }
      case v1::LedgerEvent::kObligationOpened: {
        const auto& o = e.obligation_opened();
        ObligationRow row;
        row.obligation_id = o.obligation().obligation_id();
        row.service_id = o.service_id();
        row.report_id = o.report_id();
        row.duty_id = o.obligation().duty_id();
        row.rule_id = o.obligation().rule_id();
        row.deadline = o.obligation().deadline().seconds();
        row.received_at = o.received_at().seconds();
        row.record_grace = RecordGraceOf(e);
        row.sweep_at = SweepAt(e);
        row.opened_seq = seq;
        v1::Obligation body = o.obligation();
        body.set_status(v1::OBLIGATION_STATUS_OPEN);
        row.body = body.SerializeAsString();
        out->opened.push_back(std::move(row));
        out->obligation_events.emplace_back(o.obligation().obligation_id(), seq);
        ++counters["open"];
        break;
      }
      case v1::LedgerEvent::kActionRecorded: {
        const v1::ActionRecorded& a = e.action_recorded();
        for (const std::string& id : a.obligation_ids()) {
          out->actions.push_back({id, {a.action(), a.taken_at().seconds()}});
          out->obligation_events.emplace_back(id, seq);
        }
        // A linkage alert's review, however it was recorded.
        if (a.action() == kReviewAction && a.report_id().rfind(kLinkageReportPrefix, 0) == 0) {
          DerivedBatch::AlertChange u;
          u.alert_id = a.report_id().substr(std::string(kLinkageReportPrefix).size());
          u.reviewed_at = std::max<int64_t>(a.taken_at().seconds(), 1);
          out->alert_changes.push_back(std::move(u));
        }
        break;
      }
      case v1::LedgerEvent::kLinkageAlert: {
        DerivedBatch::AlertChange a;
        a.alert_id = e.linkage_alert().alert_id();
        a.delivered = true;
        a.alert = e.linkage_alert();
        a.seq = seq;
        a.delivered_at = e.recorded_at().seconds();
        out->alert_changes.push_back(std::move(a));
        break;
      }
      case v1::LedgerEvent::kLinkageFeedback: {
        DerivedBatch::AlertChange u;
        u.alert_id = e.linkage_feedback().alert_id();
        u.seq = seq;
        u.feedback = e.linkage_feedback().opinion();
        out->alert_changes.push_back(std::move(u));
        break;
      }
      case v1::LedgerEvent::kLinkageWithdrawn: {
        DerivedBatch::AlertChange u;
        u.alert_id = e.linkage_withdrawn().alert_id();
        u.seq = seq;
        u.status = "withdrawn";
        out->alert_changes.push_back(std::move(u));
        break;
      }
      case v1::LedgerEvent::kSignalEvaluation: {
        const v1::SignalEvaluation& q = e.signal_evaluation();
        out->signal_quota.emplace_back(q.service_id(), UtcDay(e.recorded_at().seconds()),
                                       q.elements());
        break;
      }
      case v1::LedgerEvent::kObligationClosed:
      case v1::LedgerEvent::kBreach: {
        DerivedBatch::Decision d;
        d.seq = seq;
        if (e.has_breach()) {
          const v1::Breach& b = e.breach();
          d.obligation_id = b.obligation_id();
          d.status = v1::OBLIGATION_STATUS_BREACHED;
          d.breach_at = b.at().seconds();
          d.breach_kind = b.kind();
          out->breaches.emplace_back(seq, b);
          ++counters["breached"];
          if (b.report_id().rfind(kLinkageReportPrefix, 0) == 0) {
            DerivedBatch::AlertChange u;
            u.alert_id = b.report_id().substr(std::string(kLinkageReportPrefix).size());
            u.breached = true;
            out->alert_changes.push_back(std::move(u));
          }
        } else {
          d.obligation_id = e.obligation_closed().obligation_id();
          d.status = e.type() == v1::OBLIGATION_MET ? v1::OBLIGATION_STATUS_MET
                                                    : v1::OBLIGATION_STATUS_DISCHARGED;
          ++counters[e.type() == v1::OBLIGATION_MET ? "met" : "discharged"];
        }
        --counters["open"];
        ++counters[kWindowHoursCounter];
        out->obligation_events.emplace_back(d.obligation_id, seq);
        out->decided.push_back(std::move(d));
        break;
      }
      case v1::LedgerEvent::kRulesetActivated:
      case v1::LedgerEvent::kAccountabilityChanged:
      case v1::LedgerEvent::kKeyRotated:
        out->key_events.emplace_back(e.type(), seq);
        break;
      case v1::LedgerEvent::kStatsRollup:
        for (const v1::StatsCount& c : e.stats_rollup().counts()) {
          out->rolled_up.emplace_back(c.service_id(), c.day(), c.surface(), c.reason(), c.reports(),
                                      c.flagged());
        }
        break;
      case v1::LedgerEvent::kFinding: {
        const v1::Finding& delta = e.finding();
        const std::string& id = delta.finding_id();
        auto it = current.find(id);
        if (it == current.end()) {
          v1::Finding row;
          bool found = false;
          Status s = read(id, &row, &found);
          if (!s.ok()) return s;
          it = current.emplace(id, found ? row : v1::Finding()).first;
        }
        const bool was_open = !it->second.finding_id().empty() && it->second.status() == "open";
        ApplyFindingEvent(e.type(), delta, &it->second);
        it->second.clear_obligation_ids();
        for (auto& person : *it->second.mutable_accountable()) person.clear_obligation_ids();
        const bool is_open = it->second.status() == "open";
        counters["findings_open"] += (is_open ? 1 : 0) - (was_open ? 1 : 0);
        // The id lists grow: they are rows appended per delta, so an update
        // costs what it adds, not the finding's size.
        for (const std::string& ob : delta.obligation_ids()) {
          out->finding_members.push_back({id, ob, "", ""});
          out->in_finding.emplace_back(ob, id);
        }
        for (const auto& person : delta.accountable()) {
          for (const std::string& ob : person.obligation_ids())
            out->finding_members.push_back({id, ob, person.name(), person.role()});
        }
        out->findings.push_back({it->second, seq});
        out->finding_events.emplace_back(id, seq);
        break;
      }
      default:
        break;
    }
  }
  return Status::Ok();
}

}  // namespace carewatch::ledger
