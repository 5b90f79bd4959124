// The report page: HTML with inline CSS and SVG. No script, no external
// resource, and a Content-Security-Policy that forbids fetching any.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "engine/common/digest.h"
#include "engine/ledger/note.h"
#include "engine/report/report.h"
#include "engine/rules/duration.h"

namespace carewatch::report {

namespace {

const char* kStyle = R"css(
:root { --ink: #111; --mid: #555; --rule: #bbb; --faint: #eee; --bad: #a00; --good: #060; }
* { box-sizing: border-box; }
body { font: 14px/1.45 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1100px; padding: 24px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 2px solid var(--ink); padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin: 24px 0 8px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12.5px; }
th, td { border: 1px solid var(--rule); padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: var(--faint); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .hash { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 11.5px; }
pre { background: var(--faint); padding: 8px; white-space: pre-wrap; word-break: break-all; }
pre.rate-table { columns: 2; font-size: 10.5px; }
pre.evidence-events { white-space: pre; overflow-x: auto; font-size: 10.5px; line-height: 1.3; }
@media print { pre.evidence-events { font-size: 7px; white-space: pre; }
               pre.rate-table { columns: 3; font-size: 7px; } }
.hash { word-break: break-all; }
dl.facts { display: grid; grid-template-columns: 14em 1fr; gap: 2px 12px; margin: 12px 0; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; word-break: break-all; }
.verdict { border: 3px solid var(--ink); padding: 10px 14px; margin: 16px 0; }
.verdict.ok { border-color: var(--good); } .verdict.partial { border-style: dashed; }
.verdict.bad { border-color: var(--bad); border-width: 5px; }
.verdict h2 { border: 0; margin: 0 0 6px; font-size: 18px; }
ul.checks { margin: 4px 0; padding-left: 0; list-style: none; }
ul.checks li::before { content: attr(data-mark) "\00a0"; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; break-inside: avoid; }
figure.chart { width: 340px; }
figcaption { font-size: 12px; color: var(--mid); }
.trend { display: grid; grid-template-columns: 1fr; gap: 8px; }
.muted { color: var(--mid); }
.nw, table.trend-table th { white-space: nowrap; }
.bad { color: var(--bad); font-weight: bold; } .good { color: var(--good); font-weight: bold; }
svg text { font-family: "DejaVu Sans", Arial, sans-serif; }
nav ol { columns: 2; }
section.finding-detail { break-before: page; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  section#trends, section#findings, section#appendix { break-before: page; }
  a { color: inherit; text-decoration: none; }
  figure.chart { width: 48%; }
  /* Closed details (the rate tables) print open: paper has no click. */
  details::details-content { content-visibility: visible; display: block; }
}
@page { size: A4; margin: 14mm 12mm; }
)css";

// Patterns shared by every chart: the fills stay apart in black and white.
const char* kDefs =
    R"svg(<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#111" stroke-width="2.2"/></pattern>
<pattern id="dots" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="#ddd"/><circle cx="2.5" cy="2.5" r="1.3" fill="#111"/></pattern>
<pattern id="tenure" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><rect width="8" height="8" fill="#f4f4f4"/><line x1="0" y1="0" x2="0" y2="8" stroke="#ccc" stroke-width="1"/></pattern>
</defs></svg>)svg";

const char* kSeriesFill[] = {"#333", "url(#hatch)", "url(#dots)"};

std::string Num(int64_t v) {
  // The magnitude as unsigned: -INT64_MIN does not fit an int64_t.
  const uint64_t magnitude = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  std::string digits = std::to_string(magnitude);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string Fixed(double v, int places = 1) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", places, v);
  return buf;
}

std::string Pct(double rate) { return Fixed(rate * 100.0, 1) + "%"; }

std::string Day(int64_t t) { return rules::FormatDate(t); }

// A date that does not break across lines in a table cell.
std::string NwDay(int64_t t) { return "<span class=\"nw\">" + Day(t) + "</span>"; }

std::string When(int64_t t) {
  std::string s = rules::FormatDateTime(t);
  return s.substr(0, 10) + " " + s.substr(11, 5) + " UTC";
}

std::string Px(double v) { return Fixed(v, 1); }

// A bound a bar chart's axis ends at: 1, 2 or 5 times a power of ten (or
// the largest int64_t, for counts no such bound can hold: the statistics
// come from the source the report checks, which may send any number).
int64_t NiceCeiling(int64_t v) {
  if (v <= 0) return 1;
  int64_t p = 1;
  while (p <= v / 10) p *= 10;
  for (int64_t m : {1, 2, 5, 10}) {
    int64_t bound = 0;
    if (__builtin_mul_overflow(m, p, &bound)) return INT64_MAX;
    if (bound >= v) return bound;
  }
  return INT64_MAX;
}

// a + b, held at the ends of int64_t instead of wrapping.
int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return b > 0 ? INT64_MAX : INT64_MIN;
  return sum;
}

struct Series {
  std::string name;
  std::vector<int64_t> values;
};

// A bar chart (stacked when there are several series) of values per period.
std::string BarChart(const std::string& title, const std::vector<std::string>& labels,
                     const std::vector<Series>& series) {
  const double w = 340, left = 52, right = 8, top = 32;
  const double bottom = series.size() > 1 ? 56 : 42, h = 154 + bottom;
  const double pw = w - left - right, ph = h - top - bottom;
  const size_t n = labels.size();
  int64_t max = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t sum = 0;
    for (const auto& s : series) sum = SaturatingAdd(sum, s.values[i]);
    max = std::max(max, sum);
  }
  const int64_t top_value = NiceCeiling(max);
  std::ostringstream o;
  o << "<svg class=\"chart\" viewBox=\"0 0 " << w << " " << h << "\" width=\"" << w
    << "\" height=\"" << h << "\" role=\"img\" aria-label=\"" << Escape(title) << "\"><title>"
    << Escape(title) << "</title>";
  o << "<text x=\"" << left << "\" y=\"14\" font-size=\"12\" font-weight=\"bold\">" << Escape(title)
    << "</text>";
  for (int k = 0; k <= 2; ++k) {
    if (k == 1 && top_value % 2 != 0) continue;  // no half of an odd bound
    double y = top + ph - ph * k / 2.0;
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << Px(y) << "\" y2=\""
      << Px(y) << "\" stroke=\"" << (k ? "#ccc" : "#111") << "\"/>";
    o << "<text x=\"" << left - 4 << "\" y=\"" << Px(y + 4)
      << "\" font-size=\"10\" text-anchor=\"end\">" << Num(k == 2 ? top_value : top_value / 2 * k)
      << "</text>";
  }
  const double slot = n ? pw / static_cast<double>(n) : pw;
  const size_t label_every = n <= 12 ? 1 : (n + 11) / 12;
  for (size_t i = 0; i < n; ++i) {
    double x = left + slot * static_cast<double>(i) + slot * 0.15;
    double bw = std::max(1.0, slot * 0.7);
    double y = top + ph;
    int64_t sum = 0;
    for (size_t s = 0; s < series.size(); ++s) {
      int64_t v = series[s].values[i];
      sum = SaturatingAdd(sum, v);
      if (v <= 0) continue;
      double bh = ph * static_cast<double>(v) / static_cast<double>(top_value);
      y -= bh;
      o << "<rect x=\"" << Px(x) << "\" y=\"" << Px(y) << "\" width=\"" << Px(bw) << "\" height=\""
        << Px(bh) << "\" fill=\"" << kSeriesFill[s % 3]
        << "\" stroke=\"#111\" stroke-width=\"0.6\"><title>" << Escape(labels[i]) << " "
        << Escape(series[s].name) << ": " << Num(v) << "</title></rect>";
    }
    if (n <= 8) {
      o << "<text x=\"" << Px(x + bw / 2) << "\" y=\"" << Px(y - 3)
        << "\" font-size=\"9\" text-anchor=\"middle\">" << Num(sum) << "</text>";
    }
    if (i % label_every == 0) {
      o << "<text x=\"" << Px(x + bw / 2) << "\" y=\"" << Px(top + ph + 12)
        << "\" font-size=\"9\" text-anchor=\"end\" transform=\"rotate(-35 " << Px(x + bw / 2) << " "
        << Px(top + ph + 12) << ")\">" << Escape(labels[i]) << "</text>";
    }
  }
  if (series.size() > 1) {
    double lx = left;
    for (size_t s = 0; s < series.size(); ++s) {
      o << "<rect x=\"" << Px(lx) << "\" y=\"" << h - 10 << "\" width=\"10\" height=\"8\" fill=\""
        << kSeriesFill[s % 3] << "\" stroke=\"#111\" stroke-width=\"0.6\"/>"
        << "<text x=\"" << Px(lx + 13) << "\" y=\"" << h - 3 << "\" font-size=\"9\">"
        << Escape(series[s].name) << "</text>";
      lx += 18 + 6.0 * static_cast<double>(series[s].name.size());
    }
  }
  o << "</svg>";
  return o.str();
}

