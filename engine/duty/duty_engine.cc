#include "engine/duty/duty_engine.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include "engine/common/digest.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/derive.h"
#include "engine/ledger/keys.h"
#include "engine/rules/duration.h"
#include "engine/rules/vocabulary.h"

namespace carewatch::duty {

namespace {

// The event format this engine writes: 2 = two clocks (recorded_at).
constexpr uint32_t kEventFormat = ledger::kTwoClockFormat;

void SetTime(google::protobuf::Timestamp* ts, int64_t seconds) { ts->set_seconds(seconds); }

std::string AccountabilityKey(const rules::Accountability& a) {
  return a.service_id + '\0' + a.duty_pattern + '\0' + a.name + '\0' + a.role + '\0' +
         std::to_string(a.from) + '\0' + (a.to ? std::to_string(*a.to) : "-");
}

int64_t WallSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Keyed digest of a report exactly as submitted: a retry carries the same
// bytes, a different report under the same id does not.
std::string ReportDigest(const std::string& key, const v1::ContentReport& report) {
  return ledger::HmacSha256Hex(key, ledger::SerializeDeterministic(report));
}

// Every finding `q` selects, a page at a time.
Status EachFinding(ledger::LedgerBackend& store, ledger::FindingQuery q,
                   const std::function<void(v1::Finding&)>& fn) {
  for (;;) {
    std::vector<v1::Finding> page;
    Status s = store.QueryFindings(q, &page);
    if (!s.ok()) return s;
    for (v1::Finding& f : page) {
      q.after_id = f.finding_id();
      fn(f);
    }
    if (page.size() < q.limit) return Status::Ok();
  }
}

// Extras that remove queue entry `id` (0: none) with the batch.
ledger::BatchExtras Dequeue(int64_t id) {
  ledger::BatchExtras x;
  if (id) x.dequeue.push_back(id);
  return x;
}

bool IsRelevantAction(const std::vector<std::string>& required, const std::string& action) {
  if (rules::IsDischargeAction(action)) return true;
  return std::find(required.begin(), required.end(), action) != required.end();
}

}  // namespace

Status CheckClaimedTime(const char* field, int64_t seconds, int64_t nanos, int64_t now,
                        int64_t max_skew) {
  if (nanos < 0 || nanos >= 1000000000) {
    return Status::InvalidArgument(std::string(field) + ".nanos: " + std::to_string(nanos) +
                                   " is outside [0, 1000000000)");
  }
  if (seconds < kMinClaimedTime) {
    return Status::InvalidArgument(
        std::string(field) + ": " +
        (seconds <= 0 ? std::string("required")
                      : rules::FormatDateTime(seconds) + " is before 2000-01-01T00:00:00Z"));
  }
  if (seconds > now && seconds - now > max_skew) {
    constexpr int64_t kYear9999End = 253402300799;
    return Status::InvalidArgument(std::string(field) + ": " +
                                   (seconds > kYear9999End ? std::to_string(seconds) + " seconds"
                                                           : rules::FormatDateTime(seconds)) +
                                   " is later than server time " + rules::FormatDateTime(now) +
                                   " + max_clock_skew " + rules::FormatDuration(max_skew));
  }
  return Status::Ok();
}

DutyEngine::DutyEngine(ledger::Ledger* ledger, DutyEngineOptions options)
    : ledger_(ledger), options_(std::move(options)) {
  if (!options_.now) options_.now = WallSeconds;
}

DutyEngine::~DutyEngine() = default;

int64_t DutyEngine::ServerNow() const { return options_.now(); }

v1::LedgerEvent DutyEngine::NewEvent(v1::EventType type, int64_t time) const {
  v1::LedgerEvent e;
  e.set_type(type);
  SetTime(e.mutable_time(), time);
  SetTime(e.mutable_recorded_at(), std::max(ServerNow(), decided_));
  e.set_format(kEventFormat);
  return e;
}

void DutyEngine::Emit(std::vector<v1::LedgerEvent>* events, v1::LedgerEvent e) {
  Apply(e);
  events->push_back(std::move(e));
}

Status DutyEngine::Commit(std::vector<v1::LedgerEvent>* events, std::unique_lock<std::mutex>& lock,
                          ledger::BatchExtras extras,
                          std::shared_ptr<ledger::Ledger::Ticket>* defer) {
  if (events->empty() && extras.stats.empty() && extras.reports.empty()) return Status::Ok();
  counts_.events += events->size();
  std::shared_ptr<ledger::Ledger::Ticket> ticket;
  if (ledger_) {
    ticket = ledger_->Enqueue(events, std::move(extras));
  } else {
    for (v1::LedgerEvent& e : *events) e.set_seq(++local_seq_);
  }
  // Decisions handed to the ledger: in the store once it holds their seq.
  for (Decided& d : decided_now_) {
    d.seq = events->empty() ? 0 : events->back().seq();
    undurable_.push_back(std::move(d));
  }
  decided_now_.clear();
  // Reports whose work this command finished are forgotten once durable.
  if (ledger_ && !events->empty()) {
    for (Key& k : to_retire_) retire_.emplace_back(events->back().seq(), std::move(k));
  }
  to_retire_.clear();
  // The verdict of a flagged report names the seq of its REPORT_FLAGGED.
  for (const v1::LedgerEvent& e : *events) {
    if (e.type() == v1::REPORT_FLAGGED) {
      auto it = reports_.find({e.report_flagged().service_id(), e.report_flagged().report_id()});
      if (it != reports_.end()) it->second.ledger_seq = e.seq();
    }
  }
  lock.unlock();
  if (ticket && options_.wait_durable && defer) {
    *defer = std::move(ticket);
    return Status::Ok();
  }
  // A failed write leaves the ledger unhealthy until restart, and every
  // command checks health() first: state applied for events that were never
  // written is never answered from.
  return ticket && options_.wait_durable ? ticket->Wait() : Status::Ok();
}

void DutyEngine::Apply(const v1::LedgerEvent& e) {
  // The engine's clock is the server time of what the engine recorded
  // (events the ledger or the audit service write keep their own).
  if (e.has_recorded_at() && e.type() != v1::STATS_ROLLUP && e.type() != v1::AUDIT_ACCESS)
    decided_ = std::max(decided_, e.recorded_at().seconds());
  switch (e.type()) {
    case v1::RULESET_ACTIVATED:
      active_version_ = e.ruleset_activated().version();
      break;
    case v1::ACCOUNTABILITY_CHANGED: {
      rules::Accountability r = ledger::AccountabilityFromEvent(e.accountability_changed());
      if (accountability_keys_.insert(AccountabilityKey(r)).second) accountability_.push_back(r);
      break;
    }
    case v1::REPORT_FLAGGED: {
      const auto& r = e.report_flagged();
      ReportState& state = reports_[{r.service_id(), r.report_id()}];
      state.SetVerdict(r.verdict());
      state.ledger_seq = e.seq();
      state.received_at = r.received_at().seconds();
      state.digest = r.report_digest();
      state.open = 0;
      if (r.verdict().obligations_size() == 0)
        to_retire_.push_back({r.service_id(), r.report_id()});
      ++counts_.flagged;
      ++counts_.reports;
      break;
    }
    case v1::OBLIGATION_OPENED: {
      const auto& o = e.obligation_opened();
      TrackedObligation& ob = obligations_[o.obligation().obligation_id()];
      Track(o.obligation(), &ob);
      ob.service_id = o.service_id();
      ob.report_id = o.report_id();
      ob.received_at = o.received_at().seconds();
      ob.record_grace = ledger::RecordGraceOf(e);
      ob.sweep_at = ledger::SweepAt(e);
      sweep_due_.emplace(ob.sweep_at, ob.id);
      auto report = reports_.find({ob.service_id, ob.report_id});
      if (report != reports_.end()) ++report->second.open;
      ++counts_.open;
      break;
    }
    case v1::ACTION_RECORDED: {
      const auto& a = e.action_recorded();
      for (const std::string& id : a.obligation_ids()) {
        auto it = obligations_.find(id);
        if (it != obligations_.end())
          it->second.actions.push_back({a.action(), a.taken_at().seconds()});
      }
      break;
    }
    case v1::OBLIGATION_MET:
    case v1::OBLIGATION_DISCHARGED:
    case v1::DUTY_BREACHED: {
      std::string id = e.type() == v1::DUTY_BREACHED ? e.breach().obligation_id()
                                                     : e.obligation_closed().obligation_id();
      auto it = obligations_.find(id);
      if (it == obligations_.end()) break;  // decided once: only open ones are held
      TrackedObligation& ob = it->second;
      --counts_.open;
      int64_t deadline = ob.deadline;
      auto range = sweep_due_.equal_range(ob.sweep_at);
      for (auto d = range.first; d != range.second; ++d) {
        if (d->second == id) {
          sweep_due_.erase(d);
          break;
        }
      }
      v1::ObligationStatus status = e.type() == v1::OBLIGATION_MET ? v1::OBLIGATION_STATUS_MET
                                    : e.type() == v1::OBLIGATION_DISCHARGED
                                        ? v1::OBLIGATION_STATUS_DISCHARGED
                                        : v1::OBLIGATION_STATUS_BREACHED;
      // Every decided obligation has come due at its deadline: the window's
      // denominator counts it once its deadline is inside the window.
      const Key window{ob.service_id, ob.duty_id()};
      Window& w = windows_[window];
      AddDue(window, w, deadline, id);
      if (status == v1::OBLIGATION_STATUS_MET) ++counts_.met;
      if (status == v1::OBLIGATION_STATUS_DISCHARGED) ++counts_.discharged;
      if (status == v1::OBLIGATION_STATUS_BREACHED) {
        ++counts_.breached;
        WindowBreach entry{deadline, id, e.breach().kind(), e.breach().at().seconds(), ""};
        auto at = std::upper_bound(w.breached.begin(), w.breached.end(), entry, WindowBreach::Less);
        w.breached.insert(at, std::move(entry));
        if (options_.keep_history) breaches_.push_back(e.breach());
      }
      auto report = reports_.find({ob.service_id, ob.report_id});
      if (report != reports_.end()) {
        v1::Verdict v = report->second.Verdict();
        for (v1::Obligation& o : *v.mutable_obligations()) {
          if (o.obligation_id() == id) o.set_status(status);
        }
        report->second.SetVerdict(v);
        if (--report->second.open == 0) to_retire_.push_back(report->first);
      }
      obligations_.erase(it);
      break;
    }
    case v1::FINDING_OPENED:
    case v1::FINDING_UPDATED:
    case v1::FINDING_CLOSED: {
      const v1::Finding& delta = e.finding();
      Window& w = windows_[{delta.service_id(), delta.duty_id()}];
      if (delta.obligation_ids_size() > 0) {
        std::set<std::string> ids(delta.obligation_ids().begin(), delta.obligation_ids().end());
        for (WindowBreach& b : w.breached) {
          if (ids.count(b.obligation_id)) b.finding_id = delta.finding_id();
        }
      }
      if (options_.keep_history) {
        ledger::ApplyFindingEvent(e.type(), delta, &findings_[delta.finding_id()]);
      }
      if (e.type() == v1::FINDING_CLOSED) {
        if (w.open) --counts_.findings_open;
        w.open.reset();
        break;
      }
      if (e.type() == v1::FINDING_OPENED) {
        if (!w.open) ++counts_.findings_open;
        w.open = v1::Finding();
      }
      if (!w.open) break;  // an update of a finding not open here: old ledgers only
      ledger::ApplyFindingEvent(e.type(), delta, &*w.open);
      w.open->clear_obligation_ids();
      for (auto& p : *w.open->mutable_accountable()) p.clear_obligation_ids();
      break;
    }
    default:
      break;
  }
}

void DutyEngine::Track(const v1::Obligation& o, TrackedObligation* ob) {
  ob->id = o.obligation_id();
  ob->deadline = o.deadline().seconds();
  ob->deadline_nanos = o.deadline().nanos();
  // Length-prefixed: no two different terms share a key.
  std::string key;
  auto add = [&key](const std::string& part) {
    key += std::to_string(part.size());
    key += ':';
    key += part;
  };
  add(o.rule_id());
  add(o.duty_id());
  for (const std::string& a : o.required_actions()) add(a);
  auto& terms = terms_[key];
  if (!terms) {
    auto t = std::make_shared<ObligationTerms>();
    t->rule_id = o.rule_id();
    t->duty_id = o.duty_id();
    t->required_actions.assign(o.required_actions().begin(), o.required_actions().end());
    terms = std::move(t);
  }
  ob->terms = terms;
}

DutyEngine::Window& DutyEngine::WindowAdder::Of(std::string_view service_id,
                                                std::string_view duty_id) {
  for (auto& [service, duty, window] : seen_) {
    if (service == service_id && duty == duty_id) return *window;
  }
  std::string service(service_id), duty(duty_id);
  Window* w = &engine_->windows_[{service, duty}];
  seen_.emplace_back(std::move(service), std::move(duty), w);
  return *w;
}

void DutyEngine::Window::CountHour(int64_t hour, int64_t n) {
  // Nearly always the last hour, or a new one after it.
  if (hours.empty() || hours.back().hour < hour) {
    hours.push_back({hour, n});
    return;
  }
  if (hours.back().hour == hour) {
    hours.back().count += n;
    return;
  }
  auto at = std::lower_bound(hours.begin(), hours.end(), hour,
                             [](const HourCount& h, int64_t x) { return h.hour < x; });
  if (at != hours.end() && at->hour == hour)
    at->count += n;
  else
    hours.insert(at, {hour, n});
}

std::deque<DutyEngine::Window::HourCount>::const_iterator DutyEngine::Window::HoursAfter(
    int64_t hour) const {
  return std::upper_bound(hours.begin(), hours.end(), hour,
                          [](int64_t x, const HourCount& h) { return x < h.hour; });
}

void DutyEngine::AddDue(const Key& window, Window& w, int64_t deadline,
                        const std::string& obligation_id) {
  const int64_t hour = HourOf(deadline);
  w.CountHour(hour);
  auto insert = [deadline](std::deque<int64_t>& q) {
    q.insert(std::upper_bound(q.begin(), q.end(), deadline), deadline);
  };
  if (hour >= w.recent_from) {
    insert(w.recent);
  } else if (hour == w.edge_hour) {
    insert(w.edge);
  }
  // Until the ledger holds it, a read of the store may not see it (DueIn).
  if (ledger_) decided_now_.push_back({window, obligation_id, deadline, 0});
}

void DutyEngine::TrimRecent(Window& w, int64_t t) const {
  if (!ledger_ || t == INT64_MIN) return;
  const int64_t from = HourOf(t) - 1;
  if (from <= w.recent_from) return;
  while (!w.recent.empty() && HourOf(w.recent.front()) < from) w.recent.pop_front();
  w.recent_from = from;
}

bool DutyEngine::DueIn(const Key& window, Window& w, int64_t start, int64_t t, int64_t* due) {
  auto up_to = [](const std::deque<int64_t>& q, int64_t x) {
    return static_cast<int64_t>(std::upper_bound(q.begin(), q.end(), x) - q.begin());
  };
  const int64_t first = HourOf(start);
  if (first >= w.recent_from) {  // every deadline after start is held
    *due = up_to(w.recent, t) - up_to(w.recent, start);
    return true;
  }
  constexpr int64_t kHour = ledger::LedgerBackend::kWindowHour;
  if (w.edge_hour != first) {
    // The window's start entered an hour memory holds as a count: its
    // deadlines are read from the store, with the decisions it may not
    // hold yet (this command's, and those the ledger has not yet written),
    // each once: by obligation id. No wait for the ledger, so a store that
    // is slow or away holds up no other command.
    if (!ledger_) return false;
    std::vector<std::pair<int64_t, std::string>> stored;
    if (!ledger_->backend()
             .ReadWindowDeadlines(window.first, window.second, first * kHour, (first + 1) * kHour,
                                  &stored)
             .ok()) {
      return false;
    }
    std::vector<int64_t> deadlines;
    std::set<std::string_view> ids;
    for (const auto& [deadline, id] : stored) {
      deadlines.push_back(deadline);
      ids.insert(id);
    }
    auto add = [&](const Decided& d) {
      if (d.window == window && HourOf(d.deadline) == first && !ids.count(d.obligation_id))
        deadlines.push_back(d.deadline);
    };
    for (const Decided& d : undurable_) add(d);
    for (const Decided& d : decided_now_) add(d);
    std::sort(deadlines.begin(), deadlines.end());
    w.edge.assign(deadlines.begin(), deadlines.end());
    w.edge_hour = first;
  }
  // The start's hour (all of it before t: recent_from is the hour before
  // t's), the whole hours after it, then what memory holds one by one.
  int64_t n = static_cast<int64_t>(w.edge.size()) - up_to(w.edge, start);
  for (auto it = w.HoursAfter(first); it != w.hours.end() && it->hour < w.recent_from; ++it)
    n += it->count;
  *due = n + up_to(w.recent, t);
  return true;
}

Status DutyEngine::LoadWindows(int64_t horizon, int64_t now,
                               const std::function<bool(std::string_view duty)>& want) {
  constexpr int64_t kHour = ledger::LedgerBackend::kWindowHour;
  // Deadlines from the hour before `now` on are held one by one.
  const int64_t from = now == INT64_MIN || now < INT64_MIN / 2 ? INT64_MIN : HourOf(now) - 1;
  const int64_t held_from = from == INT64_MIN ? INT64_MIN : from * kHour;
  ledger::LedgerBackend& store = ledger_->backend();
  WindowAdder adder(this);
  window_rows_loaded_ = 0;
  // The counts by hour, a row an hour (window_hours, written with the
  // decisions): a restart reads the hours within retention, not every
  // obligation decided in them.
  Status s =
      store.EachWindowHour(horizon == INT64_MIN ? INT64_MIN : HourOf(horizon),
                           [&](const ledger::LedgerBackend::WindowHourRow& row) {
                             if (!want(row.duty_id)) return;
                             ++window_rows_loaded_;
                             Window& w = adder.Of(row.service_id, row.duty_id);
                             w.recent_from = from;
                             w.CountHour(row.hour, row.decided);  // rows come by hour: at the end
                           });
  if (!s.ok()) return s;
  // Then, by deadline, the deadlines held one by one and every breach.
  return store.EachWindowRow(horizon, held_from, [&](const ledger::LedgerBackend::WindowRow& row) {
    if (!want(row.duty_id)) return;
    ++window_rows_loaded_;
    Window& w = adder.Of(row.service_id, row.duty_id);
    w.recent_from = from;
    if (row.deadline >= held_from) w.recent.push_back(row.deadline);
    if (row.breached) {
      w.breached.push_back({row.deadline, std::string(row.obligation_id),
                            std::string(row.breach_kind), row.breach_at,
                            std::string(row.finding_id)});
    }
  });
}

void DutyEngine::SortWindows() {
  for (auto& [key, w] : windows_)
    std::sort(w.breached.begin(), w.breached.end(), WindowBreach::Less);
}

Status DutyEngine::Recover() {
  if (!ledger_) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  ledger::LedgerBackend& store = ledger_->backend();
  auto read_event = [&](uint64_t seq, v1::LedgerEvent* e) -> Status {
    std::vector<ledger::StoredEvent> rows;
    Status s = store.ReadEvents(seq, 1, &rows);
    if (!s.ok()) return s;
    if (rows.empty() || rows[0].seq != seq || !e->ParseFromString(rows[0].payload)) {
      return Status::DataLoss("ledger event " + std::to_string(seq) +
                              " is missing or corrupt; run `carewatch verify`");
    }
    return Status::Ok();
  };
  // Counters and the server clock.
  std::map<std::string, int64_t> counters;
  int64_t clock = INT64_MIN;
  Status s = store.ReadCounters(&counters, &clock);
  if (!s.ok()) return s;
  auto count = [&](const char* name) {
    return static_cast<uint64_t>(std::max<int64_t>(0, counters[name]));
  };
  counts_.reports = count("reports");
  counts_.flagged = count("flagged");
  counts_.met = count("met");
  counts_.discharged = count("discharged");
  counts_.breached = count("breached");
  counts_.events = ledger_->size();
  decided_ = clock;
  // The rule set and the accountability records in force.
  for (int type : {v1::RULESET_ACTIVATED, v1::ACCOUNTABILITY_CHANGED}) {
    std::vector<uint64_t> seqs;
    s = store.EventsOfType(type, UINT64_MAX >> 1, &seqs);
    if (!s.ok()) return s;
    if (type == v1::RULESET_ACTIVATED && seqs.size() > 1) seqs.erase(seqs.begin(), seqs.end() - 1);
    for (uint64_t seq : seqs) {
      v1::LedgerEvent e;
      s = read_event(seq, &e);
      if (!s.ok()) return s;
      Apply(e);
    }
  }
  // Open obligations, one row at a time, then their actions.
  s = store.EachOpenObligation(
      [&](ledger::ObligationRow& row) {
        v1::Obligation body;
        if (!body.ParseFromString(row.body)) {
          return Status::DataLoss("the stored obligation " + row.obligation_id +
                                  " does not parse; run `carewatch verify`");
        }
        TrackedObligation& ob = obligations_[row.obligation_id];
        Track(body, &ob);
        ob.service_id = std::move(row.service_id);
        ob.report_id = std::move(row.report_id);
        ob.received_at = row.received_at;
        ob.record_grace = row.record_grace;
        ob.sweep_at = row.sweep_at;
        ob.actions.clear();
        // The rows come by sweep time: each goes at the end.
        sweep_due_.emplace_hint(sweep_due_.end(), ob.sweep_at, ob.id);
        return Status::Ok();
      },
      [&](std::string_view id, ledger::ObligationActionRow&& a) {
        auto it = obligations_.find(std::string(id));
        if (it != obligations_.end())
          it->second.actions.push_back({std::move(a.action), a.taken_at});
      });
  if (!s.ok()) return s;
  // Their reports are not read here: a command that needs one (an action,
  // a retry) reads it from the store then (LoadReport), so a restart costs
  // one row per open obligation, not a report's event and index row too.
  counts_.open = obligations_.size();
  // The systemic windows: what came due within retention.
  const int64_t horizon = decided_ > INT64_MIN + options_.retention_seconds
                              ? decided_ - options_.retention_seconds
                              : INT64_MIN;
  s = LoadWindows(horizon, decided_, [](std::string_view) { return true; });
  if (!s.ok()) return s;
  SortWindows();
  default_covered_ = options_.retention_seconds;
  // Open findings.
  ledger::FindingQuery q;
  q.status = "open";
  q.with_obligation_ids = false;
  q.limit = 1000;
  s = EachFinding(store, q, [&](v1::Finding& f) {
    windows_[{f.service_id(), f.duty_id()}].open = std::move(f);
  });
  if (!s.ok()) return s;
  counts_.findings_open = 0;
  for (const auto& [key, w] : windows_) counts_.findings_open += w.open ? 1 : 0;
  if (options_.keep_history) {
    // Batch jobs that report every breach and finding read the history too.
    ledger::BreachQuery bq;
    bq.limit = 10000;
    for (;;) {
      std::vector<std::pair<uint64_t, v1::Breach>> page;
      s = store.QueryBreaches(bq, &page);
      if (!s.ok()) return s;
      for (auto& [seq, b] : page) {
        bq.after_seq = seq;
        breaches_.push_back(std::move(b));
      }
      if (page.size() < bq.limit) break;
    }
    ledger::FindingQuery fq;
    fq.limit = 1000;
    s = EachFinding(store, fq, [&](v1::Finding& f) { findings_[f.finding_id()] = std::move(f); });
    if (!s.ok()) return s;
  }
  clock_ = decided_;
  return Status::Ok();
}

v1::Verdict DutyEngine::ReportState::Verdict() const {
  v1::Verdict v;
  // Bytes this process serialised itself: they parse.
  (void)v.ParseFromString(verdict);
  v.set_ledger_seq(ledger_seq);
  return v;
}

void DutyEngine::ReportState::SetVerdict(const v1::Verdict& v) {
  verdict.clear();
  (void)v.SerializeToString(&verdict);
  ledger_seq = v.ledger_seq();
}

Status DutyEngine::LoadReport(const Key& key, ReportState* out, bool* found) const {
  *found = false;
  if (!ledger_) return Status::Ok();
  ledger::LedgerBackend& store = ledger_->backend();
  ledger::ReportIndexRow row;
  bool indexed = false;
  Status s = store.LookupReport(key.first, key.second, &row, &indexed);
  if (!s.ok() || !indexed || row.seq == 0) return s;
  std::vector<ledger::StoredEvent> rows;
  s = store.ReadEvents(row.seq, 1, &rows);
  if (!s.ok()) return s;
  v1::LedgerEvent e;
  if (rows.empty() || !e.ParseFromString(rows[0].payload) || !e.has_report_flagged()) {
    return Status::DataLoss("report " + key.second + ": its REPORT_FLAGGED event " +
                            std::to_string(row.seq) +
                            " is missing or corrupt; run `carewatch verify`");
  }
  v1::ReportFlagged* r = e.mutable_report_flagged();
  v1::Verdict& verdict = *r->mutable_verdict();
  out->received_at = r->received_at().seconds();
  out->digest = r->report_digest();
  out->open = 0;
  for (v1::Obligation& o : *verdict.mutable_obligations()) {
    if (obligations_.count(o.obligation_id())) {
      o.set_status(v1::OBLIGATION_STATUS_OPEN);
      ++out->open;
      continue;
    }
    ledger::ObligationRow ob;
    bool have = false;
    s = store.ReadObligation(o.obligation_id(), &ob, &have);
    if (!s.ok()) return s;
    if (have) o.set_status(static_cast<v1::ObligationStatus>(ob.status));
  }
  out->SetVerdict(verdict);
  out->ledger_seq = row.seq;
  *found = true;
  return Status::Ok();
}

void DutyEngine::RetireDurable() {
  if (!ledger_) return;
  const uint64_t durable = ledger_->size();
  while (!undurable_.empty() && undurable_.front().seq <= durable) undurable_.pop_front();
  while (!retire_.empty() && retire_.front().first <= durable) {
    auto it = reports_.find(retire_.front().second);
    if (it != reports_.end() && it->second.open == 0) reports_.erase(it);
    retire_.pop_front();
  }
}

size_t DutyEngine::reports_in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reports_.size();
}

