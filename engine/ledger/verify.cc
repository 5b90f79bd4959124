#include "engine/ledger/verify.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "engine/common/digest.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/derive.h"
#include "engine/ledger/note.h"

namespace carewatch::ledger {

namespace {

// What the tables the Audit RPCs answer from must hold, rebuilt from the
// events, and the check of the tables against it.
class DerivedRows {
 public:
  void Add(const v1::LedgerEvent& e) {
    if (e.has_recorded_at() && e.type() != v1::STATS_ROLLUP && e.type() != v1::AUDIT_ACCESS)
      clock_ = std::max(clock_, e.recorded_at().seconds());
    switch (e.payload_case()) {
      case v1::LedgerEvent::kBreach:
        breaches_[e.seq()] = e.breach().SerializeAsString();
        break;
      case v1::LedgerEvent::kFinding:
        ApplyFindingEvent(e.type(), e.finding(), &findings_[e.finding().finding_id()]);
        for (const std::string& id : e.finding().obligation_ids()) {
          auto it = obligations_.find(id);
          if (it != obligations_.end()) it->second.finding_id = e.finding().finding_id();
        }
        break;
      case v1::LedgerEvent::kReportFlagged:
        flagged_.push_back({e.report_flagged().service_id(), e.report_flagged().report_id(),
                            e.report_flagged().report_digest(), e.seq()});
        ++counters_["flagged"];
        break;
      case v1::LedgerEvent::kObligationOpened: {
        Obligation& o = obligations_[e.obligation_opened().obligation().obligation_id()];
        o.opened_seq = e.seq();
        o.deadline = e.obligation_opened().obligation().deadline().seconds();
        o.sweep_at = SweepAt(e);
        o.service_id = e.obligation_opened().service_id();
        o.duty_id = e.obligation_opened().obligation().duty_id();
        ++counters_["open"];
        break;
      }
      case v1::LedgerEvent::kActionRecorded:
        for (const std::string& id : e.action_recorded().obligation_ids()) {
          auto it = obligations_.find(id);
          if (it != obligations_.end()) ++it->second.actions;
        }
        break;
      default:
        break;
    }
    switch (e.payload_case()) {
      case v1::LedgerEvent::kObligationClosed:
      case v1::LedgerEvent::kBreach: {
        const std::string& id =
            e.has_breach() ? e.breach().obligation_id() : e.obligation_closed().obligation_id();
        auto it = obligations_.find(id);
        if (it == obligations_.end() || it->second.decided_seq) break;
        it->second.decided_seq = e.seq();
        it->second.status = e.has_breach()                   ? v1::OBLIGATION_STATUS_BREACHED
                            : e.type() == v1::OBLIGATION_MET ? v1::OBLIGATION_STATUS_MET
                                                             : v1::OBLIGATION_STATUS_DISCHARGED;
        if (e.has_breach()) it->second.breach_kind = e.breach().kind();
        --counters_["open"];
        ++counters_[e.has_breach()                   ? "breached"
                    : e.type() == v1::OBLIGATION_MET ? "met"
                                                     : "discharged"];
        break;
      }
      case v1::LedgerEvent::kStatsRollup:
        for (const v1::StatsCount& c : e.stats_rollup().counts()) {
          auto& x = stats_[{c.service_id(), c.day(), c.surface(), c.reason()}];
          x.first += c.reports();
          x.second += c.flagged();
        }
        break;
      default:
        break;
    }
  }

  // `why` empty when every table agrees with the log; else names the table
  // and the row.
  Status Check(LedgerBackend& b, std::string* why, uint64_t* bad_seq) {
    Status s = CheckBreaches(b, why, bad_seq);
    if (s.ok() && why->empty()) s = CheckFindings(b, why);
    if (s.ok() && why->empty()) s = CheckReports(b, why, bad_seq);
    if (s.ok() && why->empty()) s = CheckStats(b, why);
    if (s.ok() && why->empty()) s = CheckState(b, why, bad_seq);
    return s;
  }

 private:
  struct Obligation {
    uint64_t opened_seq = 0, decided_seq = 0;
    int64_t deadline = 0, sweep_at = 0;
    int status = v1::OBLIGATION_STATUS_OPEN;
    std::string breach_kind, finding_id;
    std::string service_id, duty_id;
    size_t actions = 0;
  };