int64_t Kind(const ledger::PeriodStats& p, const char* kind) {
  auto it = p.breaches_by_kind.find(kind);
  return it == p.breaches_by_kind.end() ? 0 : it->second;
}

// ---- cover

void RenderCover(const ReportData& d, int verified_findings, std::ostringstream& o) {
  const Cover& c = d.cover;
  o << "<header id=\"cover\"><h1>carewatch evidence report</h1><p class=\"muted\">"
    << (c.service.empty() ? "All services" : "Service " + Escape(c.service)) << " &middot; "
    << (c.from == INT64_MIN ? "from the start of the log" : "from " + Day(c.from)) << " "
    << (c.to == INT64_MAX ? "to the checkpoint" : "to " + Day(c.to)) << " &middot; by "
    << Escape(c.period) << " &middot; generated " << When(c.generated_at) << "</p>";

  // The verdict on the whole report first: what a reader may rely on.
  const size_t findings = d.findings.size();
  const bool findings_ok = static_cast<size_t>(verified_findings) == findings;
  const bool all =
      c.key_given && c.checkpoint_verified && findings_ok && c.ledger_checked && c.ledger_verified;
  const bool failed = (c.key_given && !c.checkpoint_verified) ||
                      (c.ledger_checked && !c.ledger_verified) || !findings_ok;
  o << "<section class=\"verdict "
    << (all      ? "ok"
        : failed ? "bad"
                 : "partial")
    << "\" id=\"verification\" data-verified=\""
    << (all      ? "all"
        : failed ? "failed"
                 : "partial")
    << "\"><h2>"
    << (all      ? "Every figure below was verified against the checkpoint"
        : failed ? "A check FAILED: do not rely on this report"
                 : "Not every figure below was verified")
    << "</h2><ul class=\"checks\">";
  auto check = [&](bool ok, bool applicable, const std::string& text) {
    o << "<li data-mark=\""
      << (!applicable ? "&#8211;"
          : ok        ? "&#10003;"
                      : "&#10007;")
      << "\" class=\""
      << (!applicable ? "muted"
          : ok        ? ""
                      : "bad")
      << "\">" << text << "</li>";
  };
  check(c.checkpoint_verified && c.key_given, c.key_given,
        c.key_given ? "Checkpoint signature, against the verifier key given to the report: " +
                          Escape(c.checkpoint_message)
                    : "Checkpoint signature checked only against the key the source states "
                      "about itself (give --vkey with the deployment's published key)" +
                          std::string(c.checkpoint_verified ? "" : ": ") +
                          Escape(c.checkpoint_verified ? "" : c.checkpoint_message));
  if (c.ledger_checked) {
    check(c.ledger_verified, true,
          "Whole ledger (every event, checkpoint and the tables the figures come from): " +
              Escape(c.ledger_message));
  } else {
    check(false, false,
          "Trend figures are as the server reports them; they are not covered by evidence "
          "bundles. <code>carewatch verify --ledger</code> on a copy of the ledger recounts them.");
  }
  check(findings_ok, findings > 0,
        std::to_string(verified_findings) + " of " + std::to_string(findings) +
            " findings: evidence bundle verified as <code>carewatch verify --evidence</code> "
            "does (each event proved against the checkpoint, the finding recomputed from "
            "them)");
  if (c.findings_after_checkpoint > 0) {
    check(false, false,
          std::to_string(c.findings_after_checkpoint) +
              " findings recorded after this checkpoint are not in this report (a later "
              "checkpoint covers them)");
  }
  o << "</ul></section>";

  o << "<dl class=\"facts\"><dt>Source</dt><dd>" << Escape(c.source) << "</dd>"
    << "<dt>Log origin</dt><dd>" << Escape(c.origin) << "</dd>"
    << "<dt>Checkpoint</dt><dd>tree size <span id=\"tree-size\">" << c.checkpoint.tree_size()
    << "</span>, signed " << When(c.checkpoint.time().seconds()) << "</dd>"
    << "<dt>Root hash</dt><dd class=\"hash\" id=\"root-hash\">"
    << HexEncode(c.checkpoint.root_hash()) << "</dd>"
    << "<dt>Verifier key</dt><dd class=\"hash\">" << Escape(c.verifier_key)
    << (c.key_given ? "" : " <span class=\"bad\">(stated by the source, not given)</span>")
    << "</dd>";
  if (!c.key_rotations.empty()) {
    // A key id is the second field of a verifier key.
    auto key_id = [](const std::string& vkey) {
      const size_t a = vkey.find('+');
      return a == std::string::npos ? vkey : vkey.substr(a + 1, vkey.find('+', a + 1) - a - 1);
    };
    o << "<dt>Signing key changes</dt><dd><ul id=\"key-rotations\">";
    for (const v1::KeyRotationEntry& r : c.key_rotations) {
      o << "<li>event " << r.seq() << ", " << When(r.recorded_at().seconds()) << ": key "
        << Escape(key_id(r.rotated().previous_verifier_key())) << " handed over to "
        << Escape(key_id(r.rotated().verifier_key()))
        << (r.rotated().reason().empty()
                ? ""
                : " (" + Escape(r.rotated().reason().substr(0, 200)) + ")")
        << "; the checkpoint after it is signed by both</li>";
    }
    o << "</ul></dd>";
  }
  o << "</dl>";
  if (!c.checkpoint.note().empty()) {
    o << "<details open><summary>Signed checkpoint (C2SP signed note)</summary><pre>"
      << Escape(c.checkpoint.note()) << "</pre></details>";
  }
  o << "</header>";
}

