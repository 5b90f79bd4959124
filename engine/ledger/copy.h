#ifndef CAREWATCH_ENGINE_LEDGER_COPY_H_
#define CAREWATCH_ENGINE_LEDGER_COPY_H_

#include <cstdint>
#include <string>

#include "engine/common/status.h"

namespace carewatch::ledger {

struct CopyReport {
  uint64_t events = 0;
  uint64_t checkpoints = 0;
  std::string root_hex;  // the root over every event, equal in both
};

// Copies the ledger at `from` into the empty ledger at `to` (`carewatch
// ledger copy`): the log, its stored subtrees (computed again from the
// leaves), every checkpoint as signed, the metadata and the rows events
// alone cannot give (CarriedRows), a page of events per transaction. Then it
// opens `to` again, which derives the engine's state from the copied log as
// a migration does, and checks the copy independently: the same number of
// events, the same root, and VerifyLedger passing on the target.
//
// `from` is opened read-only; stop its writer first, or events it appends
// meanwhile are not copied (the copy says how many it copied). `to` must
// hold no events; a copy that fails leaves it to be emptied and copied
// again.
Status CopyLedger(const std::string& from, const std::string& to, CopyReport* report);

struct BackupReport {
  uint64_t events = 0;   // in the copy
  uint64_t bytes = 0;    // the copy's size
  std::string root_hex;  // the root over the copy's events
};

// A consistent copy of an SQLite ledger file while carewatchd writes it
// (`carewatch ledger backup`): SQLite's online backup of the whole file in
// one read transaction, so the copy is the ledger as one commit left it,
// never half of a batch. The writer goes on meanwhile (ledger.h: a
// reader's snapshot puts off the WAL's restart and holds up no write). The
// copy is written to `to`.partial with mode 0600, synced, made a single
// file (no WAL beside it) and renamed to `to`, which must not exist. The
// copy's keys are not copied: it holds the verifier key, not the signing
// key. A PostgreSQL ledger is refused: pg_dump is its backup.
Status BackupLedgerFile(const std::string& from, const std::string& to, BackupReport* report);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_COPY_H_