  // The engine's state, which a restart resumes from: every obligation's
  // row and the running totals.
  Status CheckState(LedgerBackend& b, std::string* why, uint64_t* bad_seq) {
    std::vector<ObligationRow> rows;
    Status s = b.ReadOpenObligations(&rows);
    if (s.ok()) s = b.ReadDecidedObligations(INT64_MIN, &rows);
    if (!s.ok()) return s;
    std::map<std::string, const ObligationRow*> by_id;
    for (const ObligationRow& r : rows) by_id[r.obligation_id] = &r;
    for (const auto& [id, o] : obligations_) {
      auto it = by_id.find(id);
      const ObligationRow* r = it == by_id.end() ? nullptr : it->second;
      bool same = r && r->opened_seq == o.opened_seq && r->decided_seq == o.decided_seq &&
                  r->deadline == o.deadline && r->sweep_at == o.sweep_at && r->status == o.status &&
                  r->breach_kind == o.breach_kind && r->finding_id == o.finding_id &&
                  (o.decided_seq || r->actions.size() == o.actions);
      if (!same) {
        *bad_seq = o.decided_seq ? o.decided_seq : o.opened_seq;
        *why = "table obligations: the row of obligation " + id +
               (r ? " differs from its events (altered)" : " is missing (deleted)");
        return Status::Ok();
      }
    }
    for (const ObligationRow& r : rows) {
      if (!obligations_.count(r.obligation_id)) {
        *why = "table obligations: obligation " + r.obligation_id +
               " has no OBLIGATION_OPENED event (inserted)";
        return Status::Ok();
      }
    }
    std::map<std::string, int64_t> counters;
    int64_t clock = INT64_MIN;
    s = b.ReadCounters(&counters, &clock);
    if (!s.ok()) return s;
    // The systemic windows' counts by hour, which a restart reads instead
    // of the decided obligations. A ledger in which a carewatch from before
    // the table decided obligations holds fewer there, and says so in its
    // counters: its next writable open counts them again, so they are not
    // what a restart reads, and are not checked.
    const bool hours_current = counters[kWindowHoursCounter] ==
                               counters["met"] + counters["discharged"] + counters["breached"];
    std::map<std::tuple<int64_t, std::string, std::string>, int64_t> hours, stored;
    for (const auto& [id, o] : obligations_) {
      if (o.decided_seq)
        ++hours[{LedgerBackend::WindowHourOf(o.deadline), o.service_id, o.duty_id}];
    }
    if (hours_current) {
      s = b.EachWindowHour(INT64_MIN, [&](const LedgerBackend::WindowHourRow& r) {
        stored[{r.hour, std::string(r.service_id), std::string(r.duty_id)}] += r.decided;
      });
      if (!s.ok()) return s;
    }
    if (hours_current && hours != stored) {
      auto a = hours.begin();
      auto z = stored.begin();
      while (a != hours.end() && z != stored.end() && *a == *z) ++a, ++z;
      const auto& key =
          a != hours.end() && (z == stored.end() || a->first <= z->first) ? a->first : z->first;
      auto count = [&key](const auto& m) {
        auto it = m.find(key);
        return it == m.end() ? int64_t{0} : it->second;
      };
      *why = "table window_hours: the hour " + std::to_string(std::get<0>(key)) + " of service " +
             std::get<1>(key) + ", duty " + std::get<2>(key) + " counts " +
             std::to_string(count(stored)) + " decided obligations; the log gives " +
             std::to_string(count(hours));
      return Status::Ok();
    }
    std::map<std::string, int64_t> expected = counters_;
    for (const auto& [id, f] : findings_) expected["findings_open"] += f.status() == "open";
    // Every report, flagged or not, is counted once in the statistics too.
    std::vector<StatsRow> stats;
    s = b.QueryStats("", "0000-00-00", "9999-99-99", &stats);
    if (!s.ok()) return s;
    for (const StatsRow& r : stats) expected["reports"] += r.reports;
    for (const char* name : kCounterNames) {
      if (counters[name] != expected[name]) {
        *why = std::string("table counters: '") + name + "' is " + std::to_string(counters[name]) +
               ", the log and the statistics give " + std::to_string(expected[name]);
        return Status::Ok();
      }
    }
    if (clock != clock_) {
      *why = "table counters: 'clock' is " + std::to_string(clock) +
             ", the latest recorded_at in the log is " + std::to_string(clock_);
    }
    return Status::Ok();
  }