// ---- trends

void RenderTrends(const ReportData& d, std::ostringstream& o) {
  o << "<section id=\"trends\"><h2>Trends</h2><p>Per service and " << Escape(d.cover.period)
    << ": reports received (by their claimed time of receipt), reports flagged by the rules, "
       "obligations opened, and breaches by kind (by the time each is attributed to). Each "
       "change is against the previous period and against the same period a year before "
       "(<em>new</em>: from none).</p>";
  if (d.trends.empty()) o << "<p class=\"muted\">No reports in this period.</p>";
  for (const ServiceTrend& t : d.trends) {
    std::map<std::string, const ledger::PeriodStats*> by_key;
    for (const auto& p : t.periods) by_key[p.period] = &p;
    std::vector<const ledger::PeriodStats*> shown;
    std::vector<const ledger::PeriodStats*> previous;
    for (size_t i = 0; i < t.periods.size(); ++i) {
      if (!t.first_shown.empty() && t.periods[i].period < t.first_shown) continue;
      shown.push_back(&t.periods[i]);
      previous.push_back(i ? &t.periods[i - 1] : nullptr);
    }
    o << "<section class=\"service-trend\" data-service=\"" << Escape(t.service_id) << "\"><h3>"
      << Escape(t.service_id) << "</h3>";
    std::vector<std::string> labels;
    Series reports{"reports", {}}, flagged{"flagged", {}}, obligations{"obligations", {}};
    Series missed{"missed", {}}, late{"late", {}}, late_recorded{"late recorded", {}};
    for (const auto* p : shown) {
      labels.push_back(p->period);
      reports.values.push_back(p->reports);
      flagged.values.push_back(p->flagged);
      obligations.values.push_back(p->obligations);
      missed.values.push_back(Kind(*p, "missed"));
      late.values.push_back(Kind(*p, "late"));
      late_recorded.values.push_back(Kind(*p, "late_recorded"));
    }
    o << "<div class=\"trend\"><div class=\"charts\">";
    auto fig = [&](const std::string& title, const std::vector<Series>& s, const char* note) {
      o << "<figure class=\"chart\">" << BarChart(title, labels, s) << "<figcaption>" << note
        << " The numbers are in the table below.</figcaption></figure>";
    };
    fig("Reports received", {reports}, "Reports per period.");
    fig("Reports flagged", {flagged}, "Reports that matched a rule.");
    fig("Obligations opened", {obligations}, "Duties the flagged reports put on the platform.");
    fig("Breaches by kind", {missed, late, late_recorded},
        "Solid: missed; hatched: late; dotted: late recorded.");
    o << "</div><table class=\"trend-table\" data-service=\"" << Escape(t.service_id)
      << "\"><thead><tr><th rowspan=\"2\">Period</th>";
    const char* metrics[] = {"reports", "flagged", "obligations", "breaches"};
    for (const char* m : metrics) o << "<th colspan=\"3\">" << m << "</th>";
    o << "<th rowspan=\"2\" class=\"num\">missed</th><th rowspan=\"2\" class=\"num\">late</th>"
         "<th rowspan=\"2\" class=\"num\">late recorded</th><th rowspan=\"2\" "
         "class=\"num\">findings opened</th></tr><tr>";
    for (size_t k = 0; k < 4; ++k)
      o << "<th class=\"num\">n</th><th class=\"num\">vs prev.</th><th class=\"num\">vs year "
           "before</th>";
    o << "</tr></thead><tbody>";
    for (size_t i = 0; i < shown.size(); ++i) {
      const ledger::PeriodStats& p = *shown[i];
      const ledger::PeriodStats* prev = previous[i];
      auto ya = by_key.find(ledger::YearBefore(p.period));
      const ledger::PeriodStats* year = ya == by_key.end() ? nullptr : ya->second;
      o << "<tr data-period=\"" << Escape(p.period) << "\"><th>" << Escape(p.period) << "</th>";
      auto cell = [&](const char* metric, int64_t v, int64_t pv, int64_t yv, bool has_prev,
                      bool has_year) {
        o << "<td class=\"num\" data-metric=\"" << metric << "\">" << Num(v) << "</td>"
          << "<td class=\"num\">" << (has_prev ? ChangeText(v, pv) : "") << "</td>"
          << "<td class=\"num\">" << (has_year ? ChangeText(v, yv) : "") << "</td>";
      };
      cell("reports", p.reports, prev ? prev->reports : 0, year ? year->reports : 0, prev, year);
      cell("flagged", p.flagged, prev ? prev->flagged : 0, year ? year->flagged : 0, prev, year);
      cell("obligations", p.obligations, prev ? prev->obligations : 0, year ? year->obligations : 0,
           prev, year);
      cell("breaches", p.breaches, prev ? prev->breaches : 0, year ? year->breaches : 0, prev,
           year);
      o << "<td class=\"num\" data-metric=\"missed\">" << Num(Kind(p, "missed")) << "</td>"
        << "<td class=\"num\" data-metric=\"late\">" << Num(Kind(p, "late")) << "</td>"
        << "<td class=\"num\" data-metric=\"late_recorded\">" << Num(Kind(p, "late_recorded"))
        << "</td><td class=\"num\" data-metric=\"findings\">" << Num(p.findings) << "</td></tr>";
    }
    o << "</tbody></table></div></section>";
  }
  o << "</section>";
}