size_t DutyEngine::obligations_in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return obligations_.size();
}

size_t DutyEngine::window_deadlines_in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [key, w] : windows_) n += w.recent.size() + w.edge.size() + w.breached.size();
  return n;
}

uint64_t DutyEngine::window_rows_loaded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return window_rows_loaded_;
}

std::shared_ptr<const eval::Evaluator> DutyEngine::evaluator() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evaluator_;
}

Status DutyEngine::Activate(std::shared_ptr<const eval::Evaluator> evaluator) {
  std::unique_lock<std::mutex> lock(mu_);
  if (ledger_) {
    Status h = ledger_->health();
    if (!h.ok()) return h;
  }
  int64_t now = std::max(ServerNow(), decided_);
  const rules::RuleSet& rs = evaluator->ruleset();
  for (const rules::Duty& d : rs.duties()) {
    if (d.systemic && d.systemic->window_seconds > options_.retention_seconds) {
      return Status::FailedPrecondition(
          "duty " + d.id + ": its systemic window " +
          rules::FormatDuration(d.systemic->window_seconds) + " is longer than retention " +
          rules::FormatDuration(options_.retention_seconds) +
          " (the history carewatch keeps for systemic windows); raise retention");
    }
  }
  std::vector<v1::LedgerEvent> events;
  if (rs.version() != active_version_) {
    v1::LedgerEvent e = NewEvent(v1::RULESET_ACTIVATED, now);
    e.mutable_ruleset_activated()->set_version(rs.version());
    for (const auto& p : rs.packs())
      e.mutable_ruleset_activated()->add_packs(p.name + "@" + p.version);
    e.mutable_ruleset_activated()->set_rules(static_cast<int>(rs.rules().size()));
    // The duties' terms, so a finding's thresholds can be checked from the
    // log alone.
    for (const rules::Duty& d : rs.duties()) {
      v1::DutyTerms* t = e.mutable_ruleset_activated()->add_duties();
      t->set_id(d.id);
      t->set_deadline_seconds(d.deadline_seconds);
      t->set_record_grace_seconds(d.record_grace_seconds);
      t->set_statute(d.statute);
      t->set_summary(d.summary);
      if (d.systemic) {
        t->mutable_systemic()->set_window_seconds(d.systemic->window_seconds);
        t->mutable_systemic()->set_min_breaches(d.systemic->min_breaches);
        t->mutable_systemic()->set_min_breach_rate(d.systemic->min_breach_rate);
      }
    }
    Emit(&events, std::move(e));
  }
  for (const rules::Accountability& a : rs.accountability()) {
    if (accountability_keys_.count(AccountabilityKey(a))) continue;
    v1::LedgerEvent e = NewEvent(v1::ACCOUNTABILITY_CHANGED, now);
    auto* c = e.mutable_accountability_changed();
    c->set_service_id(a.service_id);
    c->set_duty(a.duty_pattern);
    c->set_name(a.name);
    c->set_role(a.role);
    SetTime(c->mutable_from(), a.from);
    if (a.to) SetTime(c->mutable_to(), *a.to);
    Emit(&events, std::move(e));
  }
  // A systemic window longer than what memory holds for its duty (a duty
  // that had no systemic test, or a longer window) is read again from the
  // store, once everything recorded so far is durable.
  std::vector<const rules::Duty*> reload;
  for (const rules::Duty& d : rs.duties()) {
    if (!d.systemic) continue;
    auto c = covered_.find(d.id);
    int64_t have = c == covered_.end() ? default_covered_ : c->second;
    if (d.systemic->window_seconds > have) reload.push_back(&d);
  }
  if (!reload.empty() && ledger_) {
    Status f = ledger_->Flush();
    if (!f.ok()) return f;
    int64_t longest = 0;
    std::map<std::string, int64_t, std::less<>> window_of;  // the reloaded duties
    for (const rules::Duty* d : reload) {
      longest = std::max(longest, d->systemic->window_seconds);
      window_of[d->id] = d->systemic->window_seconds;
      for (auto& [key, w] : windows_) {
        if (key.second != d->id) continue;
        w.hours.clear();
        w.recent.clear();
        w.edge.clear();
        w.edge_hour = INT64_MIN;
        w.breached.clear();
      }
    }
    f = LoadWindows(now > INT64_MIN + longest ? now - longest : INT64_MIN, now,
                    [&](std::string_view duty) { return window_of.count(duty) > 0; });
    if (!f.ok()) return f;
    SortWindows();
    for (const auto& [duty, seconds] : window_of) covered_[duty] = seconds;
  }
  extra_actions_.clear();
  for (const rules::Rule& r : rs.rules()) {
    for (const std::string& a : rs.ActionsFor(r)) extra_actions_.insert(a);
  }
  evaluator_ = std::move(evaluator);
  return Commit(&events, lock);
}

