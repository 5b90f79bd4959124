#ifndef CAREWATCH_ENGINE_LEDGER_EVIDENCE_H_
#define CAREWATCH_ENGINE_LEDGER_EVIDENCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/note.h"

namespace carewatch::ledger {

// The seqs of every event a finding rests on, ascending: its own FINDING_*
// events; for each of its breaches the report, the obligation, the actions
// and the breach; the obligations of its breach rate's denominator (opened
// and decided), in every window from the one it opened on to the one of its
// last update; the ACCOUNTABILITY_CHANGED events before
// that update; and the RULESET_ACTIVATED in force then (its duty terms fix
// the thresholds).
Status EvidenceSeqs(LedgerBackend& backend, const v1::Finding& finding,
                    std::vector<uint64_t>* seqs);

struct BundleReport {
  bool ok = false;
  // The check that failed, naming the part ("entry seq 12: ...", "finding
  // breaches: ...") or, when ok, what was checked.
  std::string message;
  std::vector<std::string> checked;  // one line per check that passed
  uint64_t entries = 0;
};

// Checks a bundle offline against the key a regulator trusts: the signed
// checkpoint note, every entry's leaf and inclusion proof, then recomputes
// the finding from the events alone (its own events, the breaches and their
// kinds, the window's obligations due and breached, the rate, the
// thresholds of the rule set in force, the condition, and who was
// accountable for each breach) and compares it with what the bundle states.
BundleReport VerifyBundle(const v1::EvidenceBundle& bundle, const TrustedKey& key);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_EVIDENCE_H_