// ---- findings

std::string Accountable(const v1::Finding& f) {
  std::string out;
  for (const auto& p : f.accountable()) {
    if (!out.empty()) out += "<br>";
    out += Escape(p.name()) + " (" + Escape(p.role()) + "), " + NwDay(p.tenure_from().seconds()) +
           " .. " + (p.has_tenure_to() ? NwDay(p.tenure_to().seconds()) : std::string("in post")) +
           ": " + std::to_string(p.breaches()) + " breaches";
  }
  if (f.unattributed_breaches() > 0) {
    if (!out.empty()) out += "<br>";
    out += "<span class=\"bad\">nobody accountable: " + std::to_string(f.unattributed_breaches()) +
           " breaches</span>";
  }
  return out.empty() ? "&#8211;" : out;
}

std::string Thresholds(const v1::Finding& f) {
  if (!f.has_thresholds()) return "&#8211;";
  return "&ge; " + std::to_string(f.thresholds().min_breaches()) + " breaches and &ge; " +
         Pct(f.thresholds().min_breach_rate()) + " in " +
         rules::FormatDuration(f.thresholds().window_seconds());
}

void RenderFindingsTable(const ReportData& d, const std::vector<Timeline>& timelines,
                         std::ostringstream& o) {
  o << "<section id=\"findings\"><h2>Findings</h2><p>A finding opens when, within a duty's "
       "window, a service breaches at least the duty's number of obligations and share of the "
       "obligations due (its systemic thresholds); it closes when the window no longer meets "
       "them. Figures are as the finding's own events record them at the checkpoint.</p>";
  if (d.findings.empty()) {
    o << "<p class=\"muted\">No findings in this period.</p></section>";
    return;
  }
  o << "<table class=\"findings\"><thead><tr><th>Finding</th><th>Service</th><th>Duty</th>"
       "<th>Statute</th><th>Window (last evaluation)</th><th class=\"num\">Breaches of "
       "obligations due</th><th class=\"num\">Rate</th><th>Thresholds</th><th>Status</th>"
       "<th>Accountable</th><th>Evidence</th></tr></thead><tbody>";
  for (size_t i = 0; i < d.findings.size(); ++i) {
    const FindingEvidence& fe = d.findings[i];
    const v1::Finding& f = fe.finding;
    const Timeline& t = timelines[i];
    o << "<tr class=\"finding\" data-finding-id=\"" << Escape(f.finding_id())
      << "\"><td><a href=\"#f" << i << "\">" << Escape(f.finding_id()) << "</a></td><td>"
      << Escape(f.service_id()) << "</td><td>" << Escape(f.duty_id()) << "</td><td>"
      << (t.statute.empty() ? "<span class=\"muted\">not recorded</span>" : Escape(t.statute))
      << "</td><td>"
      << (f.has_window_end()
              ? NwDay(f.window_start().seconds()) + " .. " + NwDay(f.window_end().seconds())
              : std::string("&#8211;"))
      << "</td><td class=\"num\">" << f.window_breaches() << " of " << f.obligations()
      << " due<br><span class=\"muted\">" << f.breaches() << " in all</span></td><td class=\"num\">"
      << Pct(f.breach_rate()) << "</td><td>" << Thresholds(f) << "</td><td>" << Escape(f.status())
      << "<br><span class=\"muted\">opened " << NwDay(f.opened_at().seconds())
      << (f.has_closed_at() ? ", closed " + NwDay(f.closed_at().seconds()) : std::string())
      << "</span></td><td>" << Accountable(f) << "</td><td class=\""
      << (fe.verified ? "good" : "bad") << "\">"
      << (fe.verified ? "&#10003; verified" : "&#10007; " + Escape(fe.message)) << "</td></tr>";
  }
  o << "</tbody></table></section>";
}