  Status CheckBreaches(LedgerBackend& backend, std::string* why, uint64_t* bad_seq) {
    BreachQuery q;
    q.limit = 10000;
    std::map<uint64_t, std::string> rows;
    for (;;) {
      std::vector<std::pair<uint64_t, v1::Breach>> page;
      Status s = backend.QueryBreaches(q, &page);
      if (!s.ok()) return s;
      for (auto& [seq, breach] : page) rows[seq] = breach.SerializeAsString();
      if (page.size() < q.limit) break;
      q.after_seq = page.back().first;
    }
    for (const auto& [seq, body] : breaches_) {
      auto it = rows.find(seq);
      if (it == rows.end() || it->second != body) {
        *bad_seq = seq;
        *why = "table breaches: the row of the DUTY_BREACHED event " + std::to_string(seq) +
               (it == rows.end() ? " is missing (deleted)" : " differs from the event (altered)");
        return Status::Ok();
      }
    }
    for (const auto& [seq, body] : rows) {
      if (!breaches_.count(seq)) {
        *bad_seq = seq;
        *why = "table breaches: a row claims seq " + std::to_string(seq) +
               ", which is no DUTY_BREACHED event (inserted)";
        return Status::Ok();
      }
    }
    // The columns queries filter on agree with the event: the row is found
    // by its own service, duty, rule and time.
    for (const auto& [seq, body] : breaches_) {
      v1::Breach b;
      b.ParseFromString(body);
      BreachQuery one;
      one.service_id = b.service_id();
      one.duty_id = b.duty_id();
      one.rule_id = b.rule_id();
      one.from = one.to = b.at().seconds();
      one.after_seq = seq - 1;
      one.limit = 1;
      std::vector<std::pair<uint64_t, v1::Breach>> found;
      Status s = backend.QueryBreaches(one, &found);
      if (!s.ok()) return s;
      if (found.empty() || found[0].first != seq) {
        *bad_seq = seq;
        *why = "table breaches: the row of the DUTY_BREACHED event " + std::to_string(seq) +
               " is not found by its own service, duty, rule and time (an indexed column was "
               "altered)";
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  static std::string Normal(v1::Finding f) {
    std::vector<std::string> ids(f.obligation_ids().begin(), f.obligation_ids().end());
    std::sort(ids.begin(), ids.end());
    f.clear_obligation_ids();
    for (auto& id : ids) f.add_obligation_ids(id);
    for (auto& p : *f.mutable_accountable()) p.clear_obligation_ids();
    return f.SerializeAsString();
  }

  Status CheckFindings(LedgerBackend& b, std::string* why) {
    FindingQuery q;
    q.limit = 10000;
    std::map<std::string, std::string> rows;
    for (;;) {
      std::vector<v1::Finding> page;
      Status s = b.QueryFindings(q, &page);
      if (!s.ok()) return s;
      for (const auto& f : page) rows[f.finding_id()] = Normal(f);
      if (page.size() < q.limit) break;
      q.after_id = page.back().finding_id();
    }
    for (const auto& [id, f] : findings_) {
      auto it = rows.find(id);
      if (it == rows.end() || it->second != Normal(f)) {
        *why = "table findings: the row of finding " + id +
               (it == rows.end() ? " is missing (deleted)"
                                 : " differs from its FINDING_* events (altered)");
        return Status::Ok();
      }
    }
    for (const auto& [id, body] : rows) {
      if (!findings_.count(id)) {
        *why = "table findings: finding " + id + " has no FINDING_* event (inserted)";
        return Status::Ok();
      }
    }
    for (const auto& [id, f] : findings_) {
      FindingQuery one;
      one.finding_id = id;
      one.service_id = f.service_id();
      one.duty_id = f.duty_id();
      one.status = f.status();
      one.from = one.to = f.opened_at().seconds();
      one.with_obligation_ids = false;
      std::vector<v1::Finding> found;
      Status s = b.QueryFindings(one, &found);
      if (!s.ok()) return s;
      if (found.size() != 1) {
        *why = "table findings: finding " + id +
               " is not found by its own service, duty, status and opening time (an indexed "
               "column was altered)";
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  Status CheckReports(LedgerBackend& b, std::string* why, uint64_t* bad_seq) {
    for (const Flagged& f : flagged_) {
      ReportIndexRow row;
      bool found = false;
      Status s = b.LookupReport(f.service_id, f.report_id, &row, &found);
      if (!s.ok()) return s;
      if (!found || row.seq != f.seq || row.digest != f.digest) {
        *bad_seq = f.seq;
        *why = "table report_index: the row of report " + f.report_id + " (REPORT_FLAGGED " +
               std::to_string(f.seq) + ") " + (found ? "differs from the event" : "is missing");
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  Status CheckStats(LedgerBackend& b, std::string* why) {
    std::vector<StatsRow> table, pending;
    Status s = b.QueryStats("", "0000-00-00", "9999-99-99", &table);
    if (s.ok()) s = b.ReadStatsPending(&pending);
    if (!s.ok()) return s;
    auto expected = stats_;
    for (const StatsRow& p : pending) {
      auto& x = expected[{p.service_id, p.day, p.surface, p.reason}];
      x.first += p.reports;
      x.second += p.flagged;
    }
    std::map<Key, std::pair<int64_t, int64_t>> got;
    for (const StatsRow& t : table)
      got[{t.service_id, t.day, t.surface, t.reason}] = {t.reports, t.flagged};
    for (auto& [k, v] : expected) {
      if (v.first == 0 && v.second == 0) continue;
      auto it = got.find(k);
      std::pair<int64_t, int64_t> have =
          it == got.end() ? std::make_pair(int64_t{0}, int64_t{0}) : it->second;
      if (have != v) {
        *why = "table stats: " + std::get<0>(k) + " " + std::get<1>(k) + " surface '" +
               std::get<2>(k) + "' reason '" + std::get<3>(k) + "': the table says " +
               std::to_string(have.first) + " reports (" + std::to_string(have.second) +
               " flagged), the log's STATS_ROLLUP events and the counts not yet rolled up give " +
               std::to_string(v.first) + " (" + std::to_string(v.second) + ")";
        return Status::Ok();
      }
    }
    for (const auto& [k, v] : got) {
      if ((v.first || v.second) && !expected.count(k)) {
        *why = "table stats: " + std::get<0>(k) + " " + std::get<1>(k) +
               ": counts that no STATS_ROLLUP event nor pending count explains (inserted)";
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  struct Flagged {
    std::string service_id, report_id, digest;
    uint64_t seq;
  };
  std::map<uint64_t, std::string> breaches_;
  std::map<std::string, v1::Finding> findings_;
  std::vector<Flagged> flagged_;
  std::map<Key, std::pair<int64_t, int64_t>> stats_;
  std::map<std::string, Obligation> obligations_;
  std::map<std::string, int64_t> counters_;
  int64_t clock_ = INT64_MIN;
};

VerifyReport Fail(VerifyReport r, uint64_t seq, std::string message) {
  r.ok = false;
  r.first_bad_seq = seq;
  r.message = std::move(message);
  return r;
}
}  // namespace

VerifyReport VerifyLedger(LedgerBackend& backend, const std::string& trusted_key) {
  VerifyReport r;
  // The log and the tables as one moment left them: a ledger being written
  // meanwhile would otherwise show tables ahead of the events read before.
  ReadSnapshot snapshot(backend);
  if (!snapshot.status().ok())
    return Fail(r, 0, "cannot read the ledger: " + snapshot.status().message());
  std::string stored_pem;
  bool found = false;
  Status s = backend.GetMeta("public_key", &stored_pem, &found);
  if (!s.ok()) return Fail(r, 0, "cannot read the ledger: " + s.message());
  std::unique_ptr<TrustedKey> trusted;  // the caller's, when given
  if (!trusted_key.empty()) {
    s = TrustedKey::Load(trusted_key, &trusted);
    if (!s.ok()) return Fail(r, 0, "trusted key: " + s.message());
    r.authenticated = true;
  } else if (!found) {
    return Fail(r, 0, "the ledger names no public key; pass --vkey");
  }
  std::unique_ptr<SigningKey> stored;
  if (found && !SigningKey::FromPublicPem(stored_pem, &stored).ok()) {
    if (!trusted) return Fail(r, 0, "stored public key: not an Ed25519 public key");
    stored.reset();
  }
  // The key handovers the log records (KEY_ROTATED), in order.
  struct Rotation {
    uint64_t seq;
    std::unique_ptr<TrustedKey> previous, next;
  };
  std::vector<Rotation> rotations;

  MerkleTree tree;
  DerivedRows derived;
  uint64_t expect = 1;
  constexpr size_t kPage = 10000;
  for (;;) {
    std::vector<StoredEvent> page;
    s = backend.ReadEvents(expect, kPage, &page);
    if (!s.ok())
      return Fail(r, expect,
                  "cannot read events from " + std::to_string(expect) + ": " + s.message());
    if (page.empty()) break;
    for (const StoredEvent& e : page) {
      if (e.seq != expect) {
        return Fail(r, expect,
                    "event " + std::to_string(expect) + " is missing (the next stored is " +
                        std::to_string(e.seq) + ")");
      }
      v1::LedgerEvent parsed;
      if (!parsed.ParseFromString(e.payload)) {
        return Fail(r, e.seq,
                    "event " + std::to_string(e.seq) + " does not parse: its bytes were altered");
      }
      if (parsed.seq() != e.seq) {
        return Fail(r, e.seq,
                    "event " + std::to_string(e.seq) + " holds the payload of event " +
                        std::to_string(parsed.seq()) + ": rows were reordered or replaced");
      }
      Hash leaf = LeafHash(e.payload);
      if (leaf != e.leaf_hash) {
        return Fail(r, e.seq,
                    "event " + std::to_string(e.seq) +
                        " does not match its leaf hash: its bytes were altered");
      }
      if (parsed.type() != e.type || parsed.time().seconds() != e.time) {
        return Fail(
            r, e.seq,
            "event " + std::to_string(e.seq) + ": indexed type or time differ from the event");
      }
      if (parsed.type() == v1::KEY_ROTATED) {
        Rotation rot{e.seq, nullptr, nullptr};
        s = TrustedKey::FromVerifierKey(parsed.key_rotated().previous_verifier_key(),
                                        &rot.previous);
        if (s.ok()) s = TrustedKey::FromVerifierKey(parsed.key_rotated().verifier_key(), &rot.next);
        if (!s.ok())
          return Fail(r, e.seq,
                      "event " + std::to_string(e.seq) + " (KEY_ROTATED): " + s.message());
        if (!rotations.empty() &&
            rotations.back().next->key().PublicRaw() != rot.previous->key().PublicRaw()) {
          return Fail(r, e.seq,
                      "event " + std::to_string(e.seq) +
                          " (KEY_ROTATED) hands over from a key the log was not signed by "
                          "then: the key rotations do not chain");
        }
        rotations.push_back(std::move(rot));
      }
      derived.Add(parsed);
      tree.Append(leaf);
      ++expect;
    }
  }
  r.events = tree.size();

  // The key each stretch of the log was signed by: before the first
  // handover, between two, after the last. Without handovers, the trusted
  // key (or the one the ledger stores) signed it all, as before rotation
  // existed.
  const SigningKey* current = stored.get();
  if (!rotations.empty()) current = &rotations.back().next->key();
  if (stored && current && stored->PublicRaw() != current->PublicRaw()) {
    return Fail(r, 0,
                rotations.empty()
                    ? "the ledger names another deployment's key than the trusted one"
                    : "the ledger's key is not the one its last KEY_ROTATED event (seq " +
                          std::to_string(rotations.back().seq) + ") handed over to");
  }
  if (trusted) {
    bool any = false;
    if (rotations.empty()) {
      any = !stored || trusted->Trusts(stored->PublicRaw());
    } else {
      any = trusted->Trusts(rotations.front().previous->key().PublicRaw());
      for (const Rotation& rot : rotations)
        any = any || trusted->Trusts(rot.next->key().PublicRaw());
    }
    if (!any) {
      return Fail(r, 0,
                  rotations.empty()
                      ? "the ledger names another deployment's key than the trusted one"
                      : "none of the " + std::to_string(rotations.size() + 1) +
                            " keys that signed this ledger is trusted");
    }
  }
  std::unique_ptr<TrustedKey> own;  // no rotation and no trusted key: the stored one
  if (rotations.empty() && !trusted) {
    s = TrustedKey::FromPem(stored_pem, &own);
    if (!s.ok()) return Fail(r, 0, "stored public key: " + s.message());
  }
  auto key_at = [&](size_t epoch) -> const TrustedKey& {
    if (rotations.empty()) return trusted ? *trusted : *own;
    return epoch == 0 ? *rotations[0].previous : *rotations[epoch - 1].next;
  };
  size_t epoch = 0;        // handovers at or before the checkpoint being checked
  size_t handed_over = 0;  // handovers whose first covering checkpoint was checked

  std::vector<v1::Checkpoint> checkpoints;
  s = backend.ReadCheckpoints(&checkpoints);
  if (!s.ok()) return Fail(r, 0, "cannot read checkpoints: " + s.message());
  uint64_t previous_size = 0;
  Hash previous_root;
  for (const v1::Checkpoint& c : checkpoints) {
    uint64_t n = c.tree_size();
    if (n > tree.size()) {
      return Fail(r, tree.size() + 1,
                  "checkpoint at size " + std::to_string(n) + " covers events " +
                      std::to_string(tree.size() + 1) + ".." + std::to_string(n) +
                      ", which are missing");
    }
    while (epoch < rotations.size() && rotations[epoch].seq <= n) ++epoch;
    s = key_at(epoch).VerifyCheckpoint(c);
    // The first checkpoint after a handover is signed by the key before it
    // too: the link whoever trusts that key follows.
    for (; s.ok() && handed_over < epoch; ++handed_over) {
      s = key_at(handed_over).VerifyCheckpoint(c);
      if (!s.ok()) {
        s = Status::InvalidArgument(s.message() +
                                    ": the first checkpoint after the KEY_ROTATED "
                                    "event at seq " +
                                    std::to_string(rotations[handed_over].seq) +
                                    " is not signed by the key it hands over from");
      }
    }
    if (!s.ok()) return Fail(r, n, s.message() + " (seq " + std::to_string(n) + ")");
    Hash root = tree.Root(n);
    if (root != c.root_hash()) {
      return Fail(r, 0,
                  "checkpoint at size " + std::to_string(n) + " does not match events " +
                      std::to_string(previous_size + 1) + ".." + std::to_string(n) +
                      ": an event in that range was altered together with its leaf hash");
    }
    if (previous_size > 0 && !VerifyConsistency(previous_size, n, previous_root, root,
                                                tree.ConsistencyProof(previous_size, n))) {
      return Fail(r, 0,
                  "checkpoints at sizes " + std::to_string(previous_size) + " and " +
                      std::to_string(n) + " are not consistent");
    }
    previous_size = n;
    previous_root = root;
    ++r.checkpoints;
  }
  r.unsigned_tail = tree.size() - previous_size;
  std::string why;
  uint64_t bad_seq = 0;
  s = derived.Check(backend, &why, &bad_seq);
  if (!s.ok()) return Fail(r, 0, "cannot read the query tables: " + s.message());
  if (!why.empty()) return Fail(r, bad_seq, why);
  r.ok = true;
  r.message = "ledger verifies: " + std::to_string(r.events) + " events, " +
              std::to_string(r.checkpoints) + " signed checkpoints" +
              (rotations.empty() ? ""
                                 : " (" + std::to_string(rotations.size()) + " key rotation" +
                                       (rotations.size() == 1 ? "" : "s") + ")") +
              (r.unsigned_tail
                   ? ", " + std::to_string(r.unsigned_tail) + " events after the last checkpoint"
                   : "") +
              "; root " + HexEncode(tree.Root(tree.size()));
  return r;
}

}  // namespace carewatch::ledger