Status DutyEngine::Retry(const Key& key, const std::string& digest, const std::string& first_digest,
                         const v1::Verdict& first, v1::Verdict* verdict,
                         const std::string& first_described) const {
  // Ledgers written before report digests cannot tell a retry from another
  // report: those are taken for retries.
  if (!first_digest.empty() && first_digest != digest) {
    return Status::AlreadyExists("report " + key.second + " of service " + key.first +
                                 " was already submitted with other content (" + first_described +
                                 "); a report id names one report");
  }
  *verdict = first;
  return Status::Ok();
}

void DutyEngine::FillProgressLocked(v1::Obligation* x) const {
  x->clear_actions_done();
  x->clear_actions_outstanding();
  auto held = obligations_.find(x->obligation_id());
  if (held != obligations_.end()) {
    const int64_t deadline = x->deadline().seconds();
    std::vector<std::string> required(x->required_actions().begin(), x->required_actions().end());
    for (const std::string& req : required) {
      bool done = std::any_of(
          held->second.actions.begin(), held->second.actions.end(),
          [&](const ActionRecord& r) { return r.action == req && r.taken_at <= deadline; });
      (done ? x->add_actions_done() : x->add_actions_outstanding())->assign(req);
    }
  } else if (x->status() == v1::OBLIGATION_STATUS_MET) {
    *x->mutable_actions_done() = x->required_actions();
  } else if (x->status() != v1::OBLIGATION_STATUS_BREACHED) {
    *x->mutable_actions_outstanding() = x->required_actions();  // nothing recorded yet
  }
}

