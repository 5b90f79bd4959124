// carewatch: the rule author's, integrator's and auditor's command line.
// Each command file registers its commands in the table (common.h); this
// file only parses and runs the chosen one.
#include <CLI/CLI.hpp>
#include <iostream>

#include "tools/carewatch/common.h"

namespace carewatch::cli {

CLI::App* CommandTable::Add(const std::string& name, const std::string& help,
                            std::function<int()> run) {
  CLI::App* app = root_->add_subcommand(name, help);
  commands_.emplace_back(app, std::move(run));
  return app;
}

int CommandTable::RunChosen() const {
  for (const auto& [app, run] : commands_) {
    if (app->parsed()) return run();
  }
  return kExitUsage;
}

void AddRulesOption(CLI::App* cmd, std::vector<std::string>* rules, bool required) {
  auto* opt = cmd->add_option("--rules", *rules,
                              "Rule pack file or directory of packs (repeatable; lists and "
                              "accountability files beside them)");
  if (required) opt->required();
}

void AddSourceOptions(CLI::App* cmd, std::string* ledger_url, std::string* server,
                      std::string* token, std::string* ca_file) {
  auto* ledger = cmd->add_option("--ledger", *ledger_url, "Ledger URL or file (offline)");
  auto* remote = cmd->add_option("--server", *server, "carewatchd HOST:PORT");
  ledger->excludes(remote);
  cmd->add_option("--token", *token, "Regulator token (with --server)");
  cmd->add_option("--ca", *ca_file, "CA certificate for a TLS server");
}

}  // namespace carewatch::cli

namespace {

int Run(int argc, char** argv) {
  using namespace carewatch::cli;
  CLI::App app{"carewatch: duty-of-care rules, evaluation and evidence"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "carewatch 0.1.0");
  CommandTable table(&app);
  for (auto add : {RegisterRuleCommands, RegisterScenarioCommands, RegisterLedgerCommands,
                   RegisterAuditCommands, RegisterClientCommands, RegisterReportCommands,
                   RegisterSignalCommands}) {
    add(table);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  return table.RunChosen();
}

}  // namespace

// Every input is checked where it is read and refused with a message; this
// is the net under that rule: anything thrown is a message and exit 1, never
// an abort with a core dump.
int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "error: unexpected failure\n";
  }
  return 1;
}
