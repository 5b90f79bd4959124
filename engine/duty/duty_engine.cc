#include "engine/duty/duty_engine.h"

#include <algorithm>

#include "engine/common/digest.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/keys.h"
#include "engine/rules/duration.h"
#include "engine/rules/vocabulary.h"

namespace carewatch::duty {

namespace {

void SetTime(google::protobuf::Timestamp* ts, int64_t seconds) { ts->set_seconds(seconds); }

std::string AccountabilityKey(const rules::Accountability& a) {
  return a.service_id + '\0' + a.duty_pattern + '\0' + a.name + '\0' + a.role + '\0' +
         std::to_string(a.from) + '\0' + (a.to ? std::to_string(*a.to) : "-");
}

}  // namespace

DutyEngine::DutyEngine(ledger::Ledger* ledger, DutyEngineOptions options)
    : ledger_(ledger), options_(std::move(options)) {}

DutyEngine::~DutyEngine() = default;

v1::LedgerEvent DutyEngine::NewEvent(v1::EventType type, int64_t time) {
  v1::LedgerEvent e;
  e.set_type(type);
  SetTime(e.mutable_time(), time);
  return e;
}

void DutyEngine::Emit(std::vector<v1::LedgerEvent>* events, v1::LedgerEvent e) {
  Apply(e);
  events->push_back(std::move(e));
}

Status DutyEngine::Commit(std::vector<v1::LedgerEvent>* events,
                          std::unique_lock<std::mutex>& lock) {
  if (events->empty()) return Status::Ok();
  counts_.events += events->size();
  std::shared_ptr<ledger::Ledger::Ticket> ticket;
  if (ledger_) {
    ticket = ledger_->Enqueue(events);
  } else {
    for (v1::LedgerEvent& e : *events) e.set_seq(++local_seq_);
  }
  // The verdict of a flagged report names the seq of its REPORT_FLAGGED.
  for (const v1::LedgerEvent& e : *events) {
    if (e.type() == v1::REPORT_FLAGGED) {
      auto it = reports_.find({e.report_flagged().service_id(), e.report_flagged().report_id()});
      if (it != reports_.end()) it->second.verdict.set_ledger_seq(e.seq());
    }
  }
  lock.unlock();
  return ticket && options_.wait_durable ? ticket->Wait() : Status::Ok();
}

void DutyEngine::Apply(const v1::LedgerEvent& e) {
  switch (e.type()) {
    case v1::RULESET_ACTIVATED:
      active_version_ = e.ruleset_activated().version();
      break;
    case v1::ACCOUNTABILITY_CHANGED: {
      const auto& a = e.accountability_changed();
      rules::Accountability r;
      r.service_id = a.service_id();
      r.duty_pattern = a.duty();
      r.name = a.name();
      r.role = a.role();
      r.from = a.from().seconds();
      if (a.has_to()) r.to = a.to().seconds();
      if (accountability_keys_.insert(AccountabilityKey(r)).second) accountability_.push_back(r);
      break;
    }
    case v1::REPORT_FLAGGED: {
      const auto& r = e.report_flagged();
      ReportState& state = reports_[{r.service_id(), r.report_id()}];
      state.verdict = r.verdict();
      state.verdict.set_ledger_seq(e.seq());
      state.received_at = r.received_at().seconds();
      ++counts_.flagged;
      ++counts_.reports;
      break;
    }
    case v1::OBLIGATION_OPENED: {
      const auto& o = e.obligation_opened();
      TrackedObligation& ob = obligations_[o.obligation().obligation_id()];
      ob.obligation = o.obligation();
      ob.obligation.set_status(v1::OBLIGATION_STATUS_OPEN);
      ob.service_id = o.service_id();
      ob.report_id = o.report_id();
      ob.received_at = o.received_at().seconds();
      deadlines_.emplace(ob.obligation.deadline().seconds(), ob.obligation.obligation_id());
      auto& times = windows_[{ob.service_id, ob.obligation.duty_id()}].obligations;
      times.insert(std::upper_bound(times.begin(), times.end(), ob.received_at), ob.received_at);
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
      if (it == obligations_.end()) break;
      TrackedObligation& ob = it->second;
      if (ob.obligation.status() == v1::OBLIGATION_STATUS_OPEN) {
        --counts_.open;
        auto range = deadlines_.equal_range(ob.obligation.deadline().seconds());
        for (auto d = range.first; d != range.second; ++d) {
          if (d->second == id) {
            deadlines_.erase(d);
            break;
          }
        }
      }
      v1::ObligationStatus status = e.type() == v1::OBLIGATION_MET ? v1::OBLIGATION_STATUS_MET
                                    : e.type() == v1::OBLIGATION_DISCHARGED
                                        ? v1::OBLIGATION_STATUS_DISCHARGED
                                        : v1::OBLIGATION_STATUS_BREACHED;
      ob.obligation.set_status(status);
      if (status == v1::OBLIGATION_STATUS_MET) ++counts_.met;
      if (status == v1::OBLIGATION_STATUS_DISCHARGED) ++counts_.discharged;
      if (status == v1::OBLIGATION_STATUS_BREACHED) {
        ++counts_.breached;
        ob.breach_at = e.breach().at().seconds();
        Window& w = windows_[{ob.service_id, ob.obligation.duty_id()}];
        auto entry = std::make_pair(ob.breach_at, id);
        w.breaches.insert(std::upper_bound(w.breaches.begin(), w.breaches.end(), entry), entry);
        w.pending.push_back(id);
        if (options_.keep_history) breaches_.push_back(e.breach());
      }
      auto report = reports_.find({ob.service_id, ob.report_id});
      if (report != reports_.end()) {
        for (v1::Obligation& o : *report->second.verdict.mutable_obligations()) {
          if (o.obligation_id() == id) o.set_status(status);
        }
      }
      break;
    }
    case v1::FINDING_OPENED:
    case v1::FINDING_UPDATED:
    case v1::FINDING_CLOSED: {
      const v1::Finding& delta = e.finding();
      Window& w = windows_[{delta.service_id(), delta.duty_id()}];
      v1::Finding& full = findings_[delta.finding_id()];
      ledger::ApplyFindingEvent(e.type(), delta, &full);
      w.pending.clear();
      if (e.type() == v1::FINDING_CLOSED) {
        w.open.reset();
        w.in_finding.clear();
        if (counts_.findings_open > 0) --counts_.findings_open;
      } else {
        if (e.type() == v1::FINDING_OPENED) {
          ++counts_.findings_open;
          w.in_finding.clear();
        }
        w.in_finding.insert(delta.obligation_ids().begin(), delta.obligation_ids().end());
        w.open = full;
      }
      break;
    }
    default:
      break;
  }
}

Status DutyEngine::Recover() {
  if (!ledger_) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t next = 1;
  for (;;) {
    std::vector<ledger::StoredEvent> page;
    Status s = ledger_->backend().ReadEvents(next, 10000, &page);
    if (!s.ok()) return s;
    if (page.empty()) break;
    for (const ledger::StoredEvent& row : page) {
      v1::LedgerEvent e;
      if (row.seq != next || !e.ParseFromString(row.payload)) {
        return Status::DataLoss("ledger event " + std::to_string(next) +
                                " is missing or corrupt; run `carewatch verify`");
      }
      Apply(e);
      clock_ = std::max(clock_, e.time().seconds());
      ++next;
    }
  }
  counts_.events = next - 1;
  return Status::Ok();
}

std::shared_ptr<const eval::Evaluator> DutyEngine::evaluator() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evaluator_;
}