Status DutyEngine::SubmitReport(const v1::ContentReport& report, v1::Verdict* verdict,
                                Pending* pending, Identifiers* extracted) {
  Status s = SubmitReportOnce(report, verdict, pending, extracted);
  if (s.ok()) {
    // Every answer says, per obligation, what is done and what is owed: all
    // owed for a new report, the current state for a retry.
    std::lock_guard<std::mutex> lock(mu_);
    for (v1::Obligation& o : *verdict->mutable_obligations()) FillProgressLocked(&o);
  }
  return s;
}

Status DutyEngine::SubmitReportOnce(const v1::ContentReport& report, v1::Verdict* verdict,
                                    Pending* pending, Identifiers* extracted) {
  Status s = CheckReport(report, ServerNow(), options_.max_clock_skew_seconds);
  if (!s.ok()) return s;
  const std::string digest = ReportDigest(options_.hmac_key, report);
  return Once(report.service_id(), report.report_id(), digest, verdict, pending,
              [&](std::shared_ptr<ledger::Ledger::Ticket>* defer) {
                return SubmitNew(report, digest, verdict, defer, extracted);
              });
}

Status DutyEngine::CheckReport(const v1::ContentReport& report, int64_t now, int64_t max_skew) {
  if (report.report_id().empty()) return Status::InvalidArgument("report.report_id: required");
  if (report.service_id().empty()) return Status::InvalidArgument("report.service_id: required");
  if (!report.has_received_at()) return Status::InvalidArgument("report.received_at: required");
  return CheckClaimedTime("report.received_at", report.received_at().seconds(),
                          report.received_at().nanos(), now, max_skew);
}

