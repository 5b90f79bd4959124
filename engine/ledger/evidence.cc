#include "engine/ledger/evidence.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "engine/common/digest.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/merkle.h"
#include "engine/rules/duration.h"
#include "engine/rules/ruleset.h"

namespace carewatch::ledger {

namespace {

Status ReadOne(LedgerBackend& backend, uint64_t seq, v1::LedgerEvent* out) {
  std::vector<StoredEvent> rows;
  Status s = backend.ReadEvents(seq, 1, &rows);
  if (!s.ok()) return s;
  if (rows.empty() || rows[0].seq != seq || !out->ParseFromString(rows[0].payload)) {
    return Status::DataLoss("event " + std::to_string(seq) + " is missing or corrupt");
  }
  return Status::Ok();
}

bool IsGrowth(v1::EventType t) { return t == v1::FINDING_OPENED || t == v1::FINDING_UPDATED; }

}  // namespace

Status EvidenceSeqs(LedgerBackend& backend, const v1::Finding& finding,
                    std::vector<uint64_t>* seqs) {
  std::set<uint64_t> out;
  std::vector<uint64_t> list;
  Status s = backend.FindingEvents(finding.finding_id(), &list);
  if (!s.ok()) return s;
  if (list.empty()) return Status::NotFound("no events for finding " + finding.finding_id());
  uint64_t last_growth = 0;
  v1::Finding at_growth;
  int64_t first_window_start = INT64_MAX;
  for (uint64_t seq : list) {
    v1::LedgerEvent e;
    s = ReadOne(backend, seq, &e);
    if (!s.ok()) return s;
    out.insert(seq);
    if (IsGrowth(e.type())) {
      first_window_start = std::min(first_window_start, e.finding().window_start().seconds());
      if (seq > last_growth) {
        last_growth = seq;
        at_growth = e.finding();
      }
    }
  }
  for (const std::string& ob : finding.obligation_ids()) {
    list.clear();
    s = backend.EventsForObligation(ob, &list);
    if (!s.ok()) return s;
    out.insert(list.begin(), list.end());
  }
  if (last_growth > 0) {
    list.clear();
    // Every window the finding was evaluated over, from the first to the
    // last: the breach rate can be recounted at any point of its life.
    s = backend.DenominatorEvents(finding.service_id(), finding.duty_id(), first_window_start,
                                  at_growth.window_end().seconds(), last_growth, &list);
    if (!s.ok()) return s;
    out.insert(list.begin(), list.end());
    list.clear();
    s = backend.EventsOfType(v1::ACCOUNTABILITY_CHANGED, last_growth, &list);
    if (!s.ok()) return s;
    out.insert(list.begin(), list.end());
    list.clear();
    s = backend.EventsOfType(v1::RULESET_ACTIVATED, last_growth, &list);
    if (!s.ok()) return s;
    if (!list.empty()) out.insert(list.back());
  }
  seqs->assign(out.begin(), out.end());
  return Status::Ok();
}

namespace {

BundleReport Fail(BundleReport r, std::string message) {
  r.ok = false;
  r.message = std::move(message);
  return r;
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// Compares one field of the finding as stated with the one recomputed.
template <typename T>
bool Same(const char* field, const T& stated, const T& recomputed, std::string* why) {
  if (stated == recomputed) return true;
  std::ostringstream os;
  os << "finding " << field << ": the bundle states " << stated << ", the events give "
     << recomputed;
  *why = os.str();
  return false;
}

}  // namespace

BundleReport VerifyBundle(const v1::EvidenceBundle& bundle, const TrustedKey& key) {
  BundleReport r;
  if (bundle.format() != 1) {
    return Fail(r, "bundle format " + std::to_string(bundle.format()) +
                       " is not one this verifier reads (1)");
  }
  // 1. The checkpoint is signed by the trusted key.
  CheckpointText cp;
  Status s = key.OpenCheckpoint(bundle.checkpoint_note(), &cp);
  if (!s.ok()) {
    const std::string& m = s.message();
    return Fail(r, m.rfind("checkpoint", 0) == 0 ? m : "checkpoint " + m);
  }
  r.checked.push_back("checkpoint note of " + cp.origin + " at size " +
                      std::to_string(cp.tree_size) + " signed by the trusted key");

  // 2. Every entry is in that tree, byte for byte.
  std::map<uint64_t, v1::LedgerEvent> events;
  for (const v1::BundleEntry& e : bundle.entries()) {
    const std::string at = "entry seq " + std::to_string(e.seq());
    if (e.seq() == 0 || e.seq() > cp.tree_size)
      return Fail(r, at + ": outside the checkpoint's tree");
    std::vector<Hash> proof(e.inclusion_proof().begin(), e.inclusion_proof().end());
    if (!VerifyInclusion(LeafHash(e.event_bytes()), e.seq() - 1, cp.tree_size, proof,
                         cp.root_hash)) {
      return Fail(r, at + ": inclusion proof does not verify against the checkpoint (the event "
                          "bytes or the proof were altered)");
    }
    v1::LedgerEvent parsed;
    if (!parsed.ParseFromString(e.event_bytes()) || parsed.seq() != e.seq()) {
      return Fail(r, at + ": the event does not parse as the event at that seq");
    }
    events[e.seq()] = std::move(parsed);
  }
  r.entries = events.size();
  r.checked.push_back(std::to_string(events.size()) +
                      " events: leaf hashes and inclusion proofs verify");

  // 3. The finding, rebuilt from its own events.
  const v1::Finding& stated = bundle.finding();
  v1::Finding rebuilt;
  uint64_t last_growth = 0;
  std::map<std::string, uint64_t> added_by;  // obligation id -> finding event that added it
  for (const auto& [seq, e] : events) {
    if (!e.has_finding() || e.finding().finding_id() != stated.finding_id()) continue;
    ApplyFindingEvent(e.type(), e.finding(), &rebuilt);
    if (IsGrowth(e.type())) last_growth = seq;
    for (const std::string& id : e.finding().obligation_ids()) added_by.emplace(id, seq);
  }
  if (last_growth == 0) return Fail(r, "no FINDING_OPENED event of " + stated.finding_id());
  std::string why;
  std::set<std::string> stated_ids(stated.obligation_ids().begin(), stated.obligation_ids().end());
  std::set<std::string> rebuilt_ids(rebuilt.obligation_ids().begin(),
                                    rebuilt.obligation_ids().end());
  if (!Same("status", stated.status(), rebuilt.status(), &why) ||
      !Same("opened_at", stated.opened_at().seconds(), rebuilt.opened_at().seconds(), &why) ||
      !Same("closed_at", stated.closed_at().seconds(), rebuilt.closed_at().seconds(), &why) ||
      !Same("breaches", stated.breaches(), rebuilt.breaches(), &why) ||
      !Same("obligations", stated.obligations(), rebuilt.obligations(), &why) ||
      !Same("window_breaches", stated.window_breaches(), rebuilt.window_breaches(), &why) ||
      !Same("breach_rate", Num(stated.breach_rate()), Num(rebuilt.breach_rate()), &why) ||
      !Same("breaches_missed", stated.breaches_missed(), rebuilt.breaches_missed(), &why) ||
      !Same("breaches_late", stated.breaches_late(), rebuilt.breaches_late(), &why) ||
      !Same("breaches_late_recorded", stated.breaches_late_recorded(),
            rebuilt.breaches_late_recorded(), &why) ||
      !Same("unattributed_breaches", stated.unattributed_breaches(),
            rebuilt.unattributed_breaches(), &why) ||
      !Same("obligation_ids", stated_ids.size(), rebuilt_ids.size(), &why)) {
    return Fail(r, why);
  }
  if (stated_ids != rebuilt_ids)
    return Fail(r, "finding obligation_ids: the bundle names obligations its events do not");
  r.checked.push_back("the finding as stated equals the one its " +
                      std::string("FINDING_* events record"));

  // 4. Each of its breaches is in the log, of this service and duty; kinds.
  std::map<std::string, const v1::Breach*> breach_of;
  std::map<std::string, uint64_t> decided_at;  // obligation id -> first deciding event
  std::map<std::string, const v1::ObligationOpened*> opened;
  for (const auto& [seq, e] : events) {
    std::string id;
    if (e.has_breach()) {
      id = e.breach().obligation_id();
      breach_of.emplace(id, &e.breach());
    } else if (e.has_obligation_closed()) {
      id = e.obligation_closed().obligation_id();
    } else if (e.has_obligation_opened()) {
      opened.emplace(e.obligation_opened().obligation().obligation_id(), &e.obligation_opened());
    }
    if (!id.empty()) decided_at.emplace(id, seq);
  }
  int missed = 0, late = 0, late_recorded = 0;
  for (const std::string& id : rebuilt_ids) {
    auto b = breach_of.find(id);
    if (b == breach_of.end())
      return Fail(r, "the breach of obligation " + id + " is not among the bundle's events");
    if (b->second->service_id() != stated.service_id() || b->second->duty_id() != stated.duty_id())
      return Fail(r, "the breach of obligation " + id + " is of another service or duty");
    const std::string& kind = b->second->kind();
    (kind == "late" ? late : kind == "late_recorded" ? late_recorded : missed)++;
  }
  if (!Same("breaches_missed (from the breaches)", stated.breaches_missed(), missed, &why) ||
      !Same("breaches_late (from the breaches)", stated.breaches_late(), late, &why) ||
      !Same("breaches_late_recorded (from the breaches)", stated.breaches_late_recorded(),
            late_recorded, &why)) {
    return Fail(r, why);
  }
  r.checked.push_back(std::to_string(rebuilt_ids.size()) +
                      " breaches present, of this service and duty, counted by kind");

  // 5. The window at the last update: obligations due and breached, rate.
  const v1::Finding& window = events[last_growth].finding();
  int64_t start = window.window_start().seconds(), end = window.window_end().seconds();
  int due = 0, breached = 0;
  for (const auto& [id, o] : opened) {
    if (o->service_id() != stated.service_id() || o->obligation().duty_id() != stated.duty_id())
      continue;
    int64_t deadline = o->obligation().deadline().seconds();
    if (deadline <= start || deadline > end) continue;
    auto d = decided_at.find(id);
    if (d == decided_at.end() || d->second >= last_growth) continue;
    ++due;
    if (events[d->second].has_breach()) ++breached;
  }
  if (stated.has_thresholds()) {
    double rate = due > 0 ? static_cast<double>(breached) / due : 0.0;
    if (!Same("obligations due in the window", window.obligations(), due, &why) ||
        !Same("breaches in the window", window.window_breaches(), breached, &why) ||
        !Same("breach_rate", Num(window.breach_rate()), Num(rate), &why)) {
      return Fail(r, why + " (window " + rules::FormatDateTime(start) + ".." +
                         rules::FormatDateTime(end) + ")");
    }
    r.checked.push_back(std::to_string(breached) + " breaches of " + std::to_string(due) +
                        " obligations due in the window, recounted from the events");

    // 6. The thresholds are the duty's, as the rule set in force says.
    const v1::RulesetActivated* activation = nullptr;
    for (const auto& [seq, e] : events) {
      if (seq < last_growth && e.has_ruleset_activated()) activation = &e.ruleset_activated();
    }
    const v1::DutyTerms* terms = nullptr;
    for (int i = 0; activation && i < activation->duties_size(); ++i) {
      if (activation->duties(i).id() == stated.duty_id()) terms = &activation->duties(i);
    }
    if (terms) {
      const v1::SystemicThresholds& t = stated.thresholds();
      if (!terms->has_systemic() ||
          !Same("thresholds.window_seconds", t.window_seconds(), terms->systemic().window_seconds(),
                &why) ||
          !Same("thresholds.min_breaches", t.min_breaches(), terms->systemic().min_breaches(),
                &why) ||
          !Same("thresholds.min_breach_rate", Num(t.min_breach_rate()),
                Num(terms->systemic().min_breach_rate()), &why)) {
        return Fail(r, why.empty() ? "the rule set in force has no systemic test for the duty"
                                   : why + " (rule set " + activation->version() + ")");
      }
      r.checked.push_back("thresholds are those of rule set " + activation->version());
    } else {
      r.checked.push_back("thresholds not checked: the rule set in force predates duty terms");
    }
    if (breached < stated.thresholds().min_breaches() ||
        rate < stated.thresholds().min_breach_rate()) {
      return Fail(r, "the systemic condition does not hold at the last update: " +
                         std::to_string(breached) + " breaches, rate " + Num(rate));
    }
    r.checked.push_back("the systemic condition holds at the last update");
  } else {
    r.checked.push_back("window not recounted: the finding predates window counts");
  }

  // 7. Who was accountable for each breach, from the recorded tenures.
  std::vector<std::pair<uint64_t, rules::Accountability>> records;
  for (const auto& [seq, e] : events) {
    if (!e.has_accountability_changed()) continue;
    records.emplace_back(seq, AccountabilityFromEvent(e.accountability_changed()));
  }
  std::map<std::string, int> per_person;
  int unattributed = 0;
  for (const std::string& id : rebuilt_ids) {
    std::vector<rules::Accountability> known;
    for (const auto& [seq, a] : records) {
      if (seq < added_by[id]) known.push_back(a);
    }
    auto in_post = rules::AccountableFor(known, stated.service_id(), stated.duty_id(),
                                         breach_of[id]->at().seconds());
    if (in_post.empty()) ++unattributed;
    for (const rules::Accountability* a : in_post) {
      ++per_person[a->name + "\n" + a->role + "\n" + std::to_string(a->from)];
    }
  }
  if (!Same("unattributed_breaches (from the tenures)", stated.unattributed_breaches(),
            unattributed, &why)) {
    return Fail(r, why);
  }
  std::map<std::string, int> stated_people;
  for (const v1::AccountablePerson& p : stated.accountable()) {
    stated_people[p.name() + "\n" + p.role() + "\n" + std::to_string(p.tenure_from().seconds())] +=
        p.breaches();
  }
  if (stated_people != per_person) {
    std::string detail;
    for (const auto& [k, n] : per_person) {
      std::string name = k.substr(0, k.find('\n'));
      auto it = stated_people.find(k);
      int said = it == stated_people.end() ? 0 : it->second;
      if (said != n) {
        detail = name + ": the bundle states " + std::to_string(said) +
                 " breaches, the tenures give " + std::to_string(n);
        break;
      }
    }
    if (detail.empty()) detail = "the bundle names a person no recorded tenure covers";
    return Fail(r, "finding accountable: " + detail);
  }
  r.checked.push_back("each breach attributed to the person in post, from " +
                      std::to_string(records.size()) + " recorded tenures");
  r.ok = true;
  r.message = "evidence for " + stated.finding_id() + " verifies: " + std::to_string(r.entries) +
              " events in the log of " + cp.origin + " at size " + std::to_string(cp.tree_size);
  return r;
}

}  // namespace carewatch::ledger
