// Copying a ledger between stores (copy.h).
#include "engine/ledger/copy.h"

#include <memory>
#include <vector>

#include "engine/common/digest.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/pg_backend.h"
#include "engine/ledger/verify.h"

namespace carewatch::ledger {

Status CopyLedger(const std::string& from, const std::string& to, CopyReport* report) {
  std::unique_ptr<LedgerBackend> src;
  Status s = OpenBackend(from, true, &src);
  if (!s.ok()) return s.WithPrefix("source " + RedactUrl(from) + ": ");
  uint64_t size = 0;
  s = src->ReadTreeSize(&size);
  if (!s.ok()) return s;
  CarriedRows carried;
  s = src->ReadCarried(&carried);
  if (!s.ok()) return s;
  std::vector<v1::Checkpoint> checkpoints;
  s = src->ReadCheckpoints(&checkpoints);
  if (!s.ok()) return s;

  CompactTree tree;
  {
    std::unique_ptr<LedgerBackend> dst;
    s = OpenBackend(to, false, &dst);
    if (!s.ok()) return s.WithPrefix("target " + RedactUrl(to) + ": ");
    uint64_t held = 0;
    s = dst->ReadTreeSize(&held);
    if (!s.ok()) return s;
    if (held != 0) {
      return Status::FailedPrecondition("target " + RedactUrl(to) + " holds " +
                                        std::to_string(held) +
                                        " events: copy into an empty ledger");
    }
    for (uint64_t next = 1; next <= size;) {
      CopyChunk chunk;
      s = src->ReadEvents(next, 10000, &chunk.events);
      if (!s.ok()) return s;
      if (chunk.events.empty()) break;
      for (const StoredEvent& e : chunk.events) {
        if (e.seq != next) {
          return Status::DataLoss("source is missing event " + std::to_string(next) +
                                  "; run `carewatch verify` on it");
        }
        if (e.seq > size) break;
        tree.Append(e.leaf_hash, &chunk.nodes);
        ++next;
      }
      while (!chunk.events.empty() && chunk.events.back().seq > size) chunk.events.pop_back();
      s = dst->WriteCopy(chunk);
      if (!s.ok()) return s;
    }
    CopyChunk last;
    for (const v1::Checkpoint& c : checkpoints) {
      if (c.tree_size() <= size) last.checkpoints.push_back(c);
    }
    last.carried = &carried;
    s = dst->WriteCopy(last);
    if (!s.ok()) return s;
  }
  // Opened again for writing: the derived tables are derived from the log.
  {
    std::unique_ptr<LedgerBackend> dst;
    s = OpenBackend(to, false, &dst);
    if (!s.ok()) return s.WithPrefix("reopening the copy: ");
  }
  std::unique_ptr<LedgerBackend> check;
  s = OpenBackend(to, true, &check);
  if (!s.ok()) return s;
  uint64_t copied = 0;
  s = check->ReadTreeSize(&copied);
  if (!s.ok()) return s;
  std::vector<Hash> leaves;
  s = check->ReadLeafHashes(&leaves);
  if (!s.ok()) return s;
  CompactTree again;
  for (const Hash& h : leaves) again.Append(h, nullptr);
  if (copied != size || again.Root() != tree.Root()) {
    return Status::DataLoss("the copy differs from the source: " + std::to_string(copied) +
                            " events against " + std::to_string(size));
  }
  VerifyReport v = VerifyLedger(*check, "");
  if (!v.ok) return Status::DataLoss("the copy does not verify: " + v.message);
  report->events = size;
  report->checkpoints = v.checkpoints;
  report->root_hex = HexEncode(tree.Root());
  return Status::Ok();
}

}  // namespace carewatch::ledger