Status DutyEngine::Prepare(const eval::Evaluator& evaluator, const std::string& hmac_key,
                           const v1::ContentReport& report, v1::ReportFlagged* out,
                           Identifiers* extracted, const std::string* digest) {
  v1::Verdict* verdict = out->mutable_verdict();
  Status s = evaluator.Evaluate(report, verdict);
  if (!s.ok()) return Status::InvalidArgument("report." + s.message());
  if (extracted && verdict->flags_size() > 0 && evaluator.extracts())
    *extracted = evaluator.ExtractIdentifiers(report, *verdict, 16);
  out->set_report_id(report.report_id());
  out->set_service_id(report.service_id());
  *out->mutable_received_at() = report.received_at();
  out->set_surface(report.surface());
  out->set_content_type(report.content_type());
  out->set_reporter_type(report.reporter_type());
  out->set_reason(report.reason());
  out->set_subject_age_band(report.subject_age_band());
  out->set_ruleset_version(verdict->ruleset_version());
  out->set_report_digest(digest ? *digest : ReportDigest(hmac_key, report));
  if (verdict->flags_size() == 0) return Status::Ok();  // no event: no digests needed
  for (const v1::Flag& flag : verdict->flags()) out->add_rule_ids(flag.rule_id());
  auto add_digest = [&](const std::string& field, const std::string& value) {
    if (value.empty()) return;
    v1::FieldDigest* d = out->add_digests();
    d->set_field(field);
    d->set_hmac_sha256(ledger::HmacSha256Hex(hmac_key, value));
    for (const v1::Flag& flag : verdict->flags()) {
      for (const v1::Match& m : flag.matches()) {
        if (m.field() == field) *d->add_matches() = m;
      }
    }
  };
  for (rules::Field field : rules::kSingleTextFields)
    add_digest(rules::FieldName(field), *eval::SingleValue(report, field));
  for (int i = 0; i < report.urls_size(); ++i)
    add_digest("urls[" + std::to_string(i) + "]", report.urls(i));
  *out->mutable_hashes() = report.hashes();
  return Status::Ok();
}

Status DutyEngine::SubmitPrepared(const v1::ReportFlagged& prepared, v1::Verdict* verdict,
                                  Pending* pending, int64_t queue_id) {
  if (prepared.report_id().empty()) return Status::InvalidArgument("report.report_id: required");
  if (prepared.service_id().empty()) return Status::InvalidArgument("report.service_id: required");
  if (prepared.report_digest().empty())
    return Status::InvalidArgument("report: queued without its digest");
  Status s = Once(prepared.service_id(), prepared.report_id(), prepared.report_digest(), verdict,
                  pending, [&](std::shared_ptr<ledger::Ledger::Ticket>* defer) {
                    bool found = false;
                    Status r = Recorded(prepared.service_id(), prepared.report_id(),
                                        prepared.report_digest(), verdict, &found);
                    if (!r.ok() || found) return r;
                    std::shared_ptr<const eval::Evaluator> e = evaluator();
                    if (!e) return Status::FailedPrecondition("no rule set is active");
                    if (e->ruleset().version() != prepared.ruleset_version()) {
                      return Status::FailedPrecondition(
                          "report " + prepared.report_id() + " was evaluated with rule set " +
                          prepared.ruleset_version() + ", but the writer serves " +
                          e->ruleset().version() +
                          ": every replica must serve the same rules; retry once they do");
                    }
                    return Record(prepared, verdict, defer, queue_id);
                  });
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    for (v1::Obligation& o : *verdict->mutable_obligations()) FillProgressLocked(&o);
  }
  return s;
}

Status DutyEngine::Once(
    const std::string& service_id, const std::string& report_id, const std::string& digest,
    v1::Verdict* verdict, Pending* pending,
    const std::function<Status(std::shared_ptr<ledger::Ledger::Ticket>*)>& fresh) {
  const Key key{service_id, report_id};
  std::shared_ptr<Inflight> mine;
  for (;;) {
    std::shared_ptr<Inflight> other;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ledger_) {
        Status h = ledger_->health();
        if (!h.ok()) return h;
      }
      {
        std::lock_guard<std::mutex> in_lock(inflight_mu_);
        auto in = inflight_.find(key);
        if (in != inflight_.end()) other = in->second;
      }
      if (!other) {
        auto it = reports_.find(key);
        if (it != reports_.end()) {
          return Retry(key, digest, it->second.digest, it->second.Verdict(), verdict,
                       "ledger seq " + std::to_string(it->second.ledger_seq));
        }
        auto seen = seen_unflagged_.find(key);
        if (seen != seen_unflagged_.end()) {
          v1::Verdict first;
          first.set_report_id(report_id);
          return Retry(key, digest, seen->second, first, verdict, "it matched no rule");
        }
        mine = std::make_shared<Inflight>();
        mine->digest = digest;
        std::lock_guard<std::mutex> in_lock(inflight_mu_);
        inflight_[key] = mine;
      }
    }
    if (mine) break;
    // A submission of this report is in flight: its outcome is ours.
    std::unique_lock<std::mutex> wait(other->mu);
    other->cv.wait(wait, [&] { return other->done; });
    if (!other->status.ok()) return other->status;
    return Retry(key, digest, other->digest, other->verdict, verdict,
                 other->verdict.ledger_seq()
                     ? "ledger seq " + std::to_string(other->verdict.ledger_seq())
                     : "it matched no rule");
  }
  std::shared_ptr<ledger::Ledger::Ticket> ticket;
  Status s = fresh(pending ? &ticket : nullptr);
  // Retries of this report wait until its outcome is known: durable or not.
  auto finish = [this, mine, key, first = *verdict](const Status& outcome) {
    {
      std::lock_guard<std::mutex> lock(mine->mu);
      mine->status = outcome;
      if (outcome.ok()) mine->verdict = first;
      mine->done = true;
    }
    mine->cv.notify_all();
    std::lock_guard<std::mutex> lock(inflight_mu_);
    inflight_.erase(key);
  };
  if (s.ok() && ticket) {
    pending->ticket_ = std::move(ticket);
    pending->finish_ = std::move(finish);
    pending->done_ = false;
    return Status::Ok();
  }
  finish(s);
  return s;
}