Status DutyEngine::Activate(std::shared_ptr<const eval::Evaluator> evaluator, int64_t now) {
  std::unique_lock<std::mutex> lock(mu_);
  if (ledger_) {
    Status h = ledger_->health();
    if (!h.ok()) return h;
  }
  const rules::RuleSet& rs = evaluator->ruleset();
  std::vector<v1::LedgerEvent> events;
  if (rs.version() != active_version_) {
    v1::LedgerEvent e = NewEvent(v1::RULESET_ACTIVATED, now);
    e.mutable_ruleset_activated()->set_version(rs.version());
    for (const auto& p : rs.packs())
      e.mutable_ruleset_activated()->add_packs(p.name + "@" + p.version);
    e.mutable_ruleset_activated()->set_rules(static_cast<int>(rs.rules().size()));
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
  extra_actions_.clear();
  for (const rules::Rule& r : rs.rules()) {
    for (const std::string& a : rs.ActionsFor(r)) extra_actions_.insert(a);
  }
  evaluator_ = std::move(evaluator);
  return Commit(&events, lock);
}

Status DutyEngine::SubmitReport(const v1::ContentReport& report, v1::Verdict* verdict) {
  if (report.report_id().empty()) return Status::InvalidArgument("report.report_id: required");
  if (report.service_id().empty()) return Status::InvalidArgument("report.service_id: required");
  if (!report.has_received_at() || report.received_at().seconds() <= 0) {
    return Status::InvalidArgument("report.received_at: required");
  }
  std::shared_ptr<const eval::Evaluator> evaluator;
  const std::pair<std::string, std::string> key{report.service_id(), report.report_id()};
  const std::string seen_key = report.service_id() + '\0' + report.report_id();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ledger_) {
      Status h = ledger_->health();
      if (!h.ok()) return h;
    }
    auto it = reports_.find(key);
    if (it != reports_.end()) {
      *verdict = it->second.verdict;
      return Status::Ok();
    }
    evaluator = evaluator_;
  }
  if (!evaluator) return Status::FailedPrecondition("no rule set is active");
  // Evaluate outside the lock: it is the expensive part and thread-safe.
  Status s = evaluator->Evaluate(report, verdict);
  if (!s.ok()) return Status::InvalidArgument("report." + s.message());

  std::unique_lock<std::mutex> lock(mu_);
  auto it = reports_.find(key);
  if (it != reports_.end()) {  // a concurrent retry won
    *verdict = it->second.verdict;
    return Status::Ok();
  }
  int64_t received = report.received_at().seconds();
  std::string day = rules::FormatDateTime(received).substr(0, 10);
  bool first_time = verdict->flags_size() > 0 || seen_unflagged_.insert(seen_key).second;
  if (ledger_ && first_time) {
    ledger_->CountReport({report.service_id(), day, report.surface(), report.reason(), 1,
                          verdict->flags_size() > 0 ? 1 : 0});
  }
  if (verdict->flags_size() == 0) {
    if (first_time) ++counts_.reports;
    return Status::Ok();  // only counted
  }
  seen_unflagged_.erase(seen_key);

  std::vector<v1::LedgerEvent> events;
  v1::LedgerEvent flagged = NewEvent(v1::REPORT_FLAGGED, received);
  auto* f = flagged.mutable_report_flagged();
  f->set_report_id(report.report_id());
  f->set_service_id(report.service_id());
  *f->mutable_received_at() = report.received_at();
  f->set_surface(report.surface());
  f->set_content_type(report.content_type());
  f->set_reporter_type(report.reporter_type());
  f->set_reason(report.reason());
  f->set_subject_age_band(report.subject_age_band());
  f->set_ruleset_version(verdict->ruleset_version());
  for (const v1::Flag& flag : verdict->flags()) f->add_rule_ids(flag.rule_id());
  auto digest = [&](const std::string& field, const std::string& value) {
    if (value.empty()) return;
    v1::FieldDigest* d = f->add_digests();
    d->set_field(field);
    d->set_hmac_sha256(ledger::HmacSha256Hex(options_.hmac_key, value));
    for (const v1::Flag& flag : verdict->flags()) {
      for (const v1::Match& m : flag.matches()) {
        if (m.field() == field) *d->add_matches() = m;
      }
    }
  };
  digest("text", report.text());
  digest("caption", report.caption());
  digest("username", report.username());
  digest("display_name", report.display_name());
  digest("profile_bio", report.profile_bio());
  for (int i = 0; i < report.urls_size(); ++i)
    digest("urls[" + std::to_string(i) + "]", report.urls(i));
  *f->mutable_hashes() = report.hashes();
  *f->mutable_verdict() = *verdict;
  Emit(&events, std::move(flagged));

  std::set<std::string> duties;
  for (const v1::Obligation& ob : verdict->obligations()) {
    v1::LedgerEvent opened = NewEvent(v1::OBLIGATION_OPENED, received);
    auto* o = opened.mutable_obligation_opened();
    *o->mutable_obligation() = ob;
    o->set_report_id(report.report_id());
    o->set_service_id(report.service_id());
    *o->mutable_received_at() = report.received_at();
    Emit(&events, std::move(opened));
    duties.insert(ob.duty_id());
  }
  for (const std::string& duty : duties) Detect(report.service_id(), duty, received, &events);
  s = Commit(&events, lock);
  if (!s.ok()) return s;
  verdict->set_ledger_seq(events.front().seq());
  return Status::Ok();
}

