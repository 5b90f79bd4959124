// carewatch report: gathers a checkpoint, the statistics and every finding's
// evidence from a ledger or a live carewatchd, checks them, and writes the
// evidence report (engine/report) as one HTML file, and a PDF on request.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "engine/eval/report_json.h"
#include "engine/ledger/evidence.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/note.h"
#include "engine/ledger/verify.h"
#include "engine/report/report.h"
#include "engine/rules/duration.h"
#include "tools/carewatch/common.h"

namespace carewatch::cli {

namespace {

// Where the report's data come from: a ledger file or a carewatchd.
class Source {
 public:
  virtual ~Source() = default;
  virtual std::string Describe() const = 0;
  virtual Status Findings(const std::string& service, int64_t from, int64_t to,
                          std::vector<v1::Finding>* out) = 0;
  // A signed checkpoint covering every finding listed before the call, the
  // verifier key the source states, and the log's key handovers.
  virtual Status Checkpoint(v1::Checkpoint* out, std::string* vkey,
                            std::vector<v1::KeyRotationEntry>* rotations) = 0;
  virtual Status Evidence(const std::string& finding_id, const v1::Checkpoint& c,
                          ledger::Evidence* out) = 0;
  // Statistics for `service` (empty: every service), and the services seen.
  virtual Status Stats(const std::string& service, const std::string& period, int64_t from,
                       int64_t to, std::vector<ledger::PeriodStats>* out,
                       std::vector<std::string>* services) = 0;
};

class LedgerSource : public Source {
 public:
  // The whole report reads one snapshot of the ledger: its findings,
  // checkpoint, evidence, statistics and check agree with each other even
  // while carewatchd writes the ledger.
  explicit LedgerSource(std::unique_ptr<ledger::LedgerBackend> b)
      : b_(std::move(b)), snapshot_(std::make_unique<ledger::ReadSnapshot>(*b_)) {}
  const Status& opened() const { return snapshot_->status(); }
  std::string Describe() const override { return "ledger " + b_->url(); }
  ledger::LedgerBackend& backend() { return *b_; }

  Status Findings(const std::string& service, int64_t from, int64_t to,
                  std::vector<v1::Finding>* out) override {
    ledger::FindingQuery q;
    q.service_id = service;
    q.from = from;
    q.to = to;
    q.limit = 1000;
    for (;;) {
      std::vector<v1::Finding> page;
      Status s = b_->QueryFindings(q, &page);
      if (!s.ok()) return s;
      out->insert(out->end(), page.begin(), page.end());
      if (page.size() < q.limit) return Status::Ok();
      q.after_id = page.back().finding_id();
    }
  }

  Status Checkpoint(v1::Checkpoint* out, std::string* vkey,
                    std::vector<v1::KeyRotationEntry>* rotations) override {
    bool found = false;
    Status s = b_->ReadCheckpoint(0, out, &found);
    if (s.ok() && !found) return Status::NotFound("the ledger has no signed checkpoint yet");
    if (s.ok()) s = LocalVerifierKey(*b_, vkey);
    // The cover's list of key changes is advisory: an event that cannot be
    // read leaves it empty, and the ledger check names that event.
    if (s.ok() && !ledger::ReadKeyRotations(*b_, 16, rotations).ok()) rotations->clear();
    return s;
  }

  Status Evidence(const std::string& finding_id, const v1::Checkpoint& c,
                  ledger::Evidence* out) override {
    ledger::LedgerBackend* b = b_.get();
    ledger::NodeReader read = ledger::StoredNodeReader(
        [b](int level, uint64_t index, ledger::Hash* h) { return b->ReadNode(level, index, h); });
    return ledger::BuildEvidence(
        *b_,
        [&](uint64_t seq, uint64_t size, std::vector<ledger::Hash>* proof) {
          if (seq == 0 || seq > size) return Status::DataLoss("seq outside the checkpoint");
          return ledger::InclusionProofFromNodes(seq - 1, size, read, proof);
        },
        c, finding_id, 0, SIZE_MAX, out);
  }