// At most this many obligations are drawn in a timeline; beyond it, a sample
// evenly spaced in deadline order, so the share breached looks as it is.
constexpr size_t kMaxLanes = 120;

std::vector<const TimelineObligation*> Lanes(const Timeline& t) {
  std::vector<const TimelineObligation*> lanes;
  const size_t n = t.obligations.size();
  const size_t drawn = std::min(n, kMaxLanes);
  for (size_t k = 0; k < drawn; ++k) lanes.push_back(&t.obligations[k * n / drawn]);
  return lanes;
}

std::string TimelineSvg(const v1::Finding& f, const Timeline& t, size_t* drawn) {
  std::vector<const TimelineObligation*> lanes = Lanes(t);
  *drawn = lanes.size();
  const double w = 1000, left = 150, right = 16, ten_h = 16;
  const double lane_h = lanes.size() > 60 ? 4 : 7, lane_gap = lanes.size() > 60 ? 1 : 2;
  const double pw = w - left - right;
  const double ten_top = 26;
  const double ten_total = ten_h * static_cast<double>(std::max<size_t>(1, t.tenures.size()));
  const double ob_top = ten_top + ten_total + 10;
  const double ob_total = (lane_h + lane_gap) * static_cast<double>(lanes.size());
  const double rate_top = ob_top + ob_total + 26, rate_h = 110;
  const double h = rate_top + rate_h + 34;
  const double span = static_cast<double>(t.end - t.start);
  auto XD = [&](int64_t at) {
    return left + pw * static_cast<double>(std::clamp(at, t.start, t.end) - t.start) / span;
  };
  auto X = [&](int64_t at) { return Px(XD(at)); };
  std::ostringstream o;
  o << "<svg class=\"timeline\" data-finding-id=\"" << Escape(f.finding_id()) << "\" viewBox=\"0 0 "
    << w << " " << Px(h) << "\" width=\"100%\" role=\"img\" aria-label=\"Timeline of finding "
    << Escape(f.finding_id()) << "\"><title>Timeline of finding " << Escape(f.finding_id())
    << "</title>";
  // Time axis with day (or week/month) ticks, and a grid through the chart.
  const int64_t day = 86400;
  int64_t step = day;
  for (int64_t s : {day, 2 * day, 7 * day, 14 * day, 30 * day, 91 * day, 365 * day}) {
    step = s;
    if ((t.end - t.start) / s <= 12) break;
  }
  // Ticks show the month and day, and the year where it changes.
  std::string year;
  for (int64_t at = (t.start / step + 1) * step; at < t.end; at += step) {
    std::string d = Day(at);
    std::string label = d.substr(0, 4) != year ? d : d.substr(5);
    year = d.substr(0, 4);
    o << "<line x1=\"" << X(at) << "\" x2=\"" << X(at) << "\" y1=\"18\" y2=\""
      << Px(rate_top + rate_h) << "\" stroke=\"#ddd\"/><text x=\"" << X(at)
      << "\" y=\"14\" font-size=\"10\" text-anchor=\"middle\">" << label << "</text>";
  }
  o << "<text x=\"4\" y=\"14\" font-size=\"10\" font-weight=\"bold\">Dates (UTC)</text>";
  // Accountable people's tenures.
  o << "<text x=\"4\" y=\"" << Px(ten_top + 11) << "\" font-size=\"10\" font-weight=\"bold\">"
    << "Accountable</text>";
  if (t.tenures.empty()) {
    o << "<text x=\"" << left << "\" y=\"" << Px(ten_top + 11)
      << "\" font-size=\"10\" class=\"bad\">nobody recorded as accountable</text>";
  }
  for (size_t i = 0; i < t.tenures.size(); ++i) {
    const Tenure& ten = t.tenures[i];
    double y = ten_top + ten_h * static_cast<double>(i);
    int64_t to = ten.to == INT64_MAX ? t.end : ten.to;
    if (to < t.start || ten.from > t.end) continue;
    o << "<g class=\"tenure\"><rect x=\"" << X(ten.from) << "\" y=\"" << Px(y) << "\" width=\""
      << Px(std::max(1.0, XD((to)) - XD((ten.from)))) << "\" height=\"" << ten_h - 3
      << "\" fill=\"url(#tenure)\" stroke=\"#111\" stroke-width=\"0.8\"/>"
      << "<text x=\"" << Px(XD((ten.from)) + 4) << "\" y=\"" << Px(y + 10) << "\" font-size=\"10\">"
      << Escape(ten.name) << " (" << Escape(ten.role) << ")"
      << (ten.to == INT64_MAX ? ", in post" : "") << "</text></g>";
    // The tenure's edges through the obligations and the rate.
    for (int64_t edge : {ten.from, to}) {
      if (edge <= t.start || edge >= t.end) continue;
      o << "<line x1=\"" << X(edge) << "\" x2=\"" << X(edge) << "\" y1=\"" << Px(y) << "\" y2=\""
        << Px(rate_top + rate_h) << "\" stroke=\"#111\" stroke-dasharray=\"2 3\"/>";
    }
  }
  // Obligations: a bar from receipt to deadline; actions as circles; a
  // breach as a cross at the time it is attributed to.
  o << "<text x=\"4\" y=\"" << Px(ob_top + 8) << "\" font-size=\"10\" font-weight=\"bold\">"
    << "Obligations</text>";
  for (size_t i = 0; i < lanes.size(); ++i) {
    const TimelineObligation& ob = *lanes[i];
    double y = ob_top + (lane_h + lane_gap) * static_cast<double>(i);
    const bool breached = ob.outcome == "breached";
    o << "<g class=\"obligation\" data-outcome=\"" << ob.outcome << "\"><title>report "
      << Escape(ob.report_id) << ": received " << When(ob.received) << ", due " << When(ob.deadline)
      << ", " << ob.outcome << (breached ? " (" + Escape(ob.breach_kind) + ")" : std::string())
      << "</title>";
    if (lanes.size() <= 40) {
      o << "<text x=\"" << left - 4 << "\" y=\"" << Px(y + lane_h - 1)
        << "\" font-size=\"7\" text-anchor=\"end\">" << Escape(ob.report_id.substr(0, 28))
        << "</text>";
    }
    o << "<rect x=\"" << X(ob.received) << "\" y=\"" << Px(y) << "\" width=\""
      << Px(std::max(1.5, XD((ob.deadline)) - XD((ob.received)))) << "\" height=\"" << lane_h
      << "\" fill=\""
      << (breached               ? "#111"
          : ob.outcome == "open" ? "#fff"
                                 : "#c8c8c8")
      << "\" stroke=\"#111\" stroke-width=\"0.6\""
      << (ob.outcome == "open" ? " stroke-dasharray=\"2 1\"" : "") << "/>";
    for (const auto& [at, action] : ob.actions) {
      o << "<circle cx=\"" << X(at) << "\" cy=\"" << Px(y + lane_h / 2) << "\" r=\"2.6\" "
        << "fill=\"#fff\" stroke=\"#111\" stroke-width=\"1\"><title>" << Escape(action) << " "
        << When(at) << "</title></circle>";
    }
    if (breached) {
      double bx = XD((ob.breach_at)), cy = y + lane_h / 2;
      o << "<path class=\"breach\" d=\"M" << Px(bx - 3.5) << " " << Px(cy - 3.5) << "L"
        << Px(bx + 3.5) << " " << Px(cy + 3.5) << "M" << Px(bx - 3.5) << " " << Px(cy + 3.5) << "L"
        << Px(bx + 3.5) << " " << Px(cy - 3.5) << "\" stroke=\"#a00\" stroke-width=\"2.2\"/>";
    }
    o << "</g>";
  }
  // The rolling breach rate against the threshold.
  o << "<text x=\"4\" y=\"" << Px(rate_top + 10) << "\" font-size=\"10\" font-weight=\"bold\">"
    << "Breach rate</text><text x=\"4\" y=\"" << Px(rate_top + 22) << "\" font-size=\"9\">over "
    << rules::FormatDuration(t.window_seconds) << "</text>";
  auto YD = [&](double rate) { return rate_top + rate_h - rate_h * std::clamp(rate, 0.0, 1.0); };
  auto Y = [&](double rate) { return Px(YD(rate)); };
  o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << Y(0) << "\" y2=\"" << Y(0)
    << "\" stroke=\"#111\"/><line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << Y(1)
    << "\" y2=\"" << Y(1) << "\" stroke=\"#ccc\"/><text x=\"" << left - 4 << "\" y=\"" << Y(1)
    << "\" font-size=\"9\" text-anchor=\"end\">100%</text><text x=\"" << left - 4 << "\" y=\""
    << Y(0) << "\" font-size=\"9\" text-anchor=\"end\">0%</text>";
  if (t.min_breach_rate > 0) {
    o << "<line class=\"threshold\" x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\""
      << Y(t.min_breach_rate) << "\" y2=\"" << Y(t.min_breach_rate)
      << "\" stroke=\"#111\" stroke-width=\"1.4\" stroke-dasharray=\"6 4\"/><text x=\"" << left + pw
      << "\" y=\"" << Px(YD((t.min_breach_rate)) - 3)
      << "\" font-size=\"9\" text-anchor=\"end\">threshold " << Pct(t.min_breach_rate) << "</text>";
  }
  if (!t.rate.empty()) {
    o << "<polyline class=\"rate\" fill=\"none\" stroke=\"#111\" stroke-width=\"2\" points=\"";
    for (size_t i = 0; i < t.rate.size(); ++i) {
      // A step line: the rate holds until the next deadline.
      if (i) o << X(t.rate[i].at) << "," << Y(t.rate[i - 1].rate) << " ";
      o << X(t.rate[i].at) << "," << Y(t.rate[i].rate) << " ";
    }
    o << "\"/>";
    for (const auto& p : t.rate) {
      o << "<rect x=\"" << Px(XD((p.at)) - 2) << "\" y=\"" << Px(YD((p.rate)) - 2)
        << "\" width=\"4\" height=\"4\" fill=\"#111\"><title>" << When(p.at) << ": " << p.breached
        << " of " << p.due << " due breached (" << Pct(p.rate) << ")</title></rect>";
    }
  }
  // Legend.
  double ly = h - 12;
  o << "<g font-size=\"10\"><rect x=\"" << left << "\" y=\"" << Px(ly - 7)
    << "\" width=\"18\" height=\"7\" fill=\"#c8c8c8\" stroke=\"#111\" stroke-width=\"0.6\"/>"
    << "<text x=\"" << left + 22 << "\" y=\"" << Px(ly) << "\">met / discharged</text>"
    << "<rect x=\"" << left + 120 << "\" y=\"" << Px(ly - 7)
    << "\" width=\"18\" height=\"7\" fill=\"#111\"/><text x=\"" << left + 142 << "\" y=\"" << Px(ly)
    << "\">breached</text><circle cx=\"" << left + 215 << "\" cy=\"" << Px(ly - 3.5)
    << "\" r=\"2.6\" fill=\"#fff\" stroke=\"#111\"/><text x=\"" << left + 222 << "\" y=\"" << Px(ly)
    << "\">action (claimed time)</text><path d=\"M" << left + 352 << " " << Px(ly - 7)
    << "l7 7m-7 0l7 -7\" stroke=\"#a00\" stroke-width=\"2.2\"/><text x=\"" << left + 364
    << "\" y=\"" << Px(ly) << "\">breach</text><line x1=\"" << left + 420 << "\" x2=\""
    << left + 450 << "\" y1=\"" << Px(ly - 3.5) << "\" y2=\"" << Px(ly - 3.5)
    << "\" stroke=\"#111\" stroke-width=\"2\"/><text x=\"" << left + 455 << "\" y=\"" << Px(ly)
    << "\">breach rate</text><line x1=\"" << left + 530 << "\" x2=\"" << left + 560 << "\" y1=\""
    << Px(ly - 3.5) << "\" y2=\"" << Px(ly - 3.5)
    << "\" stroke=\"#111\" stroke-width=\"1.4\" stroke-dasharray=\"6 4\"/><text x=\"" << left + 565
    << "\" y=\"" << Px(ly) << "\">threshold</text></g>";
  o << "</svg>";
  return o.str();
}