void DutyEngine::BreachEvent(const TrackedObligation& ob, BreachKind kind, int64_t at,
                             std::vector<v1::LedgerEvent>* events) {
  v1::LedgerEvent e = NewEvent(v1::DUTY_BREACHED, at);
  v1::Breach* b = e.mutable_breach();
  b->set_obligation_id(ob.obligation.obligation_id());
  b->set_report_id(ob.report_id);
  b->set_service_id(ob.service_id);
  b->set_duty_id(ob.obligation.duty_id());
  b->set_rule_id(ob.obligation.rule_id());
  *b->mutable_deadline() = ob.obligation.deadline();
  b->set_kind(BreachKindName(kind));
  SetTime(b->mutable_at(), at);
  int64_t deadline = ob.obligation.deadline().seconds();
  for (const std::string& req : ob.obligation.required_actions()) {
    bool on_time = std::any_of(ob.actions.begin(), ob.actions.end(), [&](const ActionRecord& a) {
      return a.action == req && a.taken_at <= deadline;
    });
    if (!on_time) b->add_missing_actions(req);
  }
  Emit(events, std::move(e));
}

Status DutyEngine::RecordAction(const ActionInput& in, std::vector<v1::Obligation>* out) {
  if (in.service_id.empty()) return Status::InvalidArgument("service_id: required");
  if (in.report_id.empty()) return Status::InvalidArgument("report_id: required");
  if (in.action.empty()) return Status::InvalidArgument("action: required");
  if (in.taken_at <= 0) return Status::InvalidArgument("taken_at: required");
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
  std::vector<v1::LedgerEvent> events;
  v1::LedgerEvent recorded = NewEvent(v1::ACTION_RECORDED, in.taken_at);
  auto* a = recorded.mutable_action_recorded();
  a->set_service_id(in.service_id);
  a->set_report_id(in.report_id);
  a->set_action(in.action);
  SetTime(a->mutable_taken_at(), in.taken_at);
  a->set_actor(in.actor);

  auto report = reports_.find({in.service_id, in.report_id});
  if (report == reports_.end()) {
    a->set_note("no flagged report with this id at this service; recorded, nothing owed");
    Emit(&events, std::move(recorded));
    return Commit(&events, lock);
  }
  if (in.taken_at < report->second.received_at) {
    return Status::InvalidArgument("taken_at: " + rules::FormatDateTime(in.taken_at) +
                                   " is before the report was received (" +
                                   rules::FormatDateTime(report->second.received_at) + ")");
  }
  std::vector<std::string> applies;
  for (const v1::Obligation& o : report->second.verdict.obligations()) {
    const TrackedObligation& ob = obligations_[o.obligation_id()];
    if (ob.obligation.status() != v1::OBLIGATION_STATUS_OPEN) continue;
    bool duplicate = std::any_of(ob.actions.begin(), ob.actions.end(),
                                 [&](const ActionRecord& r) { return r.action == in.action; });
    if (!duplicate) applies.push_back(o.obligation_id());
  }
  for (const std::string& id : applies) a->add_obligation_ids(id);
  if (applies.empty()) a->set_note("duplicate action, or every obligation of the report is closed");
  Emit(&events, std::move(recorded));

  for (const std::string& id : applies) {
    const TrackedObligation& ob = obligations_[id];
    int64_t deadline = ob.obligation.deadline().seconds();
    std::vector<std::string> required(ob.obligation.required_actions().begin(),
                                      ob.obligation.required_actions().end());
    if (in.taken_at > deadline) {
      // The deadline passed before the sweeper saw it: a late breach.
      BreachEvent(ob, BreachKind::kLate, in.taken_at, &events);
      Detect(ob.service_id, ob.obligation.duty_id(), in.taken_at, &events);
      continue;
    }
    ObligationOutcome outcome = ResolveObligation(deadline, required, ob.actions, in.taken_at);
    if (outcome.state == duty::ObligationState::kMet ||
        outcome.state == duty::ObligationState::kDischarged) {
      v1::LedgerEvent closed =
          NewEvent(outcome.state == duty::ObligationState::kMet ? v1::OBLIGATION_MET
                                                                : v1::OBLIGATION_DISCHARGED,
                   in.taken_at);
      auto* c = closed.mutable_obligation_closed();
      c->set_obligation_id(id);
      c->set_report_id(ob.report_id);
      c->set_service_id(ob.service_id);
      c->set_duty_id(ob.obligation.duty_id());
      c->set_rule_id(ob.obligation.rule_id());
      SetTime(c->mutable_at(), in.taken_at);
      Emit(&events, std::move(closed));
    }
  }
  for (const v1::Obligation& o : report->second.verdict.obligations()) out->push_back(o);
  return Commit(&events, lock);
}