  Status Stats(const std::string& service, const std::string& period, int64_t from, int64_t to,
               std::vector<ledger::PeriodStats>* out, std::vector<std::string>* services) override {
    return ledger::ComputeStats(*b_, service, period, from, to, out, services);
  }

 private:
  std::unique_ptr<ledger::LedgerBackend> b_;
  std::unique_ptr<ledger::ReadSnapshot> snapshot_;  // ended before b_ closes
};

class ServerSource : public Source {
 public:
  ServerSource(const std::string& server, const std::string& token, const std::string& ca)
      : server_(server), token_(token), audit_(v1::Audit::NewStub(Connect(server, ca))) {}
  std::string Describe() const override { return "carewatchd " + server_; }

  Status Findings(const std::string& service, int64_t from, int64_t to,
                  std::vector<v1::Finding>* out) override {
    v1::ListFindingsRequest req;
    req.set_service_id(service);
    if (from != INT64_MIN) req.mutable_range()->mutable_from()->set_seconds(from);
    if (to != INT64_MAX) req.mutable_range()->mutable_to()->set_seconds(to);
    req.set_page_size(1000);
    PageCheck pages("ListFindings");
    for (;;) {
      v1::ListFindingsResponse resp;
      grpc::ClientContext ctx;
      Authorize(&ctx, token_);
      Status s = FromGrpc(audit_->ListFindings(&ctx, req, &resp), "ListFindings");
      if (!s.ok()) return s;
      out->insert(out->end(), resp.findings().begin(), resp.findings().end());
      s = pages.Page(static_cast<size_t>(resp.findings_size()), resp.next_page_token());
      if (!s.ok()) return s;
      if (resp.next_page_token().empty()) return Status::Ok();
      req.set_page_token(resp.next_page_token());
    }
  }

  Status Checkpoint(v1::Checkpoint* out, std::string* vkey,
                    std::vector<v1::KeyRotationEntry>* rotations) override {
    v1::GetCheckpointResponse resp;
    grpc::ClientContext ctx;
    Authorize(&ctx, token_);
    Status s = FromGrpc(audit_->GetCheckpoint(&ctx, {}, &resp), "GetCheckpoint");
    *out = resp.checkpoint();
    *vkey = resp.verifier_key();
    // The server's word, as the cover says; a few at most.
    for (int i = std::max(0, resp.key_rotations_size() - 16); i < resp.key_rotations_size(); ++i)
      rotations->push_back(resp.key_rotations(i));
    return s;
  }

  Status Evidence(const std::string& finding_id, const v1::Checkpoint& c,
                  ledger::Evidence* out) override {
    return FetchRemote(*audit_, token_, finding_id, out, c.tree_size());
  }