void RenderFindingDetails(const ReportData& d, const std::vector<Timeline>& timelines,
                          std::ostringstream& o) {
  for (size_t i = 0; i < d.findings.size(); ++i) {
    const v1::Finding& f = d.findings[i].finding;
    const Timeline& t = timelines[i];
    o << "<section class=\"finding-detail\" id=\"f" << i << "\"><h3>Finding "
      << Escape(f.finding_id()) << ": " << Escape(f.service_id()) << ", " << Escape(f.duty_id())
      << "</h3>";
    if (!t.summary.empty() || !t.statute.empty()) {
      o << "<p>" << Escape(t.summary)
        << (t.statute.empty() ? "" : " <em>(" + Escape(t.statute) + ")</em>") << "</p>";
    }
    o << "<p><strong>Why systemic:</strong> " << Escape(ledger::FindingReason(f)) << ".</p>";
    size_t drawn = 0;
    std::string svg = TimelineSvg(f, t, &drawn);
    size_t breached = 0, met = 0;
    for (const auto& ob : t.obligations) {
      if (ob.outcome == "breached") ++breached;
      if (ob.outcome == "met" || ob.outcome == "discharged") ++met;
    }
    o << "<figure class=\"timeline\">" << svg << "<figcaption>Each bar is an obligation, from the "
      << "report's receipt to its deadline; circles are the actions the platform recorded (at "
      << "the time it claims), crosses the breaches. The bands above are the "
      << "accountable people's tenures; dotted lines mark where they begin and end. The lower line "
         "is the share of obligations due in the preceding "
      << rules::FormatDuration(t.window_seconds)
      << " that were breached, recounted from the evidence at each deadline, against the "
         "threshold. "
      << drawn << " of " << t.obligations.size() << " obligations in the evidence drawn"
      << (drawn < t.obligations.size() ? " (evenly spaced in time; the rate counts them all)" : "")
      << ": " << breached << " breached, " << met << " met or discharged.</figcaption></figure>";
    if (!t.rate.empty()) {
      o << "<details><summary>Breach rate at each deadline (" << t.rate.size()
        << " points)</summary><pre class=\"rate-table\">";
      for (const auto& p : t.rate) {
        char line[96];
        std::snprintf(line, sizeof line, "%s  %5d of %5d due  %6s\n", When(p.at).c_str(),
                      p.breached, p.due, Pct(p.rate).c_str());
        o << line;
      }
      o << "</pre></details>";
    }
    o << "</section>";
  }
}

