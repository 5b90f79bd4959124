#ifndef CAREWATCH_ENGINE_REPORT_REPORT_H_
#define CAREWATCH_ENGINE_REPORT_REPORT_H_

// The evidence report a regulator hands to people: one self-contained HTML
// file (inline CSS and SVG, no script, nothing fetched) built from a signed
// checkpoint, the statistics per period and every finding's evidence.
// Gathering the data (from a ledger or a carewatchd) is the caller's; this
// turns it into a page.

#include <cstdint>
#include <string>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/ledger/audit.h"

namespace carewatch::report {

// What the report was built from and what was checked.
struct Cover {
  std::string source;        // "ledger sqlite:///..." or "carewatchd HOST:PORT"
  std::string origin;        // the log's origin
  std::string verifier_key;  // the key the checks used
  bool key_given = false;    // true: the reader's own (--vkey); false: the source's word
  v1::Checkpoint checkpoint;
  std::string service;  // empty: every service
  std::string period = "month";
  int64_t from = INT64_MIN, to = INT64_MAX;  // the period covered (unbounded: none)
  int64_t generated_at = 0;
  // The checkpoint's signature against verifier_key.
  bool checkpoint_verified = false;
  std::string checkpoint_message;
  // A full check of the ledger (every event, checkpoint and table), when
  // the report was built offline from one.
  bool ledger_checked = false, ledger_verified = false;
  std::string ledger_message;
  // Findings listed but recorded after the checkpoint: not in the report.
  int findings_after_checkpoint = 0;
  // The log's key handovers (KEY_ROTATED events), oldest first.
  std::vector<v1::KeyRotationEntry> key_rotations;
};

// One service's statistics: every period from the year before the first
// one shown (for the comparisons) to the last.
struct ServiceTrend {
  std::string service_id;
  std::string first_shown;  // the first period key shown; "" = all
  std::vector<ledger::PeriodStats> periods;
};

struct FindingEvidence {
  v1::Finding finding;  // as its events build it up to the checkpoint
  std::vector<ledger::EvidenceItem> items;
  bool checked = false, verified = false;
  std::string message;      // the bundle check's result, or why there is no evidence
  std::string bundle_file;  // written beside the report ("" when not)
};

struct ReportData {
  Cover cover;
  std::vector<ServiceTrend> trends;
  std::vector<FindingEvidence> findings;
};

// ---- The timeline of one finding, from its evidence alone.

struct TimelineObligation {
  std::string obligation_id, report_id;
  int64_t received = 0, deadline = 0;
  std::string outcome;  // met | discharged | breached | open
  int64_t decided_at = 0;
  std::string breach_kind;  // missed | late | late_recorded
  int64_t breach_at = 0;
  bool in_finding = false;  // one of the finding's own breached obligations
  std::vector<std::pair<int64_t, std::string>> actions;  // claimed taken_at, action
};

struct Tenure {
  std::string name, role, scope;
  int64_t from = 0, to = INT64_MAX;  // INT64_MAX: in post
};

// The breach rate over the duty's window ending at `at`, recounted from the
// evidence: `breached` of `due` obligations whose deadline falls in
// (at - window, at].
struct RatePoint {
  int64_t at = 0;
  int due = 0, breached = 0;
  double rate = 0;
};

struct Timeline {
  int64_t start = 0, end = 0;                   // the span drawn
  std::vector<TimelineObligation> obligations;  // by deadline
  std::vector<Tenure> tenures;                  // of the service and duty, by start
  std::vector<RatePoint> rate;                  // from the finding's first window end
  int64_t window_seconds = 0;
  int min_breaches = 0;
  double min_breach_rate = 0;
  std::string statute, summary;  // from the rule set in force ("" if not recorded)
};

Timeline BuildTimeline(const FindingEvidence& f);

// The whole page.
std::string RenderHtml(const ReportData& data);

// A percent change for people: "+12.5%", "-3.0%", "0%", "new" (from zero)
// or "" when both are zero.
std::string ChangeText(int64_t now, int64_t before);

// Text escaped for HTML element content and attribute values.
std::string Escape(std::string_view text);

// A file name for a finding's bundle: "finding-<id>.json" with any
// character outside [A-Za-z0-9._-] replaced.
std::string BundleFileName(const std::string& finding_id);

}  // namespace carewatch::report

#endif  // CAREWATCH_ENGINE_REPORT_REPORT_H_