// The answer to a report recorded durably before (a retry across a
// restart, or to another replica): `found` false when there is none.
Status DutyEngine::Recorded(const std::string& service_id, const std::string& report_id,
                            const std::string& digest, v1::Verdict* verdict, bool* found) {
  *found = false;
  if (!ledger_) return Status::Ok();
  ledger::ReportIndexRow row;
  Status s = ledger_->backend().LookupReport(service_id, report_id, &row, found);
  if (!s.ok() || !*found) return s;
  v1::Verdict first;
  first.set_report_id(report_id);
  first.set_ruleset_version(row.ruleset_version);
  first.set_ledger_seq(row.seq);
  if (row.seq) {
    // A flagged report whose work is done: its verdict from the log, its
    // obligations' states from the store.
    std::lock_guard<std::mutex> lock(mu_);
    ReportState state;
    bool have = false;
    s = LoadReport({service_id, report_id}, &state, &have);
    if (!s.ok()) return s;
    if (have) first = state.Verdict();
  }
  return Retry({service_id, report_id}, digest, row.digest, first, verdict,
               row.seq
                   ? "ledger seq " + std::to_string(row.seq)
                   : "it matched no rule; first counted " + rules::FormatDateTime(row.recorded_at));
}

// REQUIRES: this thread holds the Inflight entry of the report's key.
Status DutyEngine::SubmitNew(const v1::ContentReport& report, const std::string& digest,
                             v1::Verdict* verdict, std::shared_ptr<ledger::Ledger::Ticket>* defer,
                             Identifiers* extracted) {
  bool found = false;
  Status s = Recorded(report.service_id(), report.report_id(), digest, verdict, &found);
  if (!s.ok() || found) return s;
  std::shared_ptr<const eval::Evaluator> evaluator = this->evaluator();
  if (!evaluator) return Status::FailedPrecondition("no rule set is active");
  // Evaluate outside the lock: it is the expensive part and thread-safe.
  v1::ReportFlagged prepared;
  s = Prepare(*evaluator, options_.hmac_key, report, &prepared, extracted, &digest);
  if (!s.ok()) return s;
  return Record(prepared, verdict, defer, 0);
}

// REQUIRES: this thread holds the Inflight entry of the report's key.
Status DutyEngine::Record(const v1::ReportFlagged& prepared, v1::Verdict* verdict,
                          std::shared_ptr<ledger::Ledger::Ticket>* defer, int64_t queue_id) {
  *verdict = prepared.verdict();
  std::shared_ptr<const eval::Evaluator> evaluator = this->evaluator();
  std::unique_lock<std::mutex> lock(mu_);
  RetireDurable();
  const int64_t now = std::max(ServerNow(), decided_);
  const int64_t received = prepared.received_at().seconds();
  const bool flagged = verdict->flags_size() > 0;
  // Batch jobs do not wait for durability, so their index rows may not be
  // readable yet: they remember unflagged ids in memory instead.
  const bool remember_in_memory = !ledger_ || !options_.wait_durable;
  ledger::BatchExtras extras;
  if (queue_id) extras.dequeue.push_back(queue_id);
  extras.stats.push_back({prepared.service_id(), rules::FormatDate(received), prepared.surface(),
                          prepared.reason(), 1, flagged ? 1 : 0});
  if (!flagged) {
    ++counts_.reports;
    if (remember_in_memory)
      seen_unflagged_[{prepared.service_id(), prepared.report_id()}] = prepared.report_digest();
    if (!ledger_) return Status::Ok();
    extras.reports.push_back({prepared.service_id(), prepared.report_id(), prepared.report_digest(),
                              0, now, verdict->ruleset_version()});
    std::vector<v1::LedgerEvent> none;
    return Commit(&none, lock, std::move(extras), defer);  // counted, durably, and nothing else
  }

  std::vector<v1::LedgerEvent> events;
  v1::LedgerEvent flagged_event = NewEvent(v1::REPORT_FLAGGED, received);
  *flagged_event.mutable_report_flagged() = prepared;
  Emit(&events, std::move(flagged_event));

  const rules::Duty* no_duty = nullptr;
  for (const v1::Obligation& ob : verdict->obligations()) {
    v1::LedgerEvent opened = NewEvent(v1::OBLIGATION_OPENED, received);
    auto* o = opened.mutable_obligation_opened();
    *o->mutable_obligation() = ob;
    o->set_report_id(prepared.report_id());
    o->set_service_id(prepared.service_id());
    *o->mutable_received_at() = prepared.received_at();
    const rules::Duty* duty = evaluator ? evaluator->ruleset().FindDuty(ob.duty_id()) : no_duty;
    o->set_record_grace_seconds(duty ? duty->record_grace_seconds
                                     : rules::Duty::kDefaultRecordGraceSeconds);
    Emit(&events, std::move(opened));
  }
  // New obligations change no systemic window until they come due.
  Status s = Commit(&events, lock, std::move(extras), defer);
  if (!s.ok()) return s;
  verdict->set_ledger_seq(events.front().seq());
  return Status::Ok();
}

void DutyEngine::BreachEvent(const TrackedObligation& ob, BreachKind kind, int64_t at, int64_t now,
                             std::vector<v1::LedgerEvent>* events) {
  v1::LedgerEvent e = NewEvent(v1::DUTY_BREACHED, at);
  v1::Breach* b = e.mutable_breach();
  b->set_obligation_id(ob.id);
  b->set_report_id(ob.report_id);
  b->set_service_id(ob.service_id);
  b->set_duty_id(ob.duty_id());
  b->set_rule_id(ob.rule_id());
  b->mutable_deadline()->set_seconds(ob.deadline);
  b->mutable_deadline()->set_nanos(ob.deadline_nanos);
  b->set_kind(BreachKindName(kind));
  SetTime(b->mutable_at(), at);
  SetTime(b->mutable_recorded_at(), now);
  const int64_t deadline = ob.deadline;
  for (const std::string& req : ob.required_actions()) {
    bool recorded = false, on_time = false;
    for (const ActionRecord& a : ob.actions) {
      if (a.action != req) continue;
      recorded = true;
      on_time = on_time || a.taken_at <= deadline;
    }
    if (!recorded) {
      b->add_missing_actions(req);
    } else if (!on_time || kind == BreachKind::kLateRecorded) {
      b->add_late_actions(req);
    }
  }
  Emit(events, std::move(e));
}

