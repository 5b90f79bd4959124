// carewatch signal: a platform's side of cross-platform signals
// (docs/signals.md). `token` runs the blinded path: the identifier never
// leaves this process.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/digest.h"
#include "engine/eval/report_json.h"
#include "engine/rules/duration.h"
#include "engine/signals/client.h"
#include "tools/carewatch/common.h"

namespace carewatch::cli {
namespace {

struct SignalOptions {
  std::string server, token, ca_file, service;
  std::string kind, value, report, category, alert, opinion, actor, status;
  std::vector<std::string> tokens;  // submit: hex tokens
  uint64_t after = 0;
  bool follow = false, json = false;
};

std::string Unhex(const std::string& hex, bool* ok) {
  std::string out;
  *ok = hex.size() % 2 == 0 && hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  for (size_t i = 0; *ok && i < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

void PrintAlert(const v1::LinkageAlert& a, bool json) {
  if (json) {
    std::cout << eval::ToJson(a) << "\n";
    return;
  }
  std::string reports;
  for (const auto& r : a.report_ids()) reports += (reports.empty() ? "" : ",") + r;
  std::string categories;
  for (const auto& c : a.categories()) categories += (categories.empty() ? "" : ",") + c;
  std::cout << a.alert_id() << "  " << a.status() << "  " << a.token_kind() << "  reports "
            << reports << "  other services " << a.other_services() << "  categories " << categories
            << "  first " << rules::FormatDateTime(a.first_seen().seconds()) << "  last "
            << rules::FormatDateTime(a.last_seen().seconds()) << "  review " << a.review_report_id()
            << (a.feedback().empty() ? "" : "  feedback " + a.feedback()) << "  cursor "
            << a.cursor() << "\n";
}

int Fail(const grpc::Status& st, const char* what) {
  std::cerr << "error: " << FromGrpc(st, what).message() << "\n";
  return kExitFailure;
}

int RunToken(const SignalOptions& o) {
  auto stub = v1::Signals::NewStub(Connect(o.server, o.ca_file));
  std::vector<std::string> tokens;
  int64_t remaining = 0;
  Status s = signals::FetchTokens(stub.get(), o.token, o.service, {{o.kind, o.value}}, &tokens,
                                  &remaining);
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  std::cout << HexEncode(tokens[0]) << "\n";
  std::cerr << "quota left today: " << remaining << "\n";
  return kExitOk;
}

int RunSubmit(const SignalOptions& o) {
  v1::SubmitSignalsRequest req;
  req.set_service_id(o.service);
  req.set_report_id(o.report);
  for (const auto& hex : o.tokens) {
    bool ok = false;
    std::string raw = Unhex(hex, &ok);
    if (!ok || raw.size() != 64) {
      std::cerr << "error: --signal-token must be 128 hex digits (as `signal token` prints)\n";
      return kExitUsage;
    }
    auto* sig = req.add_signals();
    sig->set_kind(o.kind);
    sig->set_token(raw);
    sig->set_category(o.category);
  }
  auto stub = v1::Signals::NewStub(Connect(o.server, o.ca_file));
  grpc::ClientContext ctx;
  Authorize(&ctx, o.token);
  v1::SubmitSignalsResponse resp;
  grpc::Status st = stub->SubmitSignals(&ctx, req, &resp);
  if (!st.ok()) return Fail(st, "SubmitSignals");
  std::cout << "accepted " << resp.accepted() << " signal(s); " << resp.alerts_size()
            << " alert(s) for this service\n";
  for (const auto& a : resp.alerts()) PrintAlert(a, o.json);
  return kExitOk;
}

int RunAlerts(const SignalOptions& o) {
  auto stub = v1::Signals::NewStub(Connect(o.server, o.ca_file));
  if (o.follow) {
    grpc::ClientContext ctx;
    Authorize(&ctx, o.token);
    v1::SubscribeAlertsRequest req;
    req.set_service_id(o.service);
    req.set_after_cursor(o.after);
    auto reader = stub->Subscribe(&ctx, req);
    v1::LinkageAlert a;
    while (reader->Read(&a)) {
      PrintAlert(a, o.json);
      std::cout.flush();  // each alert as it comes, for whoever reads the pipe
    }
    grpc::Status st = reader->Finish();
    return st.ok() ? kExitOk : Fail(st, "Subscribe");
  }
  v1::ListAlertsRequest req;
  req.set_service_id(o.service);
  req.set_status(o.status);
  req.set_after_cursor(o.after);
  req.set_page_size(1000);
  for (;;) {
    grpc::ClientContext ctx;
    Authorize(&ctx, o.token);
    v1::ListAlertsResponse resp;
    grpc::Status st = stub->ListAlerts(&ctx, req, &resp);
    if (!st.ok()) return Fail(st, "ListAlerts");
    for (const auto& a : resp.alerts()) PrintAlert(a, o.json);
    if (resp.next_cursor() == 0) return kExitOk;
    req.set_after_cursor(resp.next_cursor());
  }
}

int RunFeedback(const SignalOptions& o) {
  auto stub = v1::Signals::NewStub(Connect(o.server, o.ca_file));
  v1::LinkFeedbackRequest req;
  req.set_service_id(o.service);
  req.set_alert_id(o.alert);
  req.set_opinion(o.opinion);
  req.set_actor(o.actor);
  grpc::ClientContext ctx;
  Authorize(&ctx, o.token);
  v1::LinkFeedbackResponse resp;
  grpc::Status st = stub->RecordLinkFeedback(&ctx, req, &resp);
  if (!st.ok()) return Fail(st, "RecordLinkFeedback");
  PrintAlert(resp.alert(), o.json);
  for (const auto& ob : resp.obligations())
    std::cout << "obligation " << ob.obligation_id() << " (" << ob.duty_id()
              << "): " << v1::ObligationStatus_Name(ob.status()) << "\n";
  return kExitOk;
}

int RunWithdraw(const SignalOptions& o) {
  auto stub = v1::Signals::NewStub(Connect(o.server, o.ca_file));
  v1::WithdrawSignalsRequest req;
  req.set_service_id(o.service);
  req.set_report_id(o.report);
  req.set_actor(o.actor);
  grpc::ClientContext ctx;
  Authorize(&ctx, o.token);
  v1::WithdrawSignalsResponse resp;
  grpc::Status st = stub->WithdrawSignals(&ctx, req, &resp);
  if (!st.ok()) return Fail(st, "WithdrawSignals");
  std::cout << "withdrew " << resp.signals_withdrawn() << " signal(s); "
            << resp.own_alerts_withdrawn() << " of this service's alert(s) withdrawn\n";
  return kExitOk;
}

}  // namespace

void RegisterSignalCommands(CommandTable& table) {
  auto o = std::make_shared<SignalOptions>();
  auto which = std::make_shared<std::string>();
  CLI::App* sig =
      table.Add("signal", "Cross-platform signals: token | submit | alerts | feedback | withdraw",
                [o, which] {
                  if (*which == "token") return RunToken(*o);
                  if (*which == "submit") return RunSubmit(*o);
                  if (*which == "alerts") return RunAlerts(*o);
                  if (*which == "feedback") return RunFeedback(*o);
                  return RunWithdraw(*o);
                });
  auto connection = [o](CLI::App* cmd) {
    cmd->add_option("--server", o->server, "carewatchd HOST:PORT")->required();
    cmd->add_option("--token", o->token, "Platform token")->required();
    cmd->add_option("--service", o->service, "The token's service_id")->required();
    cmd->add_option("--ca", o->ca_file, "CA certificate for a TLS server");
  };
  auto chosen = [which](CLI::App* cmd, const char* name) {
    cmd->callback([which, name] { *which = name; });
  };
  CLI::App* token = sig->add_subcommand(
      "token", "Print an identifier's token (hex) by the blinded path: carewatchd never sees it");
  connection(token);
  token->add_option("--kind", o->kind, "email, phone, handle or profile_url")
      ->required()
      ->check(CLI::IsMember({"email", "phone", "handle", "profile_url"}));
  token->add_option("identifier", o->value, "The identifier (a handle: PLATFORM:HANDLE)")
      ->required();
  chosen(token, "token");

  CLI::App* submit = sig->add_subcommand("submit", "Submit tokens against one of your reports");
  connection(submit);
  submit->add_option("--report", o->report, "Your report_id")->required();
  submit->add_option("--kind", o->kind, "The tokens' kind")
      ->required()
      ->check(CLI::IsMember({"email", "phone", "handle", "profile_url"}));
  submit->add_option("--category", o->category, "The duty the report concerns")->required();
  submit->add_option("--signal-token", o->tokens, "A token from `signal token` (repeatable)")
      ->required();
  submit->add_flag("--json", o->json, "Alerts in the protobuf JSON mapping");
  chosen(submit, "submit");

  CLI::App* alerts = sig->add_subcommand("alerts", "List your alerts, or follow them (--follow)");
  connection(alerts);
  alerts->add_option("--after", o->after, "Only alerts after this cursor");
  alerts->add_option("--status", o->status, "open or withdrawn")
      ->check(CLI::IsMember({"open", "withdrawn"}));
  alerts->add_flag("--follow", o->follow, "Stay connected and print each new alert");
  alerts->add_flag("--json", o->json, "One LinkageAlert a line in the protobuf JSON mapping");
  chosen(alerts, "alerts");

  CLI::App* feedback = sig->add_subcommand(
      "feedback", "Record your opinion of an alert (also records the review action)");
  connection(feedback);
  feedback->add_option("alert", o->alert, "The alert_id")->required();
  feedback->add_option("--opinion", o->opinion, "confirmed, not_related or disputed")
      ->required()
      ->check(CLI::IsMember({"confirmed", "not_related", "disputed"}));
  feedback->add_option("--actor", o->actor, "Who reviewed it");
  feedback->add_flag("--json", o->json, "The alert in the protobuf JSON mapping");
  chosen(feedback, "feedback");

  CLI::App* withdraw =
      sig->add_subcommand("withdraw", "Withdraw the signals of one of your reports");
  connection(withdraw);
  withdraw->add_option("--report", o->report, "Your report_id")->required();
  withdraw->add_option("--actor", o->actor, "Who decided it");
  chosen(withdraw, "withdraw");
  sig->require_subcommand(1);
}

}  // namespace carewatch::cli
