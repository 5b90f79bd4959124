#ifndef CAREWATCH_ENGINE_LEDGER_AUDIT_H_
#define CAREWATCH_ENGINE_LEDGER_AUDIT_H_

#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "carewatch/v1/service.pb.h"
#include "engine/ledger/ledger.h"
#include "engine/rules/ruleset.h"

namespace carewatch::ledger {

// One event of an evidence chain with its RFC 6962 inclusion proof against
// the checkpoint of the Evidence (empty when the event is newer than it).
struct EvidenceItem {
  StoredEvent event;
  v1::LedgerEvent parsed;
  std::vector<Hash> proof;
};

struct Evidence {
  v1::Finding finding;              // as its events record it up to the checkpoint
  v1::Checkpoint checkpoint;        // every item is proved against it
  std::vector<EvidenceItem> items;  // in seq order
  size_t total = 0;                 // items in the whole chain
  size_t next_offset = 0;           // the next page's first item; 0 when done
};

// Produces an inclusion proof of `seq` in the tree of `tree_size` leaves.
using ProofFn = std::function<Status(uint64_t seq, uint64_t tree_size, std::vector<Hash>* proof)>;

// The chain behind a finding (EvidenceSeqs) as it stood at `checkpoint`,
// items [offset, offset + limit) of it, each with its inclusion proof
// against the checkpoint. The finding is rebuilt from its own events up to
// the checkpoint, so every page agrees with the others.
Status BuildEvidence(LedgerBackend& backend, const ProofFn& prove, const v1::Checkpoint& checkpoint,
                     const std::string& finding_id, size_t offset, size_t limit, Evidence* out);

// Per-period statistics for the regulator.
struct PeriodStats {
  std::string period;  // "2026-03", "2026-Q1" or "2026"
  int64_t reports = 0, flagged = 0, obligations = 0, breaches = 0, findings = 0;
  std::map<std::string, int64_t> by_reason, by_surface;
  std::map<std::string, int64_t> breaches_by_kind;  // missed | late | late_recorded
  // Percent change against the previous period; absent (false) when that
  // period had none to compare against.
  bool has_previous = false;
  double reports_change = 0, flagged_change = 0, obligations_change = 0, breaches_change = 0,
         findings_change = 0;
  // Percent change against the same period a year before; false when that
  // period had no reports.
  bool has_year_ago = false;
  double reports_year_change = 0, flagged_year_change = 0, obligations_year_change = 0,
         breaches_year_change = 0, findings_year_change = 0;
  // The counts compared against (reports, flagged, obligations, breaches,
  // findings): a change from 0 is "new", not a percentage.
  std::array<int64_t, 5> previous{}, year_ago{};
};

// A change for people: "+12.5%", "-3.0%", "new" (from 0 to more), "0.0%".
std::string FormatChange(int64_t now, int64_t before);

// `period`: month | quarter | year. Times bound the days (UTC) included;
// `service_id` empty: every service. Every period from the first with data
// to the last is listed. `services`, when given, receives the services with
// reports in the range, sorted.
Status ComputeStats(LedgerBackend& backend, const std::string& service_id,
                    const std::string& period, int64_t from, int64_t to,
                    std::vector<PeriodStats>* out, std::vector<std::string>* services = nullptr);

// A breakdown (by reason, by surface) keeps at most this many keys: the
// largest counts (ties by key), the rest summed under "(others)". Platforms
// may send values beyond the vocabulary, so the number of distinct values
// is theirs to choose; the size of a statistics answer is not.
inline constexpr size_t kMaxBreakdownKeys = 50;
void CapBreakdown(std::map<std::string, int64_t>* counts, size_t max_keys = kMaxBreakdownKeys);

// PeriodStats as GetStats carries it, and back.
void ToProto(const PeriodStats& in, v1::PeriodStats* out);
PeriodStats FromProto(const v1::PeriodStats& in);

// Linkage alerts delivered in [from, to] (server time), aggregated per
// period ("day" or "month", UTC), service and category (docs/signals.md
// "What the regulator sees"): counts only, never tokens. InvalidArgument
// past `max_rows` rows.
Status LinkageStats(LedgerBackend& backend, const std::string& service_id, int64_t from, int64_t to,
                    const std::string& period, std::vector<v1::LinkageStatsRow>* out,
                    size_t max_rows = 10000);

// The key of the same period a year before ("2026-03" -> "2025-03").
std::string YearBefore(const std::string& key);

// Findings are recorded as deltas: FINDING_OPENED carries the whole finding;
// FINDING_UPDATED carries the new counters, the obligation ids added and the
// breaches added per accountable person; FINDING_CLOSED the closing time.
// Applies one such event to the full finding.
void ApplyFindingEvent(v1::EventType type, const v1::Finding& delta, v1::Finding* full);

// Why a finding is (or was) systemic, in one line: "6 breaches of 10
// obligations due 2026-02-27..2026-03-06 (60%), threshold >= 2 and >= 50% in
// 7d".
std::string FindingReason(const v1::Finding& f);

// A person's tenure, "2025-03-17..2026-01-05" or "2025-03-17.. (in post)".
std::string TenureText(const v1::AccountablePerson& p);

// The accountability record an ACCOUNTABILITY_CHANGED event recorded.
rules::Accountability AccountabilityFromEvent(const v1::AccountabilityChanged& a);

// The period key of a day "YYYY-MM-DD".
std::string PeriodOf(const std::string& day, const std::string& period);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_AUDIT_H_
