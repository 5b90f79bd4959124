#include "engine/signals/signals.h"

#include <algorithm>
#include <chrono>

#include "engine/ledger/derive.h"
#include "engine/ledger/keys.h"
#include "engine/rules/duration.h"
#include "engine/rules/vocabulary.h"
#include "engine/signals/canonical.h"

namespace carewatch::signals {
namespace {

constexpr const char* kKeyInfo = "carewatch signals v1";
constexpr size_t kMaxAlertReports = 100;  // an alert names at most this many own reports

std::string UtcDay(int64_t t) { return rules::FormatDate(t); }

void SetTime(google::protobuf::Timestamp* ts, int64_t seconds) {
  ts->set_seconds(seconds);
  ts->set_nanos(0);
}

}  // namespace

SignalEngine::SignalEngine(ledger::Ledger* ledger, duty::DutyEngine* duties, SignalOptions options)
    : ledger_(ledger), duties_(duties), options_(std::move(options)) {
  options_.min_services = std::max(options_.min_services, 2);
  sharing_.insert(options_.name_sharing.begin(), options_.name_sharing.end());
}

int64_t SignalEngine::Now() const {
  if (options_.now) return options_.now();
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

v1::LedgerEvent SignalEngine::NewEvent(v1::EventType type) const {
  v1::LedgerEvent e;
  e.set_type(type);
  e.set_format(ledger::kTwoClockFormat);
  const int64_t now = Now();
  SetTime(e.mutable_time(), now);
  SetTime(e.mutable_recorded_at(), now);
  return e;
}

Status SignalEngine::Open() {
  std::string seed;
  if (Status s = ledger::LoadOrCreateHmacKey(options_.key_path, &seed); !s.ok())
    return Status::InvalidArgument("signals_key: " + s.message());
  Element pk;
  if (Status s = DeriveKeyPair(seed, kKeyInfo, &key_, &pk); !s.ok()) return s;
  // Alerts whose review obligation a crash left unopened (OpenReview is
  // idempotent), newest window only.
  ledger::AlertQuery q;
  q.status = "open";
  q.delivered_from = Now() - options_.window_seconds;
  q.limit = 1000;
  for (;;) {
    std::vector<ledger::AlertRecord> page;
    if (Status s = ledger_->backend().QueryAlerts(q, &page); !s.ok()) return s;
    for (const auto& r : page) {
      q.after_seq = r.alert.cursor();
      ledger::ReportIndexRow row;
      bool found = false;
      if (Status s = ledger_->backend().LookupReport(r.alert.service_id(),
                                                     r.alert.review_report_id(), &row, &found);
          !s.ok())
        return s;
      if (!found) {
        if (Status s = OpenReview(r.alert, r.delivered_at); !s.ok()) return s;
      }
    }
    if (page.size() < q.limit) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  alert_cursor_ = ledger_->size();
  return Status::Ok();
}

std::string SignalEngine::AlertId(const std::string& service_id, const std::string& kind,
                                  const std::string& token, int64_t first_seen) const {
  std::string data = "linkage-alert";
  for (const std::string* part : {&service_id, &kind, &token}) {
    data += '\0';
    data += *part;
  }
  data += '\0';
  data += std::to_string(first_seen);
  return ledger::HmacSha256Hex(options_.hmac_key, data).substr(0, 32);
}

Status SignalEngine::Commit(std::vector<v1::LedgerEvent>* events, ledger::BatchExtras extras,
                            std::unique_lock<std::mutex>& lock) {
  auto ticket = ledger_->Enqueue(events, std::move(extras));
  lock.unlock();
  Status s = ticket->Wait();
  lock.lock();
  return s;
}

Status SignalEngine::BlindEvaluate(const std::string& service_id, const std::string& principal,
                                   const std::vector<std::string>& blinded,
                                   std::vector<std::string>* evaluated, int64_t* remaining) {
  evaluated->clear();
  for (size_t i = 0; i < blinded.size(); ++i) {
    Element out;
    Status s = signals::BlindEvaluate(key_, blinded[i], &out);
    if (!s.ok())
      return Status::InvalidArgument("blinded_elements[" + std::to_string(i) + "]: " + s.message());
    evaluated->emplace_back(reinterpret_cast<const char*>(out.data()), out.size());
  }
  const int64_t n = static_cast<int64_t>(blinded.size());
  const std::string day = UtcDay(Now());
  const auto key = std::make_pair(service_id, day);
  std::unique_lock<std::mutex> lock(mu_);
  int64_t used = 0;
  if (Status s = ledger_->backend().ReadSignalQuota(service_id, day, &used); !s.ok()) return s;
  used += pending_quota_[key];
  if (used + n > options_.daily_quota) {
    evaluated->clear();
    return Status::ResourceExhausted(
        "signals quota: service " + service_id + " has had " + std::to_string(used) + " of " +
        std::to_string(options_.daily_quota) + " blinded elements evaluated today (UTC); " +
        std::to_string(n) + " more would exceed it");
  }
  std::vector<v1::LedgerEvent> events(1, NewEvent(v1::SIGNAL_EVALUATION));
  auto* ev = events[0].mutable_signal_evaluation();
  ev->set_service_id(service_id);
  ev->set_principal(principal);
  ev->set_elements(static_cast<int32_t>(n));
  pending_quota_[key] += n;
  Status s = Commit(&events, {}, lock);
  if ((pending_quota_[key] -= n) == 0) pending_quota_.erase(key);
  if (!s.ok()) {
    evaluated->clear();
    return s;
  }
  *remaining = options_.daily_quota - used - n;
  return Status::Ok();
}

Status SignalEngine::TokenOf(const std::string& kind, const std::string& value,
                             std::string* token) const {
  return TokenKey(key_).TokenOf(kind, value, token);
}

Status SignalEngine::Submit(const std::string& service_id, const std::string& report_id,
                            const std::vector<SignalInput>& signals,
                            std::vector<v1::LinkageAlert>* own_alerts) {
  for (size_t i = 0; i < signals.size(); ++i) {
    const SignalInput& in = signals[i];
    const std::string at = "signals[" + std::to_string(i) + "]";
    if (!IsIdentifierKind(in.kind))
      return Status::InvalidArgument(at + ".kind: '" + in.kind +
                                     "' is not one of email, phone, handle, profile_url");
    if (in.token.size() != kOutputSize)
      return Status::InvalidArgument(at + ".token: " + std::to_string(in.token.size()) +
                                     " bytes, not the 64 of an OPRF output");
  }
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t now = Now();
  const int64_t since = now - options_.window_seconds;
  std::vector<v1::LedgerEvent> events;
  ledger::BatchExtras extras;
  std::vector<std::pair<v1::LinkageAlert, bool>> delivered;  // (alert, new)
  std::set<std::pair<std::string, std::string>> done;        // (kind, token) in this call
  for (const SignalInput& in : signals) {
    extras.signals.push_back({in.kind, in.token, service_id, report_id, in.category, now});
    if (!done.insert({in.kind, in.token}).second) continue;
  }
  for (const auto& [kind, token] : done) {
    std::vector<ledger::SignalRow> rows;
    if (Status s = ledger_->backend().LookupSignals(kind, token, since, &rows); !s.ok()) return s;
    auto range = pending_signals_.equal_range({kind, token});
    for (auto it = range.first; it != range.second; ++it)
      if (it->second.recorded_at >= since) rows.push_back(it->second);
    for (const auto& r : extras.signals)
      if (r.kind == kind && r.token == token) rows.push_back(r);
    std::map<std::string, std::vector<const ledger::SignalRow*>> by_service;
    std::set<std::string> categories;
    int64_t first_seen = now;
    for (const auto& r : rows) {
      by_service[r.service_id].push_back(&r);
      if (!r.category.empty()) categories.insert(r.category);
      first_seen = std::min(first_seen, r.recorded_at);
    }
    if (by_service.size() < static_cast<size_t>(options_.min_services)) continue;
    // The open alerts of this token, by service.
    std::vector<ledger::AlertTokenRow> alert_rows;
    if (Status s = ledger_->backend().AlertsOfToken(kind, token, &alert_rows); !s.ok()) return s;
    for (const auto& a : pending_alerts_)
      if (a.kind == kind && a.token == token) alert_rows.push_back(a);
    // Each service's open alert for this token, read once: a pending one
    // (being written by a call in flight) counts, as it will stand.
    std::map<std::string, v1::LinkageAlert> open_alerts;
    for (const auto& a : alert_rows) {
      if (a.recorded_at < since || !by_service.count(a.service_id)) continue;
      auto held = pending_bodies_.find(a.alert_id);
      if (held != pending_bodies_.end()) {
        open_alerts[a.service_id] = held->second.second;
        continue;
      }
      std::vector<ledger::AlertRecord> rec;
      ledger::AlertQuery q;
      q.alert_id = a.alert_id;
      q.service_id = a.service_id;
      q.status = "open";
      q.limit = 1;
      if (Status s = ledger_->backend().QueryAlerts(q, &rec); !s.ok()) return s;
      if (!rec.empty()) open_alerts[a.service_id] = rec[0].alert;
    }
    for (const auto& [service, own] : by_service) {
      auto found = open_alerts.find(service);
      const bool exists = found != open_alerts.end();
      const v1::LinkageAlert previous = exists ? found->second : v1::LinkageAlert();
      v1::LinkageAlert alert;
      alert.set_alert_id(exists ? previous.alert_id() : AlertId(service, kind, token, now));
      alert.set_service_id(service);
      // An open alert only grows: what it said stays when the window moves
      // past the signals that first raised it, so that it is delivered again
      // only when a report of its own or another service is added
      // (docs/signals.md).
      std::set<std::string> report_ids(previous.report_ids().begin(),
                                        previous.report_ids().end());
      if (report_ids.size() < kMaxAlertReports) {
        for (const auto* r : own) report_ids.insert(r->report_id);
      }
      for (const auto& id : report_ids) {
        if (alert.report_ids_size() >= static_cast<int>(kMaxAlertReports)) break;
        alert.add_report_ids(id);
      }
      alert.set_token_kind(kind);
      std::set<std::string> all_categories = categories;
      all_categories.insert(previous.categories().begin(), previous.categories().end());
      for (const auto& c : all_categories) alert.add_categories(c);
      alert.set_other_services(
          std::max(previous.other_services(), static_cast<int32_t>(by_service.size() - 1)));
      if (sharing_.count(service)) {
        std::set<std::string> names;  // names stay only while both still share them
        for (const auto& n : previous.other_service_ids())
          if (sharing_.count(n)) names.insert(n);
        for (const auto& [other, unused] : by_service)
          if (other != service && sharing_.count(other)) names.insert(other);
        for (const auto& n : names) alert.add_other_service_ids(n);
      }
      SetTime(alert.mutable_first_seen(),
              exists && previous.first_seen().seconds() < first_seen
                  ? previous.first_seen().seconds()
                  : first_seen);
      SetTime(alert.mutable_last_seen(), now);
      alert.set_status("open");
      alert.set_review_report_id(std::string(ledger::kLinkageReportPrefix) + alert.alert_id());
      // An existing alert is delivered again only when what it says changed
      // beyond its last_seen: a new report of its own, or more services.
      if (exists) {
        v1::LinkageAlert a = alert, b = previous;
        for (auto* x : {&a, &b}) {
          x->clear_last_seen();
          x->clear_cursor();
          x->clear_feedback();
        }
        if (a.SerializeAsString() == b.SerializeAsString()) continue;
        alert.set_feedback(previous.feedback());
      }
      v1::LedgerEvent e = NewEvent(v1::LINKAGE_DETECTED);
      *e.mutable_linkage_alert() = alert;
      events.push_back(std::move(e));
      if (!exists) extras.alert_tokens.push_back({alert.alert_id(), service, kind, token, now});
      delivered.emplace_back(alert, !exists);
    }
  }
  // What this call writes is visible to linkage until it is durable.
  std::vector<std::multimap<std::pair<std::string, std::string>, ledger::SignalRow>::iterator> mine;
  for (const auto& r : extras.signals)
    mine.push_back(pending_signals_.emplace(std::make_pair(r.kind, r.token), r));
  pending_alerts_.insert(pending_alerts_.end(), extras.alert_tokens.begin(),
                         extras.alert_tokens.end());
  std::vector<ledger::AlertTokenRow> my_alerts = extras.alert_tokens;
  for (const auto& [alert, is_new] : delivered) {
    auto& held = pending_bodies_[alert.alert_id()];
    ++held.first;
    held.second = alert;
  }
  Status s = Commit(&events, std::move(extras), lock);
  for (const auto& [alert, is_new] : delivered) {
    auto it = pending_bodies_.find(alert.alert_id());
    if (--it->second.first == 0) pending_bodies_.erase(it);
  }
  for (auto it : mine) pending_signals_.erase(it);
  for (const auto& a : my_alerts) {
    auto it = std::find_if(pending_alerts_.begin(), pending_alerts_.end(),
                           [&](const auto& p) { return p.alert_id == a.alert_id; });
    if (it != pending_alerts_.end()) pending_alerts_.erase(it);
  }
  if (!s.ok()) return s;
  if (!events.empty()) {
    alert_cursor_ = std::max(alert_cursor_, events.back().seq());
    alerts_cv_.notify_all();
  }
  lock.unlock();
  // The review obligations of new alerts, queued together so that they
  // share a commit; answered once all are durable.
  std::vector<std::unique_ptr<duty::DutyEngine::Pending>> reviews;
  Status result;
  for (size_t i = 0; i < delivered.size(); ++i) {
    auto& [alert, is_new] = delivered[i];
    alert.set_cursor(events[i].seq());
    if (is_new && result.ok()) {
      reviews.push_back(std::make_unique<duty::DutyEngine::Pending>());
      result = OpenReview(alert, now, reviews.back().get());
    }
    if (own_alerts && alert.service_id() == service_id) own_alerts->push_back(alert);
  }
  for (auto& p : reviews) {
    Status w = p->Wait();
    if (result.ok()) result = w;
  }
  return result;
}

Status SignalEngine::OpenReview(const v1::LinkageAlert& alert, int64_t delivered_at,
                                duty::DutyEngine::Pending* pending) {
  // The review obligation is an ordinary obligation: a report only carewatch
  // makes, which the packs' rules on reason `linkage_alert` flag. Its content
  // is fixed at delivery, so opening it again is an idempotent retry.
  v1::ContentReport r;
  r.set_report_id(alert.review_report_id());
  r.set_service_id(alert.service_id());
  SetTime(r.mutable_received_at(), delivered_at);
  r.set_surface("cross_platform");
  r.set_content_type("account");
  r.set_reporter_type("carewatch");
  r.set_reason("linkage_alert");
  (*r.mutable_attributes())["linkage.token_kind"] = alert.token_kind();
  v1::Verdict verdict;
  Status s = duties_->SubmitReport(r, &verdict, pending);
  if (s.code() == Status::Code::kAlreadyExists) return Status::Ok();
  return s;
}

Status TokenKey::Load(const std::string& path) {
  std::string seed;
  if (Status s = ledger::LoadOrCreateHmacKey(path, &seed); !s.ok())
    return Status::InvalidArgument("signals_key: " + s.message());
  Element pk;
  return DeriveKeyPair(seed, kKeyInfo, &key_, &pk);
}

Status TokenKey::TokenOf(const std::string& kind, const std::string& value,
                         std::string* token) const {
  std::string canonical;
  if (Status s = Canonicalize(kind, value, &canonical); !s.ok()) return s;
  return Evaluate(key_, TokenInput(kind, canonical), token);
}

Status TokenKey::Linked(const v1::ContentReport& report, const v1::Verdict& verdict,
                        const std::vector<std::pair<std::string, std::string>>& extracted,
                        std::vector<std::pair<std::string, std::string>>* out) const {
  if (verdict.flags_size() == 0) return Status::Ok();
  for (const auto& id : report.linked_identifiers()) {
    std::string token;
    if (Status s = TokenOf(id.kind(), id.value(), &token); !s.ok()) return s;
    out->emplace_back(id.kind(), std::move(token));
  }
  for (const auto& [kind, value] : extracted) {
    std::string token;
    if (!TokenOf(kind, value, &token).ok()) continue;
    out->emplace_back(kind, std::move(token));
  }
  return Status::Ok();
}

Status SignalEngine::SubmitLinked(
    const v1::ContentReport& report, const v1::Verdict& verdict,
    const std::vector<std::pair<std::string, std::string>>& extracted) {
  if ((report.linked_identifiers_size() == 0 && extracted.empty()) || verdict.flags_size() == 0)
    return Status::Ok();
  std::vector<std::pair<std::string, std::string>> tokens;
  if (Status s = TokenKey(key_).Linked(report, verdict, extracted, &tokens); !s.ok()) return s;
  return SubmitLinkedTokens(report.service_id(), report.report_id(), verdict, tokens);
}

Status SignalEngine::SubmitLinkedTokens(
    const std::string& service_id, const std::string& report_id, const v1::Verdict& verdict,
    const std::vector<std::pair<std::string, std::string>>& tokens) {
  if (tokens.empty() || verdict.flags_size() == 0) return Status::Ok();
  std::set<std::string> duties;
  for (const auto& f : verdict.flags()) duties.insert(f.duty_id());
  std::vector<SignalInput> signals;
  for (const auto& [kind, token] : tokens) {
    for (const auto& d : duties) signals.push_back({kind, token, d});
  }
  return Submit(service_id, report_id, signals, nullptr);
}

Status SignalEngine::ListAlerts(const ledger::AlertQuery& q, std::vector<v1::LinkageAlert>* out) {
  std::vector<ledger::AlertRecord> rows;
  if (Status s = ledger_->backend().QueryAlerts(q, &rows); !s.ok()) return s;
  for (auto& r : rows) out->push_back(std::move(r.alert));
  return Status::Ok();
}

Status SignalEngine::Feedback(const std::string& service_id, const std::string& alert_id,
                              const std::string& opinion, const std::string& actor,
                              int64_t taken_at, v1::LinkageAlert* alert,
                              std::vector<v1::Obligation>* obligations) {
  if (opinion != "confirmed" && opinion != "not_related" && opinion != "disputed")
    return Status::InvalidArgument("opinion: '" + opinion +
                                   "' is not one of confirmed, not_related, disputed");
  ledger::AlertQuery q;
  q.alert_id = alert_id;
  q.service_id = service_id;
  q.limit = 1;
  std::vector<ledger::AlertRecord> rows;
  if (Status s = ledger_->backend().QueryAlerts(q, &rows); !s.ok()) return s;
  if (rows.empty()) return Status::NotFound("service " + service_id + " has no alert " + alert_id);
  std::vector<v1::LedgerEvent> events(1, NewEvent(v1::LINKAGE_FEEDBACK));
  auto* f = events[0].mutable_linkage_feedback();
  f->set_alert_id(alert_id);
  f->set_service_id(service_id);
  f->set_opinion(opinion);
  f->set_actor(actor);
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (Status s = Commit(&events, {}, lock); !s.ok()) return s;
    alert_cursor_ = std::max(alert_cursor_, events[0].seq());
    alerts_cv_.notify_all();
  }
  duty::ActionInput in;
  in.service_id = service_id;
  in.report_id = rows[0].alert.review_report_id();
  in.action = ledger::kReviewAction;
  in.taken_at = taken_at > 0 ? taken_at : Now();
  in.actor = actor;
  if (Status s = duties_->RecordAction(in, obligations); !s.ok()) return s;
  *alert = rows[0].alert;
  alert->set_feedback(opinion);
  alert->set_cursor(events[0].seq());
  return Status::Ok();
}

Status SignalEngine::Withdraw(const std::string& service_id, const std::string& report_id,
                              const std::string& actor, int* signals, int* alerts_withdrawn) {
  *signals = 0;
  *alerts_withdrawn = 0;
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<ledger::SignalRow> mine;
  if (Status s = ledger_->backend().SignalsOfReport(service_id, report_id, &mine); !s.ok())
    return s;
  if (mine.empty()) return Status::Ok();
  const int64_t now = Now();
  const int64_t since = now - options_.window_seconds;
  std::set<std::pair<std::string, std::string>> tokens;
  for (const auto& r : mine) tokens.insert({r.kind, r.token});
  std::vector<v1::LedgerEvent> events(1, NewEvent(v1::SIGNALS_WITHDRAWN));
  auto* w = events[0].mutable_signals_withdrawn();
  w->set_service_id(service_id);
  w->set_report_id(report_id);
  w->set_tokens(static_cast<int32_t>(mine.size()));
  w->set_actor(actor);
  std::vector<v1::LinkageAlert> withdrawn;
  for (const auto& [kind, token] : tokens) {
    std::vector<ledger::SignalRow> rows;
    if (Status s = ledger_->backend().LookupSignals(kind, token, since, &rows); !s.ok()) return s;
    std::set<std::string> left;  // services whose signals still stand
    for (const auto& r : rows)
      if (!(r.service_id == service_id && r.report_id == report_id)) left.insert(r.service_id);
    std::vector<ledger::AlertTokenRow> alert_rows;
    if (Status s = ledger_->backend().AlertsOfToken(kind, token, &alert_rows); !s.ok()) return s;
    for (const auto& a : alert_rows) {
      const bool stands =
          left.count(a.service_id) > 0 && left.size() >= static_cast<size_t>(options_.min_services);
      if (stands) continue;
      std::vector<ledger::AlertRecord> rec;
      ledger::AlertQuery q;
      q.alert_id = a.alert_id;
      q.status = "open";
      q.limit = 1;
      if (Status s = ledger_->backend().QueryAlerts(q, &rec); !s.ok()) return s;
      if (rec.empty()) continue;
      v1::LedgerEvent e = NewEvent(v1::LINKAGE_WITHDRAWN);
      auto* lw = e.mutable_linkage_withdrawn();
      lw->set_alert_id(a.alert_id);
      lw->set_service_id(a.service_id);
      lw->set_reason(a.service_id == service_id ? "the service withdrew its own signals"
                                                : "signals were withdrawn; fewer than " +
                                                      std::to_string(options_.min_services) +
                                                      " services hold the identifier");
      events.push_back(std::move(e));
      withdrawn.push_back(rec[0].alert);
    }
  }
  ledger::BatchExtras extras;
  extras.withdraw_signals.emplace_back(service_id, report_id);
  if (Status s = Commit(&events, std::move(extras), lock); !s.ok()) return s;
  alert_cursor_ = std::max(alert_cursor_, events.back().seq());
  alerts_cv_.notify_all();
  lock.unlock();
  *signals = static_cast<int>(mine.size());
  for (const auto& a : withdrawn) {
    if (a.service_id() == service_id) ++*alerts_withdrawn;
    duty::ActionInput in;
    in.service_id = a.service_id();
    in.report_id = a.review_report_id();
    in.action = rules::kLinkWithdrawn;
    in.taken_at = now;
    in.actor = "carewatch";
    std::vector<v1::Obligation> obligations;
    if (Status s = duties_->RecordAction(in, &obligations); !s.ok()) return s;
  }
  return Status::Ok();
}

Status SignalEngine::Prune() {
  ledger::BatchExtras extras;
  extras.prune_signals_before = Now() - options_.retention_seconds;
  std::vector<v1::LedgerEvent> none;
  return ledger_->Enqueue(&none, std::move(extras))->Wait();
}

uint64_t SignalEngine::WaitForAlerts(uint64_t seq, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  alerts_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return alert_cursor_ > seq; });
  return alert_cursor_;
}

}  // namespace carewatch::signals
