// carewatch audit: the regulator's queries, on a ledger file or a carewatchd.
// A source answers in the Audit service's messages whichever it reads; the
// printers turn those into a table or, with --json, the protobuf JSON
// mapping of the same messages (one per line).
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/eval/report_json.h"
#include "engine/ledger/audit.h"
#include "engine/rules/duration.h"
#include "tools/carewatch/common.h"

namespace carewatch::cli {

namespace {

// Where the answers come from. Each call returns every page.
class AuditSource {
 public:
  virtual ~AuditSource() = default;
  virtual Status Breaches(v1::ListBreachesRequest req, std::vector<v1::Breach>* out) = 0;
  virtual Status Findings(v1::ListFindingsRequest req, std::vector<v1::Finding>* out) = 0;
  virtual Status Stats(v1::GetStatsRequest req, std::vector<v1::PeriodStats>* out) = 0;
  virtual Status Linkage(v1::GetLinkageStatsRequest req, std::vector<v1::LinkageStatsRow>* out) = 0;
};

int64_t FromOr(const v1::TimeRange& r, int64_t fallback) {
  return r.has_from() ? r.from().seconds() : fallback;
}
int64_t ToOr(const v1::TimeRange& r, int64_t fallback) {
  return r.has_to() ? r.to().seconds() : fallback;
}

// A ledger file, read with the same queries carewatchd answers from.
class LedgerSource : public AuditSource {
 public:
  // Every page of a listing from one snapshot of the ledger, even while
  // carewatchd writes it.
  explicit LedgerSource(std::unique_ptr<ledger::LedgerBackend> b)
      : b_(std::move(b)), snapshot_(std::make_unique<ledger::ReadSnapshot>(*b_)) {}
  const Status& opened() const { return snapshot_->status(); }

  Status Breaches(v1::ListBreachesRequest req, std::vector<v1::Breach>* out) override {
    ledger::BreachQuery q;
    q.service_id = req.service_id();
    q.duty_id = req.duty_id();
    q.rule_id = req.rule_id();
    q.from = FromOr(req.range(), INT64_MIN);
    q.to = ToOr(req.range(), INT64_MAX);
    q.limit = 1000;
    for (;;) {
      std::vector<std::pair<uint64_t, v1::Breach>> page;
      Status s = b_->QueryBreaches(q, &page);
      if (!s.ok()) return s;
      for (auto& [seq, b] : page) {
        b.set_ledger_seq(seq);
        out->push_back(std::move(b));
      }
      if (page.size() < q.limit) return Status::Ok();
      q.after_seq = page.back().first;
    }
  }

  Status Findings(v1::ListFindingsRequest req, std::vector<v1::Finding>* out) override {
    ledger::FindingQuery q;
    q.service_id = req.service_id();
    q.duty_id = req.duty_id();
    q.status = req.status();
    q.overlap = true;  // as ListFindings
    q.from = FromOr(req.range(), INT64_MIN);
    q.to = ToOr(req.range(), INT64_MAX);
    q.limit = 1000;
    for (;;) {
      size_t before = out->size();
      Status s = b_->QueryFindings(q, out);
      if (!s.ok()) return s;
      if (out->size() - before < q.limit) return Status::Ok();
      q.after_id = out->back().finding_id();
    }
  }

  Status Stats(v1::GetStatsRequest req, std::vector<v1::PeriodStats>* out) override {
    std::vector<ledger::PeriodStats> stats;
    Status s =
        ledger::ComputeStats(*b_, req.service_id(), req.period(), FromOr(req.range(), INT64_MIN),
                             ToOr(req.range(), INT64_MAX), &stats);
    for (const ledger::PeriodStats& p : stats) ledger::ToProto(p, &out->emplace_back());
    return s;
  }

  Status Linkage(v1::GetLinkageStatsRequest req, std::vector<v1::LinkageStatsRow>* out) override {
    return ledger::LinkageStats(*b_, req.service_id(), FromOr(req.range(), INT64_MIN),
                                ToOr(req.range(), INT64_MAX), req.period(), out);
  }