void DutyEngine::CloseEvent(const TrackedObligation& ob, ObligationState state, int64_t at,
                            std::vector<v1::LedgerEvent>* events) {
  v1::LedgerEvent closed =
      NewEvent(state == ObligationState::kMet ? v1::OBLIGATION_MET : v1::OBLIGATION_DISCHARGED, at);
  auto* c = closed.mutable_obligation_closed();
  c->set_obligation_id(ob.id);
  c->set_report_id(ob.report_id);
  c->set_service_id(ob.service_id);
  c->set_duty_id(ob.duty_id());
  c->set_rule_id(ob.rule_id());
  SetTime(c->mutable_at(), at);
  Emit(events, std::move(closed));
}

Status DutyEngine::RecordAction(const ActionInput& in, std::vector<v1::Obligation>* out,
                                uint64_t* seq) {
  if (in.service_id.empty()) return Status::InvalidArgument("service_id: required");
  if (in.report_id.empty()) return Status::InvalidArgument("report_id: required");
  if (in.action.empty()) return Status::InvalidArgument("action: required");
  Status s = CheckClaimedTime("taken_at", in.taken_at, in.taken_at_nanos, ServerNow(),
                              options_.max_clock_skew_seconds);
  if (!s.ok()) return s;
  std::unique_lock<std::mutex> lock(mu_);
  if (ledger_) {
    Status h = ledger_->health();
    if (!h.ok()) return h;
  }
  if (!rules::IsKnownAction(in.action) && !extra_actions_.count(in.action)) {
    return Status::InvalidArgument("action: unknown action '" + in.action +
                                   "' (not in the vocabulary nor required by any active rule)");
  }
  out->clear();
  const int64_t now = std::max(ServerNow(), decided_);
  std::vector<v1::LedgerEvent> events;
  v1::LedgerEvent recorded = NewEvent(v1::ACTION_RECORDED, in.taken_at);
  auto* a = recorded.mutable_action_recorded();
  a->set_service_id(in.service_id);
  a->set_report_id(in.report_id);
  a->set_action(in.action);
  a->mutable_taken_at()->set_seconds(in.taken_at);
  a->mutable_taken_at()->set_nanos(in.taken_at_nanos);
  a->set_actor(in.actor);

  RetireDurable();
  auto report = reports_.find({in.service_id, in.report_id});
  ReportState stored;
  if (report == reports_.end() && ledger_) {
    // Not open work: the store knows whether it was ever flagged.
    bool found = false;
    s = LoadReport({in.service_id, in.report_id}, &stored, &found);
    if (!s.ok()) return s;
    if (found) report = reports_.emplace(Key{in.service_id, in.report_id}, std::move(stored)).first;
    // Forgotten again once this command is durable.
    if (found && report->second.open == 0) to_retire_.push_back(report->first);
  }
  if (report == reports_.end()) {
    a->set_note("no flagged report with this id at this service; recorded, nothing owed");
    Emit(&events, std::move(recorded));
    s = Commit(&events, lock, Dequeue(in.queue_id));
    if (s.ok() && seq) *seq = events.front().seq();
    return s;
  }
  if (in.taken_at < report->second.received_at) {
    return Status::InvalidArgument("taken_at: " + rules::FormatDateTime(in.taken_at) +
                                   " is before the report was received (" +
                                   rules::FormatDateTime(report->second.received_at) + ")");
  }
  std::vector<std::string> applies;
  const v1::Verdict first = report->second.Verdict();
  for (const v1::Obligation& o : first.obligations()) {
    auto held = obligations_.find(o.obligation_id());
    if (held == obligations_.end()) continue;  // decided
    const TrackedObligation& ob = held->second;
    bool duplicate = std::any_of(ob.actions.begin(), ob.actions.end(),
                                 [&](const ActionRecord& r) { return r.action == in.action; });
    if (!duplicate) applies.push_back(o.obligation_id());
  }
  for (const std::string& id : applies) a->add_obligation_ids(id);
  if (applies.empty()) a->set_note("duplicate action, or every obligation of the report is closed");
  Emit(&events, std::move(recorded));

  std::set<Key> touched;
  for (const std::string& id : applies) {
    auto held = obligations_.find(id);
    if (held == obligations_.end()) continue;
    // A copy: deciding it removes it from obligations_.
    const TrackedObligation ob = held->second;
    const int64_t deadline = ob.deadline;
    if (in.taken_at > deadline && IsRelevantAction(ob.required_actions(), in.action)) {
      // The platform's own claim is after the deadline: late, attributed to
      // the claimed time.
      BreachEvent(ob, BreachKind::kLate, in.taken_at, now, &events);
      touched.insert({ob.service_id, ob.duty_id()});
      continue;
    }
    if (now - ob.record_grace > deadline) {
      // carewatch learns of this only now, past deadline + record_grace:
      // whatever taken_at claims, it cannot make the obligation on time.
      BreachEvent(ob, BreachKind::kLateRecorded, deadline, now, &events);
      touched.insert({ob.service_id, ob.duty_id()});
      continue;
    }
    // An action the obligation does not ask for, claimed after the deadline,
    // changes nothing: the sweeper breaches the obligation as missed.
    if (in.taken_at > deadline) continue;
    ObligationOutcome outcome =
        ResolveObligation(deadline, ob.required_actions(), ob.actions, in.taken_at);
    if (outcome.state == ObligationState::kMet || outcome.state == ObligationState::kDischarged) {
      CloseEvent(ob, outcome.state, in.taken_at, &events);
    }
  }
  for (const Key& k : touched) Detect(k, now, &events);
  decided_ = std::max(decided_, now);
  // The statuses as the events above left them.
  const v1::Verdict after = report->second.Verdict();
  for (const v1::Obligation& o : after.obligations()) {
    // What is done and what is still owed, as the caller would ask next.
    v1::Obligation x = o;
    FillProgressLocked(&x);
    out->push_back(std::move(x));
  }
  s = Commit(&events, lock, Dequeue(in.queue_id));
  if (s.ok() && seq) *seq = events.front().seq();
  return s;
}

Status DutyEngine::Sweep(int64_t now) {
  std::unique_lock<std::mutex> lock(mu_);
  if (ledger_) {
    Status h = ledger_->health();
    if (!h.ok()) return h;
  }
  if (clock_ != INT64_MIN && now < clock_) {
    return Status::FailedPrecondition("server clock went backwards: " + rules::FormatDateTime(now) +
                                      " is before " + rules::FormatDateTime(clock_) +
                                      "; nothing was swept");
  }
  const int64_t t = std::max(now, decided_);
  std::vector<v1::LedgerEvent> events;
  while (!sweep_due_.empty() && sweep_due_.begin()->first < t) {
    auto first = sweep_due_.begin();
    auto ob = obligations_.find(first->second);
    if (ob == obligations_.end()) {
      sweep_due_.erase(first);  // decided already (a duplicate entry)
      continue;
    }
    // Applying the breach removes it from sweep_due_.
    BreachEvent(ob->second, BreachKind::kMissed, ob->second.deadline, t, &events);
  }
  // Every window that holds breaches or an open finding is evaluated at the
  // sweep's time: breaches came due, or the window slid.
  std::vector<Key> keys;
  for (const auto& [k, w] : windows_) {
    if (w.open || !w.breached.empty()) keys.push_back(k);
  }
  for (const Key& k : keys) Detect(k, t, &events);
  // Beyond retention nothing is kept: windows of duties without a systemic
  // test would otherwise grow with history (Activate refuses windows longer
  // than retention).
  if (t > INT64_MIN + options_.retention_seconds) {
    const int64_t horizon = t - options_.retention_seconds;
    for (auto it = windows_.begin(); it != windows_.end();) {
      Window& w = it->second;
      const rules::Duty* duty =
          evaluator_ ? evaluator_->ruleset().FindDuty(it->first.second) : nullptr;
      if (duty && !duty->systemic) {
        // No systemic test: nothing to count (Activate reads the store again
        // if a reload adds one).
        w.hours.clear();
        w.recent.clear();
        w.edge.clear();
        w.edge_hour = INT64_MIN;
        w.breached.clear();
        covered_[it->first.second] = 0;
      }
      TrimRecent(w, t);
      while (!w.hours.empty() && w.hours.front().hour < HourOf(horizon)) w.hours.pop_front();
      while (!w.recent.empty() && w.recent.front() <= horizon) w.recent.pop_front();
      while (!w.edge.empty() && w.edge.front() <= horizon) w.edge.pop_front();
      while (!w.breached.empty() && w.breached.front().deadline <= horizon) w.breached.pop_front();
      it = w.hours.empty() && w.breached.empty() && !w.open ? windows_.erase(it) : std::next(it);
    }
  }
  RetireDurable();
  clock_ = now;
  decided_ = t;
  // Ids of reports that matched nothing are kept for retention, then
  // forgotten a small batch at a time.
  const bool prune = ledger_ && options_.wait_durable &&
                     t > INT64_MIN + options_.retention_seconds &&
                     (prune_behind_ || last_prune_ == INT64_MIN || t - last_prune_ >= 600);
  if (prune) last_prune_ = t;
  Status s = Commit(&events, lock);
  if (!s.ok() || !prune) return s;
  size_t deleted = 0;
  s = ledger_->PruneUnflagged(t - options_.retention_seconds, options_.prune_batch, &deleted);
  prune_behind_ = s.ok() && deleted >= options_.prune_batch;
  return s;
}