Status DutyEngine::Sweep(int64_t now) {
  std::unique_lock<std::mutex> lock(mu_);
  if (ledger_) {
    Status h = ledger_->health();
    if (!h.ok()) return h;
  }
  if (clock_ != INT64_MIN && now < clock_) {
    return Status::FailedPrecondition("clock went backwards: " + rules::FormatDateTime(now) +
                                      " is before " + rules::FormatDateTime(clock_) +
                                      "; nothing was swept");
  }
  std::vector<v1::LedgerEvent> events;
  while (!deadlines_.empty() && deadlines_.begin()->first < now) {
    auto [deadline, id] = *deadlines_.begin();
    const TrackedObligation& ob = obligations_[id];
    BreachEvent(ob, BreachKind::kMissed, deadline, &events);  // removes it from deadlines_
    Detect(ob.service_id, ob.obligation.duty_id(), deadline, &events);
  }
  // The window slides: findings may stop holding.
  std::vector<std::pair<std::string, std::string>> open;
  for (const auto& [k, w] : windows_) {
    if (w.open) open.push_back(k);
  }
  for (const auto& [service, duty] : open) Detect(service, duty, now, &events);
  clock_ = now;
  return Commit(&events, lock);
}

void DutyEngine::Detect(const std::string& service_id, const std::string& duty_id, int64_t t,
                        std::vector<v1::LedgerEvent>* events) {
  if (!evaluator_) return;
  const rules::Duty* duty = evaluator_->ruleset().FindDuty(duty_id);
  if (!duty || !duty->systemic) return;
  const rules::Systemic& sys = *duty->systemic;
  Window& w = windows_[{service_id, duty_id}];
  int64_t start = t - sys.window_seconds;
  // Counts in (start, t] by binary search: no walk over the window.
  auto in_window = [&](int64_t at) { return at > start && at <= t; };
  auto first_b = std::upper_bound(w.breaches.begin(), w.breaches.end(),
                                  std::make_pair(start, std::string("\xff")));
  auto end_b = std::upper_bound(w.breaches.begin(), w.breaches.end(),
                                std::make_pair(t, std::string("\xff")));
  int64_t breaches = std::distance(first_b, end_b);
  int64_t obligations =
      std::distance(std::upper_bound(w.obligations.begin(), w.obligations.end(), start),
                    std::upper_bound(w.obligations.begin(), w.obligations.end(), t));
  double rate =
      obligations > 0 ? static_cast<double>(breaches) / obligations : (breaches ? 1.0 : 0.0);
  bool holds = breaches >= sys.min_breaches && rate >= sys.min_breach_rate;
  if (holds && !w.open) {
    v1::Finding f;
    f.set_finding_id(
        "fd-" + Sha256Hex(service_id + '\0' + duty_id + '\0' + std::to_string(t)).substr(0, 16));
    f.set_service_id(service_id);
    f.set_duty_id(duty_id);
    f.set_status("open");
    SetTime(f.mutable_opened_at(), t);
    SetTime(f.mutable_window_start(), start);
    SetTime(f.mutable_window_end(), t);
    std::vector<std::string> ids;
    for (auto it = first_b; it != end_b; ++it) ids.push_back(it->second);
    for (const std::string& id : ids) f.add_obligation_ids(id);
    f.set_breaches(static_cast<int32_t>(ids.size()));
    f.set_obligations(static_cast<int32_t>(obligations));
    f.set_breach_rate(rate);
    AddAccountability(ids, &f);
    v1::LedgerEvent e = NewEvent(v1::FINDING_OPENED, t);
    *e.mutable_finding() = std::move(f);
    Emit(events, std::move(e));
  } else if (holds) {
    // The finding grows by the breaches since its last event (a delta).
    std::vector<std::string> added;
    for (const std::string& id : w.pending) {
      auto it = obligations_.find(id);
      if (it != obligations_.end() && in_window(it->second.breach_at) && !w.in_finding.count(id))
        added.push_back(id);
    }
    if (added.empty()) return;
    const v1::Finding& open = *w.open;
    v1::Finding delta;
    delta.set_finding_id(open.finding_id());
    delta.set_service_id(service_id);
    delta.set_duty_id(duty_id);
    delta.set_status("open");
    *delta.mutable_opened_at() = open.opened_at();
    *delta.mutable_window_start() = open.window_start();
    SetTime(delta.mutable_window_end(), t);
    for (const std::string& id : added) delta.add_obligation_ids(id);
    delta.set_breaches(open.breaches() + static_cast<int32_t>(added.size()));
    delta.set_obligations(static_cast<int32_t>(obligations));
    delta.set_breach_rate(rate);
    AddAccountability(added, &delta);
    v1::LedgerEvent e = NewEvent(v1::FINDING_UPDATED, t);
    *e.mutable_finding() = std::move(delta);
    Emit(events, std::move(e));
  } else if (w.open) {
    v1::Finding closed;
    closed.set_finding_id(w.open->finding_id());
    closed.set_service_id(service_id);
    closed.set_duty_id(duty_id);
    closed.set_status("closed");
    SetTime(closed.mutable_closed_at(), t);
    v1::LedgerEvent e = NewEvent(v1::FINDING_CLOSED, t);
    *e.mutable_finding() = std::move(closed);
    Emit(events, std::move(e));
  } else {
    w.pending.clear();  // nothing open to grow
  }
}

void DutyEngine::AddAccountability(const std::vector<std::string>& ids, v1::Finding* f) const {
  for (const std::string& id : ids) {
    auto it = obligations_.find(id);
    if (it == obligations_.end()) continue;
    int64_t at = it->second.breach_at;
    bool anyone = false;
    for (const rules::Accountability& a : accountability_) {
      if (a.service_id != f->service_id() || !a.CoversDuty(f->duty_id())) continue;
      if (at < a.from || (a.to && at >= *a.to)) continue;
      anyone = true;
      v1::AccountablePerson* p = nullptr;
      for (auto& x : *f->mutable_accountable()) {
        if (x.name() == a.name && x.role() == a.role) p = &x;
      }
      if (!p) {
        p = f->add_accountable();
        p->set_name(a.name);
        p->set_role(a.role);
      }
      p->set_breaches(p->breaches() + 1);
      p->add_obligation_ids(id);
    }
    if (!anyone) f->set_unattributed_breaches(f->unattributed_breaches() + 1);
  }
}

std::optional<int64_t> DutyEngine::NextDeadline() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
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