void RenderAppendix(const ReportData& d, std::ostringstream& o) {
  o << "<section id=\"appendix\"><h2>Evidence appendix</h2><p>For each finding, every event it "
       "rests on, with its leaf hash (SHA-256 of 0x00 and the event's exact bytes). Each was "
       "proved included in the checkpoint on the cover. To check a finding without trusting this "
       "report or carewatch's server, verify its bundle with the deployment's published key:</p>"
       "<pre>carewatch verify --evidence BUNDLE --vkey '"
    << Escape(d.cover.verifier_key) << "'</pre>";
  for (size_t i = 0; i < d.findings.size(); ++i) {
    const FindingEvidence& fe = d.findings[i];
    o << "<section class=\"evidence\" data-finding-id=\"" << Escape(fe.finding.finding_id())
      << "\"><h3>Finding " << Escape(fe.finding.finding_id()) << "</h3><p>" << fe.items.size()
      << " events. Bundle: "
      << (fe.bundle_file.empty() ? "<span class=\"muted\">not written (give --bundles DIR)</span>"
                                 : "<code>" + Escape(fe.bundle_file) + "</code>")
      << ". Check: <span class=\"" << (fe.verified ? "good" : "bad") << "\">" << Escape(fe.message)
      << "</span></p>";
    // Plain aligned lines: thousands of events lay out and print far faster
    // than a table, and copy into a terminal as they are.
    o << "<pre class=\"evidence-events\">"
      << "     seq  time (claimed/decided)  recorded at          "
      << "kind                    leaf hash\n";
    for (const auto& it : fe.items) {
      char line[160];
      std::snprintf(line, sizeof line, "%8llu  %-20s  %-19s  %-22s  ",
                    static_cast<unsigned long long>(it.event.seq),
                    rules::FormatDateTime(it.parsed.time().seconds()).c_str(),
                    it.parsed.has_recorded_at()
                        ? rules::FormatDateTime(it.parsed.recorded_at().seconds()).c_str()
                        : "-",
                    v1::EventType_Name(it.parsed.type()).c_str());
      o << line << HexEncode(it.event.leaf_hash) << "\n";
    }
    o << "</pre></section>";
  }
  o << "</section>";
}

}  // namespace

