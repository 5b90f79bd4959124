#include "engine/ledger/audit.h"

#include <algorithm>
#include <array>
#include <set>
#include <tuple>

#include "engine/ledger/evidence.h"
#include "engine/rules/duration.h"

namespace carewatch::ledger {

Status BuildEvidence(LedgerBackend& backend, const ProofFn& prove, const v1::Checkpoint& checkpoint,
                     const std::string& finding_id, size_t offset, size_t limit, Evidence* out) {
  const uint64_t size = checkpoint.tree_size();
  std::vector<uint64_t> own;
  Status s = backend.FindingEvents(finding_id, &own);
  if (!s.ok()) return s;
  out->finding.Clear();
  for (uint64_t seq : own) {
    if (seq > size) continue;
    std::vector<StoredEvent> rows;
    s = backend.ReadEvents(seq, 1, &rows);
    if (!s.ok()) return s;
    v1::LedgerEvent e;
    if (rows.empty() || !e.ParseFromString(rows[0].payload))
      return Status::DataLoss("event " + std::to_string(seq) + " is missing or corrupt");
    ApplyFindingEvent(e.type(), e.finding(), &out->finding);
  }
  if (out->finding.finding_id() != finding_id) {
    return Status::NotFound("no finding " + finding_id + " in the log at size " +
                            std::to_string(size));
  }
  out->checkpoint = checkpoint;
  std::vector<uint64_t> seqs;
  s = EvidenceSeqs(backend, out->finding, &seqs);
  if (!s.ok()) return s;
  seqs.erase(std::upper_bound(seqs.begin(), seqs.end(), size), seqs.end());
  out->total = seqs.size();
  out->items.clear();
  size_t end = std::min(seqs.size(), offset + limit);
  for (size_t i = offset; i < end; ++i) {
    uint64_t seq = seqs[i];
    std::vector<StoredEvent> rows;
    s = backend.ReadEvents(seq, 1, &rows);
    if (!s.ok()) return s;
    if (rows.empty() || rows[0].seq != seq)
      return Status::DataLoss("event " + std::to_string(seq) + " is missing");
    EvidenceItem item;
    item.event = rows[0];
    if (!item.parsed.ParseFromString(item.event.payload)) {
      return Status::DataLoss("event " + std::to_string(seq) + " does not parse");
    }
    s = prove(seq, size, &item.proof);
    if (!s.ok()) return s;
    out->items.push_back(std::move(item));
  }
  out->next_offset = end < seqs.size() ? end : 0;
  return Status::Ok();
}

void ApplyFindingEvent(v1::EventType type, const v1::Finding& delta, v1::Finding* full) {
  if (type == v1::FINDING_OPENED || full->finding_id().empty()) {
    *full = delta;
    return;
  }
  if (type == v1::FINDING_CLOSED) {
    full->set_status("closed");
    *full->mutable_closed_at() = delta.closed_at();
    return;
  }
  for (const std::string& id : delta.obligation_ids()) full->add_obligation_ids(id);
  full->set_breaches(delta.breaches());
  full->set_obligations(delta.obligations());
  full->set_breach_rate(delta.breach_rate());
  full->set_window_breaches(delta.window_breaches());
  full->set_breaches_missed(delta.breaches_missed());
  full->set_breaches_late(delta.breaches_late());
  full->set_breaches_late_recorded(delta.breaches_late_recorded());
  if (delta.has_thresholds()) *full->mutable_thresholds() = delta.thresholds();
  if (delta.has_window_start()) *full->mutable_window_start() = delta.window_start();
  *full->mutable_window_end() = delta.window_end();
  full->set_unattributed_breaches(full->unattributed_breaches() + delta.unattributed_breaches());
  for (const v1::AccountablePerson& d : delta.accountable()) {
    v1::AccountablePerson* p = nullptr;
    for (auto& x : *full->mutable_accountable()) {
      if (x.name() == d.name() && x.role() == d.role() &&
          x.tenure_from().seconds() == d.tenure_from().seconds())
        p = &x;
    }
    if (!p) {
      p = full->add_accountable();
      p->set_name(d.name());
      p->set_role(d.role());
      p->set_scope(d.scope());
      if (d.has_tenure_from()) *p->mutable_tenure_from() = d.tenure_from();
      if (d.has_tenure_to()) *p->mutable_tenure_to() = d.tenure_to();
    }
    p->set_breaches(p->breaches() + d.breaches());
    for (const std::string& id : d.obligation_ids()) p->add_obligation_ids(id);
  }
}

rules::Accountability AccountabilityFromEvent(const v1::AccountabilityChanged& a) {
  rules::Accountability r;
  r.service_id = a.service_id();
  r.duty_pattern = a.duty();
  r.name = a.name();
  r.role = a.role();
  r.from = a.from().seconds();
  if (a.has_to()) r.to = a.to().seconds();
  return r;
}

std::string FindingReason(const v1::Finding& f) {
  auto day = [](const google::protobuf::Timestamp& t) { return rules::FormatDate(t.seconds()); };
  // Findings recorded before window counts were kept: their breaches are the
  // window's.
  int window_breaches = f.has_thresholds() ? f.window_breaches() : f.breaches();
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.0f%%", f.breach_rate() * 100);
  std::string out = std::to_string(window_breaches) + " breaches of " +
                    std::to_string(f.obligations()) + " obligations due " + day(f.window_start()) +
                    ".." + day(f.window_end()) + " (" + rate + ")";
  if (f.has_thresholds()) {
    char min_rate[32];
    std::snprintf(min_rate, sizeof min_rate, "%g%%", f.thresholds().min_breach_rate() * 100);
    out += ", threshold >= " + std::to_string(f.thresholds().min_breaches()) +
           " and >= " + min_rate + " in " + rules::FormatDuration(f.thresholds().window_seconds());
  }
  return out;
}

std::string TenureText(const v1::AccountablePerson& p) {
  if (!p.has_tenure_from()) return "";
  std::string out = rules::FormatDate(p.tenure_from().seconds()) + "..";
  if (p.has_tenure_to()) {
    // Tenures end at the midnight after their last day: show that day.
    int64_t to = p.tenure_to().seconds();
    out += rules::FormatDate(to % 86400 == 0 ? to - 1 : to);
  } else {
    out += " (in post)";
  }
  return out;
}

std::string PeriodOf(const std::string& day, const std::string& period) {
  if (day.size() < 7) return day;
  if (period == "year") return day.substr(0, 4);
  if (period == "quarter") {
    int month = std::atoi(day.substr(5, 2).c_str());
    return day.substr(0, 4) + "-Q" + std::to_string((month - 1) / 3 + 1);
  }
  return day.substr(0, 7);
}

namespace {

// The period after `key`.
std::string NextPeriod(const std::string& key, const std::string& period) {
  int year = std::atoi(key.substr(0, 4).c_str());
  char buf[48];
  if (period == "year") {
    std::snprintf(buf, sizeof buf, "%04d", year + 1);
  } else if (period == "quarter") {
    int q = key[6] - '0';
    if (q == 4)
      std::snprintf(buf, sizeof buf, "%04d-Q1", year + 1);
    else
      std::snprintf(buf, sizeof buf, "%04d-Q%d", year, q + 1);
  } else {
    int month = std::atoi(key.substr(5, 2).c_str());
    if (month == 12)
      std::snprintf(buf, sizeof buf, "%04d-01", year + 1);
    else
      std::snprintf(buf, sizeof buf, "%04d-%02d", year, month + 1);
  }
  return buf;
}

double Change(int64_t now, int64_t before) {
  // In doubles: the difference of two counts read from a damaged ledger
  // copy may not fit an int64_t.
  return before == 0 ? 0.0
                     : 100.0 * (static_cast<double>(now) - static_cast<double>(before)) /
                           static_cast<double>(before);
}

// The percent changes of reports, flagged, obligations, breaches and
// findings, against the previous period or the year before.
using ChangeFields = std::array<double PeriodStats::*, 5>;
constexpr ChangeFields kPreviousChanges = {
    &PeriodStats::reports_change, &PeriodStats::flagged_change, &PeriodStats::obligations_change,
    &PeriodStats::breaches_change, &PeriodStats::findings_change};
constexpr ChangeFields kYearChanges = {
    &PeriodStats::reports_year_change, &PeriodStats::flagged_year_change,
    &PeriodStats::obligations_year_change, &PeriodStats::breaches_year_change,
    &PeriodStats::findings_year_change};

void SetChanges(const PeriodStats& base, const ChangeFields& fields,
                std::array<int64_t, 5> PeriodStats::*counts, PeriodStats* p) {
  const int64_t now[] = {p->reports, p->flagged, p->obligations, p->breaches, p->findings};
  p->*counts = {base.reports, base.flagged, base.obligations, base.breaches, base.findings};
  for (size_t i = 0; i < fields.size(); ++i) p->*fields[i] = Change(now[i], (p->*counts)[i]);
}

void CountsToProto(const std::array<int64_t, 5>& c, v1::PeriodCounts* o) {
  o->set_reports(c[0]);
  o->set_flagged(c[1]);
  o->set_obligations(c[2]);
  o->set_breaches(c[3]);
  o->set_findings(c[4]);
}

std::array<int64_t, 5> CountsFromProto(const v1::PeriodCounts& c) {
  return {c.reports(), c.flagged(), c.obligations(), c.breaches(), c.findings()};
}

}  // namespace

std::string FormatChange(int64_t now, int64_t before) {
  if (before == 0) return now == 0 ? "0.0%" : "new";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", Change(now, before));
  return buf;
}

void CapBreakdown(std::map<std::string, int64_t>* counts, size_t max_keys) {
  if (counts->size() <= max_keys || max_keys == 0) return;
  std::vector<std::pair<std::string, int64_t>> all(counts->begin(), counts->end());
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  int64_t others = 0;
  counts->clear();
  for (size_t i = 0; i < all.size(); ++i) {
    if (i + 1 < max_keys)
      (*counts)[all[i].first] = all[i].second;
    else
      others += all[i].second;
  }
  (*counts)["(others)"] += others;
}

void ToProto(const PeriodStats& x, v1::PeriodStats* o) {
  o->set_period(x.period);
  o->set_reports(x.reports);
  o->set_flagged(x.flagged);
  o->set_obligations(x.obligations);
  o->set_breaches(x.breaches);
  o->set_findings(x.findings);
  o->set_has_previous(x.has_previous);
  o->set_reports_change_percent(x.reports_change);
  o->set_flagged_change_percent(x.flagged_change);
  o->set_obligations_change_percent(x.obligations_change);
  o->set_breaches_change_percent(x.breaches_change);
  o->set_findings_change_percent(x.findings_change);
  o->set_has_year_ago(x.has_year_ago);
  o->set_reports_year_change_percent(x.reports_year_change);
  o->set_flagged_year_change_percent(x.flagged_year_change);
  o->set_obligations_year_change_percent(x.obligations_year_change);
  o->set_breaches_year_change_percent(x.breaches_year_change);
  o->set_findings_year_change_percent(x.findings_year_change);
  auto counts = [](const std::map<std::string, int64_t>& m,
                   google::protobuf::RepeatedPtrField<v1::CountByKey>* out) {
    for (const auto& [k, v] : m) {
      v1::CountByKey* c = out->Add();
      c->set_key(k);
      c->set_count(v);
    }
  };
  if (x.has_previous) CountsToProto(x.previous, o->mutable_previous_counts());
  if (x.has_year_ago) CountsToProto(x.year_ago, o->mutable_year_ago_counts());
  counts(x.by_reason, o->mutable_by_reason());
  counts(x.by_surface, o->mutable_by_surface());
  counts(x.breaches_by_kind, o->mutable_breaches_by_kind());
}

PeriodStats FromProto(const v1::PeriodStats& p) {
  PeriodStats x;
  x.period = p.period();
  x.reports = p.reports();
  x.flagged = p.flagged();
  x.obligations = p.obligations();
  x.breaches = p.breaches();
  x.findings = p.findings();
  x.has_previous = p.has_previous();
  x.reports_change = p.reports_change_percent();
  x.flagged_change = p.flagged_change_percent();
  x.obligations_change = p.obligations_change_percent();
  x.breaches_change = p.breaches_change_percent();
  x.findings_change = p.findings_change_percent();
  x.has_year_ago = p.has_year_ago();
  x.reports_year_change = p.reports_year_change_percent();
  x.flagged_year_change = p.flagged_year_change_percent();
  x.obligations_year_change = p.obligations_year_change_percent();
  x.breaches_year_change = p.breaches_year_change_percent();
  x.findings_year_change = p.findings_year_change_percent();
  x.previous = CountsFromProto(p.previous_counts());
  x.year_ago = CountsFromProto(p.year_ago_counts());
  for (const auto& c : p.by_reason()) x.by_reason[c.key()] = c.count();
  for (const auto& c : p.by_surface()) x.by_surface[c.key()] = c.count();
  for (const auto& c : p.breaches_by_kind()) x.breaches_by_kind[c.key()] = c.count();
  return x;
}

std::string YearBefore(const std::string& key) {
  int year = std::atoi(key.substr(0, 4).c_str());
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d", year - 1);
  return buf + key.substr(std::min<size_t>(4, key.size()));
}

Status ComputeStats(LedgerBackend& backend, const std::string& service_id,
                    const std::string& period, int64_t from, int64_t to,
                    std::vector<PeriodStats>* out, std::vector<std::string>* services) {
  if (period != "month" && period != "quarter" && period != "year") {
    return Status::InvalidArgument("period: must be month, quarter or year");
  }
  constexpr int64_t kDay = 86400;
  // Whole UTC days, from the start of the year before `from`'s: the
  // year-ago periods of the first periods listed are counted whole (and
  // not listed themselves).
  int64_t wide_from = INT64_MIN;
  std::string first_day;  // the first day listed
  if (from != INT64_MIN) {
    first_day = rules::FormatDate(from);
    int year = std::atoi(first_day.substr(0, 4).c_str());
    char buf[24];
    std::snprintf(buf, sizeof buf, "%04d-01-01", year - 1);
    wide_from = rules::ParseDateTime(buf).value_or(INT64_MIN);
  }
  const int64_t to_day_end =
      to == INT64_MAX ? INT64_MAX : (to / kDay - (to % kDay < 0 ? 1 : 0)) * kDay + kDay - 1;
  const std::string first_listed = first_day.empty() ? "" : PeriodOf(first_day, period);
  std::string from_day = wide_from == INT64_MIN ? "0000-00-00" : rules::FormatDate(wide_from);
  std::string to_day = to == INT64_MAX ? "9999-99-99" : rules::FormatDate(to);
  std::map<std::string, PeriodStats> by_period;
  std::set<std::string> seen_services;
  std::vector<StatsRow> rows;
  Status s = backend.QueryStats(service_id, from_day, to_day, &rows);
  if (!s.ok()) return s;
  for (const StatsRow& r : rows) {
    PeriodStats& p = by_period[PeriodOf(r.day, period)];
    p.reports += r.reports;
    p.flagged += r.flagged;
    p.by_reason[r.reason.empty() ? "(none)" : r.reason] += r.reports;
    p.by_surface[r.surface.empty() ? "(none)" : r.surface] += r.reports;
    if (r.day >= first_day) seen_services.insert(r.service_id);
  }
  std::vector<std::pair<std::string, int64_t>> obligation_days;
  s = backend.QueryObligationDays(service_id, wide_from, to_day_end, &obligation_days);
  if (!s.ok()) return s;
  for (const auto& [day, n] : obligation_days) by_period[PeriodOf(day, period)].obligations += n;
  BreachQuery bq;
  bq.service_id = service_id;
  bq.from = wide_from;
  bq.to = to;
  bq.limit = 10000;
  for (;;) {
    std::vector<std::pair<uint64_t, v1::Breach>> page;
    s = backend.QueryBreaches(bq, &page);
    if (!s.ok()) return s;
    for (const auto& [seq, b] : page) {
      PeriodStats& p = by_period[PeriodOf(rules::FormatDate(b.at().seconds()), period)];
      p.breaches++;
      p.breaches_by_kind[b.kind()]++;
    }
    if (page.size() < bq.limit) break;
    bq.after_seq = page.back().first;
  }
  FindingQuery fq;
  fq.service_id = service_id;
  fq.from = wide_from;
  fq.to = to;
  fq.limit = 10000;
  fq.with_obligation_ids = false;  // only counted here
  for (;;) {
    std::vector<v1::Finding> page;
    s = backend.QueryFindings(fq, &page);
    if (!s.ok()) return s;
    for (const v1::Finding& f : page) {
      by_period[PeriodOf(rules::FormatDate(f.opened_at().seconds()), period)].findings++;
    }
    if (page.size() < fq.limit) break;
    fq.after_id = page.back().finding_id();
  }
  out->clear();
  if (services) services->assign(seen_services.begin(), seen_services.end());
  if (by_period.empty()) return Status::Ok();
  // Every period from the first to the last, so each has its predecessor.
  std::string key = by_period.begin()->first;
  const std::string last = by_period.rbegin()->first;
  // Periods without data count zero; the year before is looked up among
  // the counted ones (one without reports has nothing to compare with).
  const PeriodStats none;
  const PeriodStats* previous = nullptr;
  for (int guard = 0; guard < 100000; ++guard) {
    auto it = by_period.find(key);
    const PeriodStats& counted = it == by_period.end() ? none : it->second;
    PeriodStats p = counted;
    p.period = key;
    if (previous) {
      p.has_previous = true;
      SetChanges(*previous, kPreviousChanges, &PeriodStats::previous, &p);
    }
    auto year_ago = by_period.find(YearBefore(key));
    if (year_ago != by_period.end() && year_ago->second.reports > 0) {
      p.has_year_ago = true;
      SetChanges(year_ago->second, kYearChanges, &PeriodStats::year_ago, &p);
    }
    previous = &counted;
    CapBreakdown(&p.by_reason);
    CapBreakdown(&p.by_surface);
    if (key >= first_listed) out->push_back(std::move(p));
    if (key == last) break;
    key = NextPeriod(key, period);
  }
  return Status::Ok();
}

Status LinkageStats(LedgerBackend& backend, const std::string& service_id, int64_t from, int64_t to,
                    const std::string& period, std::vector<v1::LinkageStatsRow>* out,
                    size_t max_rows) {
  AlertQuery q;
  q.service_id = service_id;
  q.delivered_from = from;
  q.delivered_to = to;
  q.limit = 10000;
  const size_t prefix = period == "day" ? 10 : 7;
  struct Acc {
    int64_t alerts = 0, reviewed = 0, withdrawn = 0, breaches = 0;
    double review_seconds = 0;
  };
  std::map<std::tuple<std::string, std::string, std::string>, Acc> acc;
  for (;;) {
    std::vector<AlertRecord> page;
    if (Status s = backend.QueryAlerts(q, &page); !s.ok()) return s;
    for (const AlertRecord& r : page) {
      q.after_seq = r.alert.cursor();
      const std::string when = rules::FormatDateTime(r.delivered_at).substr(0, prefix);
      std::vector<std::string> categories(r.alert.categories().begin(), r.alert.categories().end());
      if (categories.empty()) categories.push_back("");
      for (const std::string& c : categories) {
        auto key = std::make_tuple(when, r.alert.service_id(), c);
        if (!acc.count(key) && acc.size() >= max_rows)
          return Status::InvalidArgument("more than " + std::to_string(max_rows) +
                                         " rows: ask for a shorter range, one service or months");
        Acc& a = acc[key];
        ++a.alerts;
        if (r.reviewed_at > 0) {
          ++a.reviewed;
          a.review_seconds +=
              static_cast<double>(std::max<int64_t>(0, r.reviewed_at - r.delivered_at));
        }
        if (r.alert.status() == "withdrawn") ++a.withdrawn;
        if (r.breached) ++a.breaches;
      }
    }
    if (page.size() < q.limit) break;
  }
  for (const auto& [key, a] : acc) {
    v1::LinkageStatsRow row;
    row.set_period(std::get<0>(key));
    row.set_service_id(std::get<1>(key));
    row.set_category(std::get<2>(key));
    row.set_alerts(a.alerts);
    row.set_reviewed(a.reviewed);
    row.set_withdrawn(a.withdrawn);
    row.set_breaches(a.breaches);
    if (a.reviewed > 0) row.set_mean_review_seconds(a.review_seconds / a.reviewed);
    out->push_back(std::move(row));
  }
  return Status::Ok();
}

}  // namespace carewatch::ledger