 private:
  std::unique_ptr<ledger::LedgerBackend> b_;
  std::unique_ptr<ledger::ReadSnapshot> snapshot_;  // ended before b_ closes
};

// A carewatchd's Audit service, with a regulator's token.
class ServerSource : public AuditSource {
 public:
  ServerSource(const AuditFilters& f)
      : stub_(v1::Audit::NewStub(Connect(f.server, f.ca_file))), token_(f.token) {}

  Status Breaches(v1::ListBreachesRequest req, std::vector<v1::Breach>* out) override {
    req.set_page_size(1000);
    return Pages<v1::ListBreachesResponse>(req, &v1::Audit::Stub::ListBreaches, "ListBreaches",
                                           [&](v1::ListBreachesResponse& r) {
                                             for (auto& b : *r.mutable_breaches())
                                               out->push_back(std::move(b));
                                             return r.breaches_size();
                                           });
  }
  Status Findings(v1::ListFindingsRequest req, std::vector<v1::Finding>* out) override {
    req.set_page_size(1000);
    return Pages<v1::ListFindingsResponse>(req, &v1::Audit::Stub::ListFindings, "ListFindings",
                                           [&](v1::ListFindingsResponse& r) {
                                             for (auto& x : *r.mutable_findings())
                                               out->push_back(std::move(x));
                                             return r.findings_size();
                                           });
  }
  Status Stats(v1::GetStatsRequest req, std::vector<v1::PeriodStats>* out) override {
    return Pages<v1::GetStatsResponse>(req, &v1::Audit::Stub::GetStats, "GetStats",
                                       [&](v1::GetStatsResponse& r) {
                                         for (auto& p : *r.mutable_periods())
                                           out->push_back(std::move(p));
                                         return r.periods_size();
                                       });
  }
  Status Linkage(v1::GetLinkageStatsRequest req, std::vector<v1::LinkageStatsRow>* out) override {
    v1::GetLinkageStatsResponse resp;
    grpc::ClientContext ctx;
    Authorize(&ctx, token_);
    Status s = FromGrpc(stub_->GetLinkageStats(&ctx, req, &resp), "GetLinkageStats");
    for (auto& r : *resp.mutable_rows()) out->push_back(std::move(r));
    return s;
  }

 private:
  // Calls `method` until the last page, handing each answer to `take`,
  // which returns the number of items it took.
  template <typename Response, typename Request, typename Method, typename Take>
  Status Pages(Request& req, Method method, const char* what, Take take) {
    PageCheck pages(what);
    for (;;) {
      Response resp;
      grpc::ClientContext ctx;
      Authorize(&ctx, token_);
      Status s = FromGrpc(((*stub_).*method)(&ctx, req, &resp), what);
      if (!s.ok()) return s;
      s = pages.Page(take(resp), resp.next_page_token());
      if (!s.ok()) return s;
      if (resp.next_page_token().empty()) return Status::Ok();
      req.set_page_token(resp.next_page_token());
    }
  }