std::string RenderHtml(const ReportData& d) {
  std::vector<Timeline> timelines;
  int verified = 0;
  for (const auto& f : d.findings) {
    timelines.push_back(BuildTimeline(f));
    if (f.verified) ++verified;
  }
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
       "'unsafe-inline'; img-src data:\">"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       "<meta name=\"generator\" content=\"carewatch report\"><title>carewatch evidence report"
    << (d.cover.service.empty() ? "" : ": " + Escape(d.cover.service)) << "</title><style>"
    << kStyle << "</style></head><body>" << kDefs;
  RenderCover(d, verified, o);
  o << "<nav><h2>Contents</h2><ol><li><a href=\"#trends\">Trends</a></li><li><a "
       "href=\"#findings\">Findings</a> ("
    << d.findings.size() << ")</li>";
  for (size_t i = 0; i < d.findings.size(); ++i) {
    o << "<li><a href=\"#f" << i << "\">" << Escape(d.findings[i].finding.service_id()) << ", "
      << Escape(d.findings[i].finding.duty_id()) << " (" << Escape(d.findings[i].finding.status())
      << ")</a></li>";
  }
  o << "<li><a href=\"#appendix\">Evidence appendix</a></li></ol></nav>";
  RenderTrends(d, o);
  RenderFindingsTable(d, timelines, o);
  RenderFindingDetails(d, timelines, o);
  RenderAppendix(d, o);
  o << "<footer><p class=\"muted\">Made by carewatch from the signed checkpoint above. Report "
       "content carries no reported content: only ids, counts, times and digests.</p></footer>"
       "</body></html>\n";
  return o.str();
}

}  // namespace carewatch::report
