#include "engine/duty/obligation.h"

#include <algorithm>

#include "engine/rules/vocabulary.h"

namespace carewatch::duty {

const char* ObligationStateName(ObligationState s) {
  switch (s) {
    case ObligationState::kOpen:
      return "open";
    case ObligationState::kMet:
      return "met";
    case ObligationState::kDischarged:
      return "discharged";
    case ObligationState::kBreached:
      return "breached";
  }
  return "unknown";
}

const char* BreachKindName(BreachKind k) {
  switch (k) {
    case BreachKind::kNone:
      return "none";
    case BreachKind::kMissed:
      return "missed";
    case BreachKind::kLate:
      return "late";
    case BreachKind::kLateRecorded:
      return "late_recorded";
  }
  return "unknown";
}

ObligationOutcome ResolveObligation(int64_t deadline, const std::vector<std::string>& required,
                                    const std::vector<ActionRecord>& actions, int64_t now) {
  std::vector<const ActionRecord*> ordered;
  for (const ActionRecord& a : actions) {
    if (a.taken_at <= now) ordered.push_back(&a);
  }
  std::stable_sort(
      ordered.begin(), ordered.end(),
      [](const ActionRecord* a, const ActionRecord* b) { return a->taken_at < b->taken_at; });

  std::vector<bool> done(required.size(), false);
  size_t remaining = required.size();
  ObligationOutcome out;
  int64_t first_late = 0;
  for (const ActionRecord* a : ordered) {
    if (a->taken_at <= deadline && rules::IsDischargeAction(a->action)) {
      out.state = ObligationState::kDischarged;
      out.decided_at = a->taken_at;
      return out;
    }
    for (size_t i = 0; i < required.size(); ++i) {
      if (done[i] || required[i] != a->action) continue;
      done[i] = true;
      --remaining;
      if (a->taken_at > deadline && first_late == 0) first_late = a->taken_at;
    }
    if (remaining == 0) {
      if (first_late == 0) {
        out.state = ObligationState::kMet;
        out.decided_at = a->taken_at;
        return out;
      }
      break;
    }
  }
  if (now <= deadline) return out;  // still open
  out.state = ObligationState::kBreached;
  if (remaining == 0) {
    // Everything came, but something after the deadline.
    out.breach = BreachKind::kLate;
    out.decided_at = first_late;
  } else {
    out.breach = BreachKind::kMissed;
    out.decided_at = deadline;
  }
  return out;
}

}  // namespace carewatch::duty
