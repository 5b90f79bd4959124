// carewatch replay, verify and audit (offline, on a ledger file).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
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
#include "engine/ledger/copy.h"
#include "engine/ledger/pg_backend.h"
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

// The field-digest key: `path`, else hmac.key beside a file ledger.
Status HmacKeyFor(const std::string& ledger_url, const std::string& path, std::string* key) {
  if (ledger_url.empty()) {
    *key = "carewatch-replay-without-ledger";
    return Status::Ok();
  }
  return ledger::LoadOrCreateHmacKey(
      path.empty() ? ledger::LedgerDirectory(ledger_url) + "/hmac.key" : path, key);
}

}  // namespace

int RunReplay(const std::vector<std::string>& rules_paths, const std::string& input,
              const std::string& ledger_url, const std::string& signing_key,
              const std::string& hmac_key, const std::string& until_text, int64_t sweep_interval,
              bool json) {
  if (ledger::IsPostgresUrl(ledger_url) && (signing_key.empty() || hmac_key.empty())) {
    std::cerr << "error: replay --ledger postgresql://... needs --signing-key and --hmac-key "
                 "(the deployment's keys: a database ledger has no directory to find them in)\n";
    return kExitUsage;
  }
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
    options.signing_key_path = signing_key;
    Status s = ledger::Ledger::Open(options, &ledger);
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  // The simulated server clock: when carewatch learned of each line.
  int64_t sim_now = 0;
  duty::DutyEngineOptions options;
  if (Status k = HmacKeyFor(ledger_url, hmac_key, &options.hmac_key); !k.ok()) {
    std::cerr << "error: " << k.message() << "\n";
    return kExitFailure;
  }
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

int RunLedgerBackup(const std::string& ledger_url, const std::string& to,
                    const std::string& trusted_key, bool verify) {
  ledger::BackupReport report;
  Status s = ledger::BackupLedgerFile(ledger_url, to, &report);
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  std::cout << "wrote " << to << ": " << report.events << " events, " << report.bytes
            << " bytes; root " << report.root_hex << "\n";
  if (!verify) return kExitOk;
  const int rc = RunVerify(to, trusted_key, /*require_key=*/false);
  if (rc != kExitOk) std::cout << "the copy is kept: it is what the ledger held\n";
  return rc;
}

}  // namespace carewatch::cli