void DutyEngine::Detect(const Key& key, int64_t t, std::vector<v1::LedgerEvent>* events) {
  if (!evaluator_) return;
  const rules::Duty* duty = evaluator_->ruleset().FindDuty(key.second);
  if (!duty || !duty->systemic) return;
  const rules::Systemic& sys = *duty->systemic;
  Window& w = windows_[key];
  const int64_t start = t - sys.window_seconds;
  // Server time only moves forward here, so what slid out never comes back.
  TrimRecent(w, t);
  while (!w.recent.empty() && w.recent.front() <= start) w.recent.pop_front();
  while (!w.breached.empty() && w.breached.front().deadline <= start) w.breached.pop_front();
  int64_t due = 0;
  // A failed read of the store: evaluated again at the next sweep.
  if (!DueIn(key, w, start, t, &due)) return;
  auto end_b = std::find_if(w.breached.begin(), w.breached.end(),
                            [t](const WindowBreach& b) { return b.deadline > t; });
  const int64_t breached = end_b - w.breached.begin();
  const double rate = due > 0 ? static_cast<double>(breached) / static_cast<double>(due) : 0.0;
  const bool holds = breached >= sys.min_breaches && rate >= sys.min_breach_rate;
  // Breaches in the window that no finding holds yet.
  std::vector<const WindowBreach*> fresh;
  for (auto it = w.breached.begin(); it != end_b; ++it) {
    if (it->finding_id.empty()) fresh.push_back(&*it);
  }
  auto fill = [&](v1::Finding* f, const std::string& status) {
    f->set_service_id(key.first);
    f->set_duty_id(key.second);
    f->set_status(status);
    SetTime(f->mutable_window_start(), start);
    SetTime(f->mutable_window_end(), t);
    f->set_obligations(static_cast<int32_t>(due));
    f->set_window_breaches(static_cast<int32_t>(breached));
    f->set_breach_rate(rate);
    auto* th = f->mutable_thresholds();
    th->set_window_seconds(sys.window_seconds);
    th->set_min_breaches(sys.min_breaches);
    th->set_min_breach_rate(sys.min_breach_rate);
  };
  auto add_members = [&](v1::Finding* f, int32_t base_missed, int32_t base_late,
                         int32_t base_recorded, int32_t base_total) {
    int32_t missed = base_missed, late = base_late, recorded = base_recorded;
    for (const WindowBreach* b : fresh) {
      f->add_obligation_ids(b->obligation_id);
      const std::string& kind = b->kind;
      if (kind == "late")
        ++late;
      else if (kind == "late_recorded")
        ++recorded;
      else
        ++missed;
    }
    f->set_breaches(base_total + static_cast<int32_t>(fresh.size()));
    f->set_breaches_missed(missed);
    f->set_breaches_late(late);
    f->set_breaches_late_recorded(recorded);
    AddAccountability(fresh, f);
  };
  if (holds && !w.open) {
    // A new episode needs a breach of its own: one already in an earlier
    // finding is never counted twice.
    if (fresh.empty()) return;
    v1::Finding f;
    f.set_finding_id("fd-" + Sha256Hex(key.first + '\0' + key.second + '\0' + std::to_string(t) +
                                       '\0' + fresh.front()->obligation_id)
                                 .substr(0, 16));
    fill(&f, "open");
    SetTime(f.mutable_opened_at(), t);
    add_members(&f, 0, 0, 0, 0);
    v1::LedgerEvent e = NewEvent(v1::FINDING_OPENED, t);
    *e.mutable_finding() = std::move(f);
    Emit(events, std::move(e));
  } else if (holds) {
    // The finding grows by the breaches since its last event (a delta).
    if (fresh.empty()) return;
    const v1::Finding& open = *w.open;
    v1::Finding delta;
    delta.set_finding_id(open.finding_id());
    fill(&delta, "open");
    *delta.mutable_opened_at() = open.opened_at();
    add_members(&delta, open.breaches_missed(), open.breaches_late(), open.breaches_late_recorded(),
                open.breaches());
    v1::LedgerEvent e = NewEvent(v1::FINDING_UPDATED, t);
    *e.mutable_finding() = std::move(delta);
    Emit(events, std::move(e));
  } else if (w.open) {
    v1::Finding closed;
    closed.set_finding_id(w.open->finding_id());
    fill(&closed, "closed");
    *closed.mutable_opened_at() = w.open->opened_at();
    SetTime(closed.mutable_closed_at(), std::max(t, w.open->opened_at().seconds()));
    v1::LedgerEvent e = NewEvent(v1::FINDING_CLOSED, t);
    *e.mutable_finding() = std::move(closed);
    Emit(events, std::move(e));
  }
}

void DutyEngine::AddAccountability(const std::vector<const WindowBreach*>& breaches,
                                   v1::Finding* f) const {
  for (const WindowBreach* b : breaches) {
    // The most specific scope in post wins: one breach, one person (several
    // only where tenures of the same scope overlap, which lint warns about).
    std::vector<const rules::Accountability*> in_post =
        rules::AccountableFor(accountability_, f->service_id(), f->duty_id(), b->at);
    if (in_post.empty()) f->set_unattributed_breaches(f->unattributed_breaches() + 1);
    for (const rules::Accountability* a : in_post) {
      v1::AccountablePerson* p = nullptr;
      for (auto& x : *f->mutable_accountable()) {
        if (x.name() == a->name && x.role() == a->role && x.tenure_from().seconds() == a->from)
          p = &x;
      }
      if (!p) {
        p = f->add_accountable();
        p->set_name(a->name);
        p->set_role(a->role);
        p->set_scope(a->duty_pattern);
        SetTime(p->mutable_tenure_from(), a->from);
        if (a->to) SetTime(p->mutable_tenure_to(), *a->to);
      }
      p->set_breaches(p->breaches() + 1);
      p->add_obligation_ids(b->obligation_id);
    }
  }
}

std::optional<int64_t> DutyEngine::NextSweepDue() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (sweep_due_.empty()) return std::nullopt;
  return sweep_due_.begin()->first;
}

int64_t DutyEngine::clock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return clock_;
}

std::vector<v1::Breach> DutyEngine::Breaches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return breaches_;
}

std::vector<v1::Finding> DutyEngine::Findings() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Finding> out;
  for (const auto& [id, f] : findings_) out.push_back(f);
  std::sort(out.begin(), out.end(), [](const v1::Finding& a, const v1::Finding& b) {
    return a.opened_at().seconds() != b.opened_at().seconds()
               ? a.opened_at().seconds() < b.opened_at().seconds()
               : a.finding_id() < b.finding_id();
  });
  return out;
}

DutyEngine::Counts DutyEngine::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

}  // namespace carewatch::duty