  std::unique_ptr<v1::Audit::Stub> stub_;
  std::string token_;
};

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& list) {
  std::string out;
  for (const auto& a : list) out += (out.empty() ? "" : ",") + a;
  return out.empty() ? std::string("-") : out;
}

// Breaches in the order they happened (then ledger order), one a row.
void PrintBreaches(std::vector<v1::Breach> all, bool json) {
  std::stable_sort(all.begin(), all.end(), [](const v1::Breach& a, const v1::Breach& b) {
    return std::make_pair(a.at().seconds(), a.ledger_seq()) <
           std::make_pair(b.at().seconds(), b.ledger_seq());
  });
  if (json) {
    for (const auto& b : all) std::cout << eval::ToJson(b) << "\n";
    return;
  }
  std::printf("%8s  %-20s  %-16s %-26s %-42s %-13s %-14s %-46s %s\n", "SEQ", "AT (UTC)", "SERVICE",
              "DUTY", "RULE", "KIND", "REPORT", "MISSING", "LATE");
  for (const auto& b : all) {
    std::printf("%8llu  %-20s  %-16s %-26s %-42s %-13s %-14s %-46s %s\n",
                static_cast<unsigned long long>(b.ledger_seq()),
                rules::FormatDateTime(b.at().seconds()).c_str(), b.service_id().c_str(),
                b.duty_id().c_str(), b.rule_id().c_str(), b.kind().c_str(), b.report_id().c_str(),
                Join(b.missing_actions()).c_str(), Join(b.late_actions()).c_str());
  }
  std::cout << all.size() << " breaches\n";
}

// Findings in the order they were opened, one block each.
void PrintFindings(std::vector<v1::Finding> all, bool json) {
  std::stable_sort(all.begin(), all.end(), [](const v1::Finding& a, const v1::Finding& b) {
    return std::make_pair(a.opened_at().seconds(), a.finding_id()) <
           std::make_pair(b.opened_at().seconds(), b.finding_id());
  });
  if (json) {
    for (const auto& x : all) std::cout << eval::ToJson(x) << "\n";
    return;
  }
  for (const v1::Finding& x : all) {
    std::cout << x.finding_id() << "  " << x.status() << "  " << x.service_id() << "  "
              << x.duty_id() << "  opened " << rules::FormatDateTime(x.opened_at().seconds())
              << (x.status() == "closed"
                      ? "  closed " + rules::FormatDateTime(x.closed_at().seconds())
                      : std::string())
              << "\n    " << ledger::FindingReason(x) << "\n    " << x.breaches()
              << " breaches in this finding: " << x.breaches_missed() << " missed, "
              << x.breaches_late() << " late, " << x.breaches_late_recorded() << " late_recorded\n";
    for (const auto& p : x.accountable()) {
      std::cout << "    " << p.name() << " (" << p.role() << ", " << ledger::TenureText(p)
                << "): " << p.breaches() << " breaches\n";
    }
    if (x.unattributed_breaches())
      std::cout << "    nobody accountable: " << x.unattributed_breaches() << " breaches\n";
  }
  std::cout << all.size() << " findings\n";
}

std::string Breakdown(const google::protobuf::RepeatedPtrField<v1::CountByKey>& counts) {
  std::vector<const v1::CountByKey*> sorted;
  for (const auto& c : counts) sorted.push_back(&c);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto* a, const auto* b) { return a->count() > b->count(); });
  std::string out;
  for (const auto* c : sorted)
    out += (out.empty() ? "" : ", ") + c->key() + " " + std::to_string(c->count());
  return out.empty() ? "-" : out;
}

// One row of counts a period, its changes ("new" from 0) and breakdowns.
void PrintStats(const std::vector<v1::PeriodStats>& stats, bool json) {
  if (json) {
    for (const auto& p : stats) std::cout << eval::ToJson(p) << "\n";
    return;
  }
  std::printf("%-8s %9s %8s %12s %9s %9s  %s\n", "PERIOD", "REPORTS", "FLAGGED", "OBLIGATIONS",
              "BREACHES", "FINDINGS", "BREACHES BY KIND");
  for (const auto& p : stats) {
    int64_t kinds[3] = {0, 0, 0};
    for (const auto& c : p.breaches_by_kind()) {
      if (c.key() == "missed") kinds[0] = c.count();
      if (c.key() == "late") kinds[1] = c.count();
      if (c.key() == "late_recorded") kinds[2] = c.count();
    }
    std::printf("%-8s %9lld %8lld %12lld %9lld %9lld  missed %lld, late %lld, late_recorded %lld\n",
                p.period().c_str(), static_cast<long long>(p.reports()),
                static_cast<long long>(p.flagged()), static_cast<long long>(p.obligations()),
                static_cast<long long>(p.breaches()), static_cast<long long>(p.findings()),
                static_cast<long long>(kinds[0]), static_cast<long long>(kinds[1]),
                static_cast<long long>(kinds[2]));
    auto changes = [&](const char* label, const v1::PeriodCounts& was) {
      std::printf("%-8s %9s %8s %12s %9s %9s  %s\n", "",
                  ledger::FormatChange(p.reports(), was.reports()).c_str(),
                  ledger::FormatChange(p.flagged(), was.flagged()).c_str(),
                  ledger::FormatChange(p.obligations(), was.obligations()).c_str(),
                  ledger::FormatChange(p.breaches(), was.breaches()).c_str(),
                  ledger::FormatChange(p.findings(), was.findings()).c_str(), label);
    };
    if (p.has_previous()) changes("change on the previous period", p.previous_counts());
    if (p.has_year_ago()) changes("change on the same period a year before", p.year_ago_counts());
    std::printf("         by reason:  %s\n", Breakdown(p.by_reason()).c_str());
    std::printf("         by surface: %s\n", Breakdown(p.by_surface()).c_str());
  }
}

