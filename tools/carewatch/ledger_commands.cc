// carewatch replay, verify and audit (offline, on a ledger file).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/digest.h"
#include "engine/duty/duty_engine.h"
#include "engine/eval/report_json.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/verify.h"
#include "engine/rules/duration.h"
#include "engine/server/metrics.h"
#include "tools/carewatch/common.h"

namespace carewatch::cli {

namespace {

Status ParseJsonLine(const std::string& line, google::protobuf::Message* msg) {
  google::protobuf::util::JsonParseOptions options;
  auto s = google::protobuf::util::JsonStringToMessage(line, msg, options);
  if (!s.ok()) return Status::InvalidArgument(std::string(s.message()));
  return Status::Ok();
}

std::optional<int64_t> ParseTimeArg(const std::string& text, std::string* error) {
  if (text.empty()) return std::nullopt;
  auto t = rules::ParseDateTime(text);
  if (!t) *error = "bad time '" + text + "': expected YYYY-MM-DD or RFC 3339";
  return t;
}

std::string HmacKeyFor(const std::string& ledger_url) {
  if (ledger_url.empty()) return "carewatch-replay-without-ledger";
  std::string key;
  Status s = ledger::LoadOrCreateHmacKey(ledger::LedgerDirectory(ledger_url) + "/hmac.key", &key);
  return s.ok() ? key : "";
}

}  // namespace

int RunReplay(const std::vector<std::string>& rules_paths, const std::string& input,
              const std::string& ledger_url, const std::string& until_text, int64_t sweep_interval,
              bool json) {
  auto evaluator = LoadEvaluator(rules_paths, false);
  if (!evaluator) return kExitFailure;
  std::string error;
  std::optional<int64_t> until = ParseTimeArg(until_text, &error);
  if (!error.empty()) {
    std::cerr << "error: --until: " << error << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ledger::Ledger> ledger;
  if (!ledger_url.empty()) {
    ledger::LedgerOptions options;
    options.url = ledger_url;
    Status s = ledger::Ledger::Open(options, &ledger);
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  // The simulated server clock: when carewatch learned of each line.
  int64_t sim_now = 0;
  duty::DutyEngineOptions options;
  options.hmac_key = HmacKeyFor(ledger_url);
  options.keep_history = true;
  options.wait_durable = false;  // durable at the end: ledger->Flush() below
  options.now = [&sim_now] { return sim_now; };
  duty::DutyEngine engine(ledger.get(), options);
  Status s = engine.Recover();
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  std::ifstream file;
  std::istream* in = &std::cin;
  if (input != "-") {
    file.open(input);
    if (!file) {
      std::cerr << input << ": error: cannot open\n";
      return kExitFailure;
    }
    in = &file;
  }
  std::shared_ptr<const eval::Evaluator> shared(std::move(evaluator));
  bool activated = false;
  int64_t last_time = INT64_MIN;
  uint64_t lineno = 0, reports = 0, actions = 0, bad = 0;
  // The sweeper runs every `sweep_interval` seconds of simulated time, as it
  // does in carewatchd; between events only the ticks that matter are run.
  auto sweep_at = [&](int64_t tick) {
    sim_now = std::max(sim_now, tick);
    return engine.Sweep(tick);
  };
  auto sweep_until = [&](int64_t t) -> Status {
    for (;;) {
      auto next = engine.NextSweepDue();
      if (!next) break;
      int64_t tick = (*next / sweep_interval + 1) * sweep_interval;
      if (tick > t) break;
      Status st = sweep_at(tick);
      if (!st.ok()) return st;
    }
    int64_t tick = t / sweep_interval * sweep_interval;
    if (tick > engine.clock()) return sweep_at(tick);
    return Status::Ok();
  };
  std::string line;
  while (std::getline(*in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    v1::ReplayEvent event;
    Status st = line.size() > eval::kMaxReportJsonBytes ? Status::InvalidArgument("line too large")
                                                        : ParseJsonLine(line, &event);
    int64_t t = 0;
    if (st.ok()) {
      if (event.has_report())
        t = event.report().received_at().seconds();
      else if (event.has_action())
        t = event.action().taken_at().seconds();
      else
        st = Status::InvalidArgument("expected {\"report\": {...}} or {\"action\": {...}}");
    }
    if (st.ok() && t <= 0)
      st = Status::InvalidArgument("event has no time (received_at / taken_at)");
    // When carewatch learned of the line: its own recorded_at, or the
    // claimed time. Lines come in this order.
    int64_t recorded = event.has_recorded_at() ? event.recorded_at().seconds() : t;
    if (st.ok() && recorded < t) {
      st = Status::InvalidArgument("recorded_at " + rules::FormatDateTime(recorded) +
                                   " is before the claimed time " + rules::FormatDateTime(t));
    }
    if (st.ok() && recorded < last_time) {
      st = Status::InvalidArgument("out of time order: " + rules::FormatDateTime(recorded) +
                                   " after " + rules::FormatDateTime(last_time));
    }
    if (st.ok()) st = sweep_until(recorded);
    if (st.ok()) sim_now = std::max(sim_now, recorded);
    if (st.ok() && !activated) {
      st = engine.Activate(shared);
      activated = st.ok();
    }
    if (st.ok()) {
      if (event.has_report()) {
        v1::Verdict verdict;
        st = engine.SubmitReport(event.report(), &verdict);
        ++reports;
      } else {
        duty::ActionInput a{event.action().service_id(), event.action().report_id(),
                            event.action().action(),     t,
                            event.action().actor(),      event.action().taken_at().nanos()};
        std::vector<v1::Obligation> obligations;
        st = engine.RecordAction(a, &obligations);
        ++actions;
      }
    }
    if (!st.ok()) {
      if (st.code() == Status::Code::kUnavailable) {
        std::cerr << "error: " << st.message() << "\n";
        return kExitFailure;
      }
      ++bad;
      std::cerr << input << ":" << lineno << ": error: " << st.message() << " (line skipped)\n";
      continue;
    }
    last_time = recorded;
  }
  // End: at --until, or once every deadline opened has passed.
  int64_t end = until.value_or(last_time);
  if (!until) {
    while (auto next = engine.NextSweepDue()) {
      int64_t tick = (*next / sweep_interval + 1) * sweep_interval;
      if (!sweep_at(tick).ok()) break;
      end = std::max(end, tick);
    }
  }
  if (activated && end > engine.clock()) {
    s = sweep_until(end);
    if (s.ok() && end > engine.clock()) s = sweep_at(end);
    if (!s.ok()) std::cerr << "error: " << s.message() << "\n";
  }
  if (ledger) {
    s = ledger->Flush();
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  std::vector<v1::Breach> breaches = engine.Breaches();
  std::vector<v1::Finding> findings = engine.Findings();
  if (json) {
    std::cout << "{\"breaches\":[";
    for (size_t i = 0; i < breaches.size(); ++i)
      std::cout << (i ? "," : "") << eval::ToJson(breaches[i]);
    std::cout << "],\"findings\":[";
    for (size_t i = 0; i < findings.size(); ++i)
      std::cout << (i ? "," : "") << eval::ToJson(findings[i]);
    std::cout << "]}\n";
  } else {
    auto c = engine.counts();
    std::cout << reports << " reports (" << c.flagged << " flagged), " << actions << " actions, "
              << bad << " lines skipped; obligations: " << c.met << " met, " << c.discharged
              << " discharged, " << c.breached << " breached, " << c.open << " open\n";
    std::cout << breaches.size() << " breaches, " << findings.size() << " findings\n";
    for (const v1::Finding& f : findings) {
      std::cout << "\nFINDING " << f.finding_id() << " (" << f.status() << ")  " << f.service_id()
                << "  " << f.duty_id() << "\n  opened "
                << rules::FormatDateTime(f.opened_at().seconds())
                << (f.status() == "closed"
                        ? "  closed " + rules::FormatDateTime(f.closed_at().seconds())
                        : "")
                << "\n  " << ledger::FindingReason(f) << "\n  " << f.breaches()
                << " breaches in this finding: " << f.breaches_missed() << " missed, "
                << f.breaches_late() << " late, " << f.breaches_late_recorded()
                << " late_recorded\n";
      for (const auto& p : f.accountable()) {
        std::cout << "  accountable: " << p.name() << ", " << p.role() << " ("
                  << ledger::TenureText(p) << "): " << p.breaches() << " breaches\n";
      }
      if (f.unattributed_breaches() > 0) {
        std::cout << "  no one accountable in post for " << f.unattributed_breaches()
                  << " breaches\n";
      }
    }
  }
  return bad > 0 ? kExitSkipped : kExitOk;
}

int RunVerify(const std::string& ledger_url, const std::string& trusted_key, bool require_key) {
  if (trusted_key.empty()) {
    if (require_key) {
      std::cout << "FAIL: --require-key: no trusted key given (--vkey or --pubkey)\n";
      return kExitFailure;
    }
    std::cerr << "WARNING: no trusted key given: this checks the ledger's integrity against the "
                 "key it stores about itself, not that the deployment signed it. Pass --vkey "
                 "with the verifier key the deployment published.\n";
  }
  std::unique_ptr<ledger::LedgerBackend> backend;
  Status s = ledger::OpenBackend(ledger_url, true, &backend);
  if (!s.ok()) {
    std::cerr << "FAIL: " << s.message() << "\n";
    return kExitFailure;
  }
  ledger::VerifyReport r = ledger::VerifyLedger(*backend, trusted_key);
  if (!r.ok) {
    std::cout << "FAIL: " << r.message << "\n";
    if (r.first_bad_seq) std::cout << "first bad sequence number: " << r.first_bad_seq << "\n";
    return kExitFailure;
  }
  std::cout << "OK: " << r.message
            << (r.authenticated ? "; signed by the trusted key"
                                : "; INTEGRITY ONLY: no trusted key was given")
            << "\n";
  return kExitOk;
}

int RunAuditOffline(const std::string& what, const std::string& ledger_url, const AuditFilters& f,
                    bool json) {
  std::unique_ptr<ledger::LedgerBackend> backend;
  Status s;
  std::unique_ptr<v1::Audit::Stub> remote;
  if (!f.server.empty()) {
    remote = v1::Audit::NewStub(Connect(f.server, f.ca_file));
  } else {
    s = ledger::OpenBackend(ledger_url, true, &backend);
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  auto rpc_error = [](const grpc::Status& st) {
    std::cerr << "error: " << st.error_message() << " (" << server::GrpcCodeName(st.error_code())
              << ")\n";
    return kExitFailure;
  };
  auto range = [&](v1::TimeRange* r, std::optional<int64_t> from, std::optional<int64_t> to) {
    if (from) r->mutable_from()->set_seconds(*from);
    if (to) r->mutable_to()->set_seconds(*to);
  };
  std::string error;
  auto from = ParseTimeArg(f.from, &error);
  auto to = ParseTimeArg(f.to, &error);
  if (!error.empty()) {
    std::cerr << "error: " << error << "\n";
    return kExitUsage;
  }
  if (what == "breaches") {
    ledger::BreachQuery q;
    q.service_id = f.service_id;
    q.duty_id = f.duty_id;
    q.rule_id = f.rule_id;
    q.from = from.value_or(INT64_MIN);
    q.to = to.value_or(INT64_MAX);
    q.limit = 1000;
    std::vector<std::pair<uint64_t, v1::Breach>> all;
    if (remote) {
      v1::ListBreachesRequest req;
      req.set_service_id(f.service_id);
      req.set_duty_id(f.duty_id);
      req.set_rule_id(f.rule_id);
      range(req.mutable_range(), from, to);
      req.set_page_size(1000);
      for (;;) {
        v1::ListBreachesResponse resp;
        grpc::ClientContext ctx;
        Authorize(&ctx, f.token);
        grpc::Status st = remote->ListBreaches(&ctx, req, &resp);
        if (!st.ok()) return rpc_error(st);
        for (const auto& b : resp.breaches()) all.emplace_back(0, b);
        if (resp.next_page_token().empty()) break;
        req.set_page_token(resp.next_page_token());
      }
    }
    for (; !remote;) {
      std::vector<std::pair<uint64_t, v1::Breach>> page;
      s = backend->QueryBreaches(q, &page);
      if (!s.ok()) break;
      all.insert(all.end(), page.begin(), page.end());
      if (page.size() < q.limit) break;
      q.after_seq = page.back().first;
    }
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
    for (const auto& [seq, b] : all) {
      if (json) {
        std::cout << eval::ToJson(b) << "\n";
      } else {
        auto join = [](const google::protobuf::RepeatedPtrField<std::string>& list) {
          std::string out;
          for (const auto& a : list) out += (out.empty() ? "" : ",") + a;
          return out.empty() ? std::string("-") : out;
        };
        std::printf("%8llu  %s  %-16s %-26s %-36s %-13s %s  missing:%s late:%s\n",
                    static_cast<unsigned long long>(seq),
                    rules::FormatDateTime(b.at().seconds()).c_str(), b.service_id().c_str(),
                    b.duty_id().c_str(), b.rule_id().c_str(), b.kind().c_str(),
                    b.report_id().c_str(), join(b.missing_actions()).c_str(),
                    join(b.late_actions()).c_str());
      }
    }
    if (!json) std::cout << all.size() << " breaches\n";
    return kExitOk;
  }
  if (what == "findings") {
    ledger::FindingQuery q;
    q.service_id = f.service_id;
    q.duty_id = f.duty_id;
    q.from = from.value_or(INT64_MIN);
    q.to = to.value_or(INT64_MAX);
    q.limit = 100000;
    std::vector<v1::Finding> all;
    if (remote) {
      v1::ListFindingsRequest req;
      req.set_service_id(f.service_id);
      req.set_duty_id(f.duty_id);
      range(req.mutable_range(), from, to);
      req.set_page_size(1000);
      for (;;) {
        v1::ListFindingsResponse resp;
        grpc::ClientContext ctx;
        Authorize(&ctx, f.token);
        grpc::Status st = remote->ListFindings(&ctx, req, &resp);
        if (!st.ok()) return rpc_error(st);
        all.insert(all.end(), resp.findings().begin(), resp.findings().end());
        if (resp.next_page_token().empty()) break;
        req.set_page_token(resp.next_page_token());
      }
    } else {
      s = backend->QueryFindings(q, &all);
    }
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
    for (const v1::Finding& x : all) {
      if (json) {
        std::cout << eval::ToJson(x) << "\n";
        continue;
      }
      std::cout << x.finding_id() << "  " << x.status() << "  " << x.service_id() << "  "
                << x.duty_id() << "  opened " << rules::FormatDateTime(x.opened_at().seconds())
                << (x.status() == "closed"
                        ? "  closed " + rules::FormatDateTime(x.closed_at().seconds())
                        : std::string())
                << "\n    " << ledger::FindingReason(x) << "\n    " << x.breaches()
                << " breaches in this finding: " << x.breaches_missed() << " missed, "
                << x.breaches_late() << " late, " << x.breaches_late_recorded()
                << " late_recorded\n";
      for (const auto& p : x.accountable()) {
        std::cout << "    " << p.name() << " (" << p.role() << ", " << ledger::TenureText(p)
                  << "): " << p.breaches() << " breaches\n";
      }
      if (x.unattributed_breaches())
        std::cout << "    nobody accountable: " << x.unattributed_breaches() << " breaches\n";
    }
    if (!json) std::cout << all.size() << " findings\n";
    return kExitOk;
  }
  if (what == "evidence") return RunAuditEvidence(ledger_url, f, json);
  if (what == "entries") return RunAuditEntries(ledger_url, f, json);
  if (what == "prove") return RunAuditProve(ledger_url, f, json);
  if (what == "stats") {
    std::vector<ledger::PeriodStats> stats;
    if (remote) {
      v1::GetStatsRequest req;
      req.set_service_id(f.service_id);
      req.set_period(f.period);
      range(req.mutable_range(), from, to);
      do {  // every page
        v1::GetStatsResponse resp;
        grpc::ClientContext ctx;
        Authorize(&ctx, f.token);
        grpc::Status st = remote->GetStats(&ctx, req, &resp);
        if (!st.ok()) return rpc_error(st);
        for (const auto& p : resp.periods()) stats.push_back(ledger::FromProto(p));
        req.set_page_token(resp.next_page_token());
      } while (!req.page_token().empty());
    } else {
      s = ledger::ComputeStats(*backend, f.service_id, f.period, from.value_or(INT64_MIN),
                               to.value_or(INT64_MAX), &stats);
    }
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
    for (const auto& p : stats) {
      if (json) {
        std::cout << "{\"period\":\"" << p.period << "\",\"reports\":" << p.reports
                  << ",\"flagged\":" << p.flagged << ",\"obligations\":" << p.obligations
                  << ",\"breaches\":" << p.breaches << ",\"findings\":" << p.findings;
        if (p.has_previous) {
          std::cout << ",\"reports_change_pct\":" << p.reports_change
                    << ",\"flagged_change_pct\":" << p.flagged_change
                    << ",\"obligations_change_pct\":" << p.obligations_change
                    << ",\"breaches_change_pct\":" << p.breaches_change
                    << ",\"findings_change_pct\":" << p.findings_change;
        }
        if (p.has_year_ago) {
          std::cout << ",\"reports_year_change_pct\":" << p.reports_year_change
                    << ",\"flagged_year_change_pct\":" << p.flagged_year_change
                    << ",\"obligations_year_change_pct\":" << p.obligations_year_change
                    << ",\"breaches_year_change_pct\":" << p.breaches_year_change
                    << ",\"findings_year_change_pct\":" << p.findings_year_change;
        }
        std::cout << ",\"by_reason\":{";
        bool first = true;
        for (const auto& [k, v] : p.by_reason) {
          std::cout << (first ? "" : ",") << "\"" << k << "\":" << v;
          first = false;
        }
        std::cout << "},\"by_surface\":{";
        first = true;
        for (const auto& [k, v] : p.by_surface) {
          std::cout << (first ? "" : ",") << "\"" << k << "\":" << v;
          first = false;
        }
        std::cout << "},\"breaches_by_kind\":{";
        first = true;
        for (const auto& [k, v] : p.breaches_by_kind) {
          std::cout << (first ? "" : ",") << "\"" << k << "\":" << v;
          first = false;
        }
        std::cout << "}}\n";
      } else {
        std::printf(
            "%-8s reports %8lld  flagged %7lld  obligations %7lld  breaches %6lld  findings %4lld",
            p.period.c_str(), static_cast<long long>(p.reports), static_cast<long long>(p.flagged),
            static_cast<long long>(p.obligations), static_cast<long long>(p.breaches),
            static_cast<long long>(p.findings));
        auto kind = [&](const char* k) {
          auto it = p.breaches_by_kind.find(k);
          return static_cast<long long>(it == p.breaches_by_kind.end() ? 0 : it->second);
        };
        std::printf(" (missed %lld, late %lld, late_recorded %lld)", kind("missed"), kind("late"),
                    kind("late_recorded"));
        if (p.has_previous)
          std::printf("   reports %+.1f%%  breaches %+.1f%%", p.reports_change, p.breaches_change);
        if (p.has_year_ago)
          std::printf("   a year before: reports %+.1f%%  breaches %+.1f%%", p.reports_year_change,
                      p.breaches_year_change);
        std::printf("\n");
      }
    }
    return kExitOk;
  }
  std::cerr << "error: unknown audit query '" << what
            << "' (breaches, findings, evidence, entries, prove, stats)\n";
  return kExitUsage;
}

}  // namespace carewatch::cli