namespace carewatch::cli {

void RegisterLedgerCommands(CommandTable& table) {
  struct ReplayOptions {
    std::vector<std::string> rules;
    std::string input, ledger_url, signing_key, hmac_key, until, sweep = "1m";
    bool json = false;
  };
  auto replay = std::make_shared<ReplayOptions>();
  CLI::App* replay_cmd =
      table.Add("replay", "Run reports and actions through the whole duty pipeline", [replay] {
        std::string error;
        auto interval = rules::ParseDuration(replay->sweep, &error);
        if (!interval) {
          std::cerr << "error: --sweep-interval: " << error << "\n";
          return kExitUsage;
        }
        return RunReplay(replay->rules, replay->input, replay->ledger_url, replay->signing_key,
                         replay->hmac_key, replay->until, *interval, replay->json);
      });
  AddRulesOption(replay_cmd, &replay->rules);
  replay_cmd
      ->add_option("events", replay->input,
                   "JSONL lines {\"report\":{..}} or {\"action\":{..}}, in time order")
      ->required();
  replay_cmd->add_option("--ledger", replay->ledger_url,
                         "Record into this ledger (sqlite:///path/ledger.db or postgresql://...)");
  replay_cmd->add_option("--signing-key", replay->signing_key,
                         "The ledger's Ed25519 key file (default: ledger.key beside a file "
                         "ledger; required for postgresql://)");
  replay_cmd->add_option("--hmac-key", replay->hmac_key,
                         "The field-digest key file (default: hmac.key beside a file ledger; "
                         "required for postgresql://)");
  replay_cmd->add_option("--until", replay->until,
                         "End the simulated clock here (default: after the last deadline)");
  replay_cmd->add_option("--sweep-interval", replay->sweep,
                         "Deadline sweeper period in simulated time");
  replay_cmd->add_flag("--json", replay->json, "Print {\"breaches\":[..],\"findings\":[..]}");

  struct VerifyOptions {
    std::string ledger_url, server, token, ca_file, state_file;
    std::string pubkey, vkey, evidence_file, watch;
    bool require_key = false;
    int rounds = 0;
  };
  auto v = std::make_shared<VerifyOptions>();
  CLI::App* verify = table.Add(
      "verify", "Check a ledger or a live server independently; names the first bad seq", [v] {
        if (!v->vkey.empty() && !v->pubkey.empty()) {
          std::cerr << "error: give --vkey or --pubkey, not both\n";
          return kExitUsage;
        }
        std::string trusted = v->vkey.empty() ? v->pubkey : v->vkey;
        if (!v->evidence_file.empty()) {
          if (trusted.empty()) {
            std::cerr
                << "error: verify --evidence needs --vkey (the key the deployment published)\n";
            return kExitUsage;
          }
          return RunVerifyEvidence(v->evidence_file, trusted);
        }
        if (!v->server.empty()) {
          if (trusted.empty()) {
            std::cerr << "error: verify --server needs --vkey or --pubkey (the published key, "
                         "never the server's own word)\n";
            return kExitUsage;
          }
          int64_t every = 0;
          if (!v->watch.empty()) {
            std::string error;
            auto d = rules::ParseDuration(v->watch, &error);
            if (!d || v->state_file.empty()) {
              std::cerr << "error: --watch: " << (d ? "needs --state" : error) << "\n";
              return kExitUsage;
            }
            every = *d;
          }
          return RunVerifyServer(v->server, v->token, trusted, v->state_file, v->ca_file, every,
                                 v->rounds);
        }
        if (v->ledger_url.empty()) {
          std::cerr << "error: verify needs --ledger, --server or --evidence\n";
          return kExitUsage;
        }
        return RunVerify(v->ledger_url, trusted, v->require_key);
      });
  AddSourceOptions(verify, &v->ledger_url, &v->server, &v->token, &v->ca_file);
  verify->add_option("--pubkey", v->pubkey,
                     "The deployment's published Ed25519 public key (PEM), or a file with it");
  verify->add_option("--vkey", v->vkey,
                     "The deployment's published verifier key (NAME+ID+KEY), or a file with it");
  verify->add_flag("--require-key", v->require_key,
                   "Fail unless a trusted key (--vkey or --pubkey) was given");
  auto* evidence = verify->add_option("--evidence", v->evidence_file,
                                      "An evidence bundle to check offline (with --vkey)");
  evidence->excludes("--ledger")->excludes("--server");
  verify->add_option("--watch", v->watch,
                     "With --server --state: check each new checkpoint every this often");
  verify->add_option("--rounds", v->rounds, "With --watch: stop after this many checks (0: never)");
  verify->add_option("--state", v->state_file,
                     "Remembers the last accepted checkpoint, to check consistency");

  auto key_ledger = std::make_shared<std::string>();
  auto rotate = std::make_shared<KeyRotateOptions>();
  auto key_which = std::make_shared<std::string>();
  CLI::App* key_cmd = table.Add("key", "The deployment's keys", [key_ledger, rotate, key_which] {
    return *key_which == "rotate" ? RunKeyRotate(*rotate) : RunKeyVkey(*key_ledger);
  });
  auto* key_vkey = key_cmd->add_subcommand(
      "vkey", "Print the verifier key (NAME+ID+KEY) of a ledger: what a deployment publishes");
  key_vkey->add_option("--ledger", *key_ledger, "Ledger URL or file")->required();
  auto* key_rotate = key_cmd->add_subcommand("rotate",
                                             "Hand the ledger over to a new signing key "
                                             "(carewatchd stopped; docs/operations.md \"Keys\")");
  key_rotate->add_option("--ledger", rotate->ledger, "Ledger URL or file")->required();
  key_rotate->add_option("--signing-key", rotate->signing_key,
                         "The ledger's key now (default: ledger.key beside the ledger)");
  key_rotate->add_option("--new-key", rotate->new_key,
                         "The key to hand over to, created if missing (default: a new key, "
                         "installed as ledger.key once the ledger has it)");
  key_rotate->add_option("--reason", rotate->reason,
                         "Recorded in the KEY_ROTATED event (\"scheduled\", ...)");
  key_rotate->add_flag("--dry-run", rotate->dry_run,
                       "Create the new key and print its verifier key; rotate nothing");
  key_rotate->callback([key_which] { *key_which = "rotate"; });
  key_cmd->require_subcommand(1);

  struct CopyOptions {
    std::string from, to;
  };
  struct BackupOptions {
    std::string ledger, to, vkey, pubkey;
    bool no_verify = false;
  };
  auto copy = std::make_shared<CopyOptions>();
  auto backup = std::make_shared<BackupOptions>();
  auto which = std::make_shared<std::string>();
  CLI::App* ledger_cmd = table.Add("ledger", "Ledger maintenance", [copy, backup, which] {
    if (*which == "backup")
      return RunLedgerBackup(backup->ledger, backup->to,
                             !backup->vkey.empty() ? backup->vkey : backup->pubkey,
                             !backup->no_verify);
    ledger::CopyReport report;
    Status s = ledger::CopyLedger(copy->from, copy->to, &report);
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
    std::cout << "copied " << report.events << " events and " << report.checkpoints
              << " checkpoints to " << ledger::RedactUrl(copy->to) << "; root " << report.root_hex
              << "; the copy verifies\n";
    return kExitOk;
  });
  auto* copy_cmd = ledger_cmd->add_subcommand(
      "copy",
      "Copy a ledger into an empty one, e.g. an SQLite file into PostgreSQL (stop carewatchd "
      "first); the copy is verified against the source");
  copy_cmd->add_option("--from", copy->from, "The ledger to copy (URL or file)")->required();
  copy_cmd->add_option("--to", copy->to, "An empty ledger (postgresql://...)")->required();
  copy_cmd->callback([which] { *which = "copy"; });

  auto* backup_cmd = ledger_cmd->add_subcommand(
      "backup",
      "Copy an SQLite ledger file while carewatchd writes it: one consistent snapshot, written "
      "to a new file (mode 0600), then verified");
  backup_cmd->add_option("--ledger", backup->ledger, "The ledger (sqlite:///path or a file)")
      ->required();
  backup_cmd->add_option("--to", backup->to, "The copy: a new file (never overwritten)")
      ->required();
  auto* backup_vkey = backup_cmd->add_option(
      "--vkey", backup->vkey, "Check the copy's checkpoints against this verifier key");
  backup_cmd->add_option("--pubkey", backup->pubkey, "Or against this PEM public key")
      ->excludes(backup_vkey);
  backup_cmd->add_flag("--no-verify", backup->no_verify,
                       "Only copy (a long ledger takes a while to verify: verify --ledger later)");
  backup_cmd->callback([which] { *which = "backup"; });
  ledger_cmd->require_subcommand(1);
}

}  // namespace carewatch::cli
