#ifndef CAREWATCH_ENGINE_DUTY_OBLIGATION_H_
#define CAREWATCH_ENGINE_DUTY_OBLIGATION_H_

#include <cstdint>
#include <string>
#include <vector>

namespace carewatch::duty {

enum class ObligationState { kOpen, kMet, kDischarged, kBreached };
enum class BreachKind { kNone, kMissed, kLate, kLateRecorded };

const char* ObligationStateName(ObligationState s);  // "open", "met", ...
const char* BreachKindName(BreachKind k);            // "missed", "late", "late_recorded"

// An action the platform recorded against a report.
struct ActionRecord {
  std::string action;
  int64_t taken_at = 0;  // unix seconds
};

struct ObligationOutcome {
  ObligationState state = ObligationState::kOpen;
  BreachKind breach = BreachKind::kNone;
  // When the state was decided: the completing action (met), the review
  // (discharged), the deadline (missed) or the late action (late, when it
  // came in before `now`); 0 while open.
  int64_t decided_at = 0;
};

// The state at time `now` of an obligation with `deadline` that requires
// every action in `required` (docs/design.md "Duty semantics"):
//  - MET: every required action taken at or before the deadline;
//  - DISCHARGED: reviewed_not_illegal taken at or before the deadline, and
//    before the obligation was met;
//  - BREACHED: `now` is past the deadline with a required action missing
//    (missed) or taken after it (late);
//  - OPEN otherwise.
// Only actions with taken_at <= now count. Actions may come in any order;
// duplicates and actions not required are ignored. Pure: the same inputs
// always give the same outcome.
ObligationOutcome ResolveObligation(int64_t deadline, const std::vector<std::string>& required,
                                    const std::vector<ActionRecord>& actions, int64_t now);

}  // namespace carewatch::duty

#endif  // CAREWATCH_ENGINE_DUTY_OBLIGATION_H_