  Status Stats(const std::string& service, const std::string& period, int64_t from, int64_t to,
               std::vector<ledger::PeriodStats>* out, std::vector<std::string>* services) override {
    v1::GetStatsRequest req;
    req.set_service_id(service);
    req.set_period(period);
    if (from != INT64_MIN) req.mutable_range()->mutable_from()->set_seconds(from);
    if (to != INT64_MAX) req.mutable_range()->mutable_to()->set_seconds(to);
    PageCheck pages("GetStats");
    do {  // every page; the services come on the first
      v1::GetStatsResponse resp;
      grpc::ClientContext ctx;
      Authorize(&ctx, token_);
      Status s = FromGrpc(audit_->GetStats(&ctx, req, &resp), "GetStats");
      if (!s.ok()) return s;
      for (const auto& p : resp.periods()) out->push_back(ledger::FromProto(p));
      if (req.page_token().empty())
        services->assign(resp.services().begin(), resp.services().end());
      s = pages.Page(static_cast<size_t>(resp.periods_size()), resp.next_page_token());
      if (!s.ok()) return s;
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    return Status::Ok();
  }

 private:
  std::string server_, token_;
  std::unique_ptr<v1::Audit::Stub> audit_;
};

// Headless Chromium, if installed: $CAREWATCH_CHROMIUM, then the usual names.
std::string FindChromium() {
  if (const char* env = std::getenv("CAREWATCH_CHROMIUM"); env && *env) return env;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string candidate = dirs.substr(start, end - start) + "/" + name;
      if (!dirs.substr(start, end - start).empty() && ::access(candidate.c_str(), X_OK) == 0)
        return candidate;
      start = end + 1;
    }
  }
  return "";
}

// Prints `html` (a file) to `pdf` with headless Chromium, offline.
Status PrintPdf(const std::string& html, const std::string& pdf) {
  std::string chromium = FindChromium();
  if (chromium.empty()) {
    return Status::FailedPrecondition(
        "--pdf needs headless Chromium, which is not installed (Debian: apt-get install "
        "chromium; or set CAREWATCH_CHROMIUM to its path)");
  }
  std::error_code ec;
  std::string profile =
      (std::filesystem::temp_directory_path() / ("carewatch-pdf-" + std::to_string(::getpid())))
          .string();
  std::filesystem::create_directories(profile, ec);
  std::string abs_html = std::filesystem::absolute(html).string();
  std::string abs_pdf = std::filesystem::absolute(pdf).string();
  std::filesystem::remove(abs_pdf, ec);
  std::vector<std::string> args = {chromium,
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--no-first-run",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--disable-extensions",
                                   "--user-data-dir=" + profile,
                                   "--no-pdf-header-footer",
                                   "--print-to-pdf=" + abs_pdf,
                                   "file://" + abs_html};
  pid_t pid = ::fork();
  if (pid < 0) return Status::Internal("cannot start " + chromium);
  if (pid == 0) {
    // Chromium's chatter is not the user's business; the result is checked.
    std::FILE* null = std::fopen("/dev/null", "w");
    if (null) {
      ::dup2(::fileno(null), 1);
      ::dup2(::fileno(null), 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::filesystem::remove_all(profile, ec);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !std::filesystem::exists(abs_pdf) ||
      std::filesystem::file_size(abs_pdf, ec) == 0) {
    return Status::Internal(chromium + " did not print " + pdf + " (exit status " +
                            std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.flush()) return Status::Unavailable("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::Unavailable("cannot rename " + tmp + " to " + path);
  return Status::Ok();
}

}  // namespace

int RunReport(const ReportOptions& opt) {
  auto fail = [](const std::string& message) {
    std::cerr << "error: " << message << "\n";
    return kExitFailure;
  };
  if (opt.ledger_url.empty() == opt.server.empty()) {
    std::cerr << "error: report needs --ledger URL or --server HOST:PORT (one of them)\n";
    return kExitUsage;
  }
  if (opt.period != "month" && opt.period != "quarter" && opt.period != "year") {
    std::cerr << "error: --period: month, quarter or year\n";
    return kExitUsage;
  }
  report::ReportData data;
  report::Cover& cover = data.cover;
  cover.service = opt.service;
  cover.period = opt.period;
  cover.generated_at = std::time(nullptr);
  for (auto [text, out, name] :
       {std::tuple{&opt.from, &cover.from, "--from"}, std::tuple{&opt.to, &cover.to, "--to"}}) {
    if (text->empty()) continue;
    auto t = rules::ParseDateTime(*text);
    if (!t) {
      std::cerr << "error: " << name << ": bad date or time '" << *text << "'\n";
      return kExitUsage;
    }
    *out = *t;
  }
  // A date alone as --to means the whole of that day.
  if (!opt.to.empty() && opt.to.size() == 10) cover.to += 86399;

  std::unique_ptr<ledger::TrustedKey> key;
  if (!opt.vkey.empty()) {
    Status s = ledger::TrustedKey::Load(opt.vkey, &key);
    if (!s.ok()) return fail("--vkey: " + s.message());
  }
  std::unique_ptr<Source> source;
  LedgerSource* ledger_source = nullptr;
  if (!opt.ledger_url.empty()) {
    std::unique_ptr<ledger::LedgerBackend> backend;
    Status s = ledger::OpenBackend(opt.ledger_url, true, &backend);
    if (!s.ok()) return fail(s.message());
    auto ls = std::make_unique<LedgerSource>(std::move(backend));
    if (!ls->opened().ok()) return fail(ls->opened().message());
    ledger_source = ls.get();
    source = std::move(ls);
  } else {
    source = std::make_unique<ServerSource>(opt.server, opt.token, opt.ca_file);
  }
  cover.source = source->Describe();

  // Findings first, then the checkpoint: it covers every one listed.
  std::vector<v1::Finding> findings;
  Status s = source->Findings(opt.service, cover.from, cover.to, &findings);
  if (!s.ok()) return fail(s.message());
  // People read findings by service, in the order they opened.
  std::stable_sort(
      findings.begin(), findings.end(), [](const v1::Finding& a, const v1::Finding& b) {
        return std::make_tuple(a.service_id(), a.opened_at().seconds(), a.finding_id()) <
               std::make_tuple(b.service_id(), b.opened_at().seconds(), b.finding_id());
      });
  std::string stated_vkey;
  s = source->Checkpoint(&cover.checkpoint, &stated_vkey, &cover.key_rotations);
  if (!s.ok()) return fail(s.message());
  std::unique_ptr<ledger::TrustedKey> stated_key;
  if (!key) {
    s = ledger::TrustedKey::Load(stated_vkey, &stated_key);
    if (!s.ok()) return fail("the source's own verifier key: " + s.message());
  }
  const ledger::TrustedKey& checker = key ? *key : *stated_key;
  cover.key_given = key != nullptr;
  // The key given, or of a keyring given (a rotation) the one the source
  // signs with now, if the keyring holds it.
  std::unique_ptr<ledger::TrustedKey> stated_parsed;
  const bool stated_trusted =
      key && ledger::TrustedKey::FromVerifierKey(stated_vkey, &stated_parsed).ok() &&
      key->Trusts(stated_parsed->key().PublicRaw());
  cover.verifier_key = key && !key->name().empty() && !stated_trusted
                           ? ledger::VerifierKeyString(key->name(), key->key().PublicRaw())
                           : stated_vkey;
  cover.origin = cover.checkpoint.note().substr(0, cover.checkpoint.note().find('\n'));
  s = checker.VerifyCheckpoint(cover.checkpoint);
  cover.checkpoint_verified = s.ok();
  cover.checkpoint_message = s.ok() ? "signature valid" : s.message();
  if (ledger_source) {
    ledger::VerifyReport vr =
        ledger::VerifyLedger(ledger_source->backend(), opt.vkey.empty() ? "" : opt.vkey);
    cover.ledger_checked = true;
    cover.ledger_verified = vr.ok;
    cover.ledger_message = vr.ok ? std::to_string(vr.events) + " events, " +
                                       std::to_string(vr.checkpoints) + " checkpoints verified" +
                                       (vr.authenticated ? "" : " (integrity only: no key given)")
                                 : vr.message;
  }

  // Each finding's evidence against the checkpoint, checked as verify
  // --evidence checks a bundle, and written as one when asked.
  if (!opt.bundles.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opt.bundles, ec);
    if (ec) return fail("--bundles " + opt.bundles + ": " + ec.message());
  }
  for (const v1::Finding& f : findings) {
    report::FindingEvidence fe;
    fe.finding = f;
    ledger::Evidence ev;
    s = source->Evidence(f.finding_id(), cover.checkpoint, &ev);
    if (s.code() == Status::Code::kNotFound) {
      // Recorded after the checkpoint (a ledger copied from a live server):
      // nothing proves it yet, so it is left out and counted on the cover.
      ++cover.findings_after_checkpoint;
      continue;
    }
    if (!s.ok()) return fail("evidence for " + f.finding_id() + ": " + s.message());
    fe.finding = ev.finding;
    fe.items = ev.items;
    v1::EvidenceBundle bundle = ToBundle(ev, cover.verifier_key);
    ledger::BundleReport r = ledger::VerifyBundle(bundle, checker);
    fe.checked = true;
    fe.verified = r.ok && cover.checkpoint_verified;
    fe.message = r.ok ? "verified: " + std::to_string(r.entries) +
                            " events proved against the checkpoint, the finding recomputed"
                      : r.message;
    if (!opt.bundles.empty()) {
      fe.bundle_file = report::BundleFileName(f.finding_id());
      s = WriteFileAtomically((std::filesystem::path(opt.bundles) / fe.bundle_file).string(),
                              eval::ToJson(bundle) + "\n");
      if (!s.ok()) return fail(s.message());
    }
    data.findings.push_back(std::move(fe));
  }

  // Statistics per service, from a year before the first period shown.
  std::vector<ledger::PeriodStats> ignored;
  std::vector<std::string> services;
  s = source->Stats(opt.service, opt.period, cover.from, cover.to, &ignored, &services);
  if (!s.ok()) return fail(s.message());
  int64_t wide_from = INT64_MIN;
  std::string first_shown;
  if (cover.from != INT64_MIN) {
    std::string day = rules::FormatDate(cover.from);
    first_shown = ledger::PeriodOf(day, opt.period);
    wide_from =
        rules::ParseDateTime(std::to_string(std::atoi(day.substr(0, 4).c_str()) - 1) + "-01-01")
            .value_or(INT64_MIN);
  }
  for (const std::string& service : services) {
    report::ServiceTrend t;
    t.service_id = service;
    t.first_shown = first_shown;
    std::vector<std::string> unused;
    s = source->Stats(service, opt.period, wide_from, cover.to, &t.periods, &unused);
    if (!s.ok()) return fail(s.message());
    data.trends.push_back(std::move(t));
  }

  s = WriteFileAtomically(opt.output, report::RenderHtml(data));
  if (!s.ok()) return fail(s.message());
  int verified = 0;
  for (const auto& f : data.findings) verified += f.verified ? 1 : 0;
  const bool all = cover.key_given && cover.checkpoint_verified &&
                   verified == static_cast<int>(data.findings.size()) &&
                   (!cover.ledger_checked || cover.ledger_verified);
  std::cout << "wrote " << opt.output << ": " << data.trends.size() << " services, "
            << data.findings.size() << " findings (" << verified
            << " verified), checkpoint at size " << cover.checkpoint.tree_size() << "\n";
  if (!cover.key_given) {
    std::cout << "note: no --vkey given: checked against the key the source states about "
                 "itself only\n";
  }
  if (!opt.bundles.empty())
    std::cout << "wrote " << data.findings.size() << " evidence bundles to " << opt.bundles << "\n";
  if (!opt.pdf.empty()) {
    s = PrintPdf(opt.output, opt.pdf);
    if (!s.ok()) return fail(s.message() + "; the HTML report is " + opt.output);
    std::cout << "wrote " << opt.pdf << "\n";
  }
  if (!all && (cover.key_given || cover.ledger_checked) &&
      (!cover.checkpoint_verified || (cover.ledger_checked && !cover.ledger_verified) ||
       verified != static_cast<int>(data.findings.size()))) {
    std::cerr << "warning: a check failed; the report says which on its cover\n";
    return kExitFailure;
  }
  return kExitOk;
}

void RegisterReportCommands(CommandTable& table) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* cmd =
      table.Add("report", "Write the evidence report: one self-contained HTML file (and a PDF)",
                [o] { return RunReport(*o); });
  AddSourceOptions(cmd, &o->ledger_url, &o->server, &o->token, &o->ca_file);
  cmd->add_option("--vkey", o->vkey,
                  "The deployment's published verifier key (NAME+ID+KEY), or a file");
  cmd->add_option("--service", o->service, "Only this service (default: all)");
  cmd->add_option("--from", o->from, "From this date or time");
  cmd->add_option("--to", o->to, "Up to this date (inclusive) or time");
  cmd->add_option("--period", o->period, "Trends by month, quarter or year")
      ->check(CLI::IsMember({"month", "quarter", "year"}));
  cmd->add_option("-o,--output", o->output, "The HTML file (default report.html)");
  cmd->add_option("--pdf", o->pdf, "Also print it to this PDF (headless Chromium)");
  cmd->add_option("--bundles", o->bundles,
                  "Write each finding's evidence bundle into this directory");
}

}  // namespace carewatch::cli