void PrintLinkage(const std::vector<v1::LinkageStatsRow>& rows, bool json) {
  if (json) {
    for (const auto& r : rows) std::cout << eval::ToJson(r) << "\n";
    return;
  }
  std::printf("%-10s %-20s %-30s %7s %8s %9s %8s  %s\n", "PERIOD", "SERVICE", "CATEGORY", "ALERTS",
              "REVIEWED", "WITHDRAWN", "BREACHES", "MEAN REVIEW");
  for (const auto& r : rows) {
    std::printf("%-10s %-20s %-30s %7lld %8lld %9lld %8lld  %s\n", r.period().c_str(),
                r.service_id().c_str(), r.category().empty() ? "-" : r.category().c_str(),
                static_cast<long long>(r.alerts()), static_cast<long long>(r.reviewed()),
                static_cast<long long>(r.withdrawn()), static_cast<long long>(r.breaches()),
                r.reviewed() > 0
                    ? rules::FormatDuration(static_cast<int64_t>(r.mean_review_seconds())).c_str()
                    : "-");
  }
}

int RunAudit(const std::string& what, const std::string& ledger_url, const AuditFilters& f,
             bool json) {
  if (what == "evidence") return RunAuditEvidence(ledger_url, f, json);
  if (what == "entries") return RunAuditEntries(ledger_url, f, json);
  if (what == "prove") return RunAuditProve(ledger_url, f, json);
  std::unique_ptr<AuditSource> source;
  if (!f.server.empty()) {
    source = std::make_unique<ServerSource>(f);
  } else {
    std::unique_ptr<ledger::LedgerBackend> backend;
    Status s = ledger::OpenBackend(ledger_url, true, &backend);
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
    auto ls = std::make_unique<LedgerSource>(std::move(backend));
    if (!ls->opened().ok()) {
      std::cerr << "error: " << ls->opened().message() << "\n";
      return kExitFailure;
    }
    source = std::move(ls);
  }
  v1::TimeRange range;
  for (bool is_to : {false, true}) {
    const std::string& text = is_to ? f.to : f.from;
    if (text.empty()) continue;
    auto t = rules::ParseDateTime(text);
    if (!t) {
      std::cerr << "error: " << (is_to ? "--to" : "--from") << ": bad date or time '" << text
                << "' (YYYY-MM-DD or RFC 3339)\n";
      return kExitUsage;
    }
    // A date alone in --to means the whole of that day.
    if (is_to)
      range.mutable_to()->set_seconds(*t + (text.size() == 10 ? 86399 : 0));
    else
      range.mutable_from()->set_seconds(*t);
  }
  Status s;
  if (what == "breaches") {
    v1::ListBreachesRequest req;
    req.set_service_id(f.service_id);
    req.set_duty_id(f.duty_id);
    req.set_rule_id(f.rule_id);
    *req.mutable_range() = range;
    std::vector<v1::Breach> all;
    s = source->Breaches(req, &all);
    if (s.ok()) PrintBreaches(std::move(all), json);
  } else if (what == "findings") {
    v1::ListFindingsRequest req;
    req.set_service_id(f.service_id);
    req.set_duty_id(f.duty_id);
    req.set_status(f.status);
    *req.mutable_range() = range;
    std::vector<v1::Finding> all;
    s = source->Findings(req, &all);
    if (s.ok()) PrintFindings(std::move(all), json);
  } else if (what == "linkage") {
    if (f.period != "day" && f.period != "month") {
      std::cerr << "error: audit linkage takes --period day or month\n";
      return kExitUsage;
    }
    v1::GetLinkageStatsRequest req;
    req.set_service_id(f.service_id);
    req.set_period(f.period);
    *req.mutable_range() = range;
    std::vector<v1::LinkageStatsRow> rows;
    s = source->Linkage(req, &rows);
    if (s.ok()) PrintLinkage(rows, json);
  } else {
    if (f.period == "day") {
      std::cerr << "error: audit stats takes --period month, quarter or year\n";
      return kExitUsage;
    }
    v1::GetStatsRequest req;
    req.set_service_id(f.service_id);
    req.set_period(f.period);
    *req.mutable_range() = range;
    std::vector<v1::PeriodStats> stats;
    s = source->Stats(req, &stats);
    if (s.ok()) PrintStats(stats, json);
  }
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void RegisterAuditCommands(CommandTable& table) {
  struct Options {
    AuditFilters filters;
    std::string what, ledger_url;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  AuditFilters& f = o->filters;
  CLI::App* audit = table.Add("audit",
                              "Regulator queries: breaches | findings | evidence ID | entries | "
                              "prove SEQ | stats | linkage",
                              [o] {
                                AuditFilters& f = o->filters;
                                if (o->ledger_url.empty() && f.server.empty()) {
                                  std::cerr << "error: audit needs --ledger or --server\n";
                                  return kExitUsage;
                                }
                                if (o->what == "prove") {
                                  char* end = nullptr;
                                  f.seq = std::strtoull(f.finding_id.c_str(), &end, 10);
                                  if (f.finding_id.empty() || *end != '\0' || f.seq == 0) {
                                    std::cerr
                                        << "error: audit prove needs a SEQ (a positive number)\n";
                                    return kExitUsage;
                                  }
                                }
                                return RunAudit(o->what, o->ledger_url, f, o->json);
                              });
  audit
      ->add_option("query", o->what,
                   "breaches, findings, evidence, entries, prove, stats or linkage")
      ->required()
      ->check(CLI::IsMember(
          {"breaches", "findings", "evidence", "entries", "prove", "stats", "linkage"}));
  audit->add_option("id", f.finding_id, "evidence: the finding; prove: the seq");
  audit->add_option("--bundle", f.bundle,
                    "evidence: write a self-contained bundle file (check with verify --evidence)");
  audit->add_option("--start", f.start_seq, "entries: first seq (default 1)");
  audit->add_option("--end", f.end_seq, "entries: last seq (default: the end)");
  audit->add_option("--tree-size", f.tree_size,
                    "prove: against the checkpoint of this size (default: a new one)");
  AddSourceOptions(audit, &o->ledger_url, &f.server, &f.token, &f.ca_file);
  audit->add_option("--service", f.service_id, "Only this service");
  audit->add_option("--duty", f.duty_id, "Only this duty");
  audit->add_option("--rule", f.rule_id, "breaches: only this rule");
  audit->add_option("--status", f.status, "findings: only open or only closed ones")
      ->check(CLI::IsMember({"open", "closed"}));
  audit->add_option("--from", f.from,
                    "From this date or time (UTC). breaches: the breach's moment; findings: open "
                    "at some moment from here; stats: periods from this day");
  audit->add_option("--to", f.to, "Up to this date (the whole day) or time, as --from");
  audit
      ->add_option("--period", f.period,
                   "stats: month, quarter or year; linkage: day or month (default month)")
      ->check(CLI::IsMember({"day", "month", "quarter", "year"}));
  audit->add_flag("--json", o->json,
                  "One message a line in the protobuf JSON mapping (Breach, Finding, PeriodStats, "
                  "LinkageStatsRow)");
}

}  // namespace carewatch::cli
