#include "engine/ledger/verify.h"

#include "engine/common/digest.h"
#include "engine/ledger/note.h"

namespace carewatch::ledger {

namespace {
VerifyReport Fail(VerifyReport r, uint64_t seq, std::string message) {
  r.ok = false;
  r.first_bad_seq = seq;
  r.message = std::move(message);
  return r;
}
}  // namespace

VerifyReport VerifyLedger(LedgerBackend& backend, const std::string& trusted_key) {
  VerifyReport r;
  std::string stored_pem;
  bool found = false;
  Status s = backend.GetMeta("public_key", &stored_pem, &found);
  if (!s.ok()) return Fail(r, 0, "cannot read the ledger: " + s.message());
  std::unique_ptr<TrustedKey> key;
  if (!trusted_key.empty()) {
    s = TrustedKey::Load(trusted_key, &key);
    if (!s.ok()) return Fail(r, 0, "trusted key: " + s.message());
    r.authenticated = true;
    std::unique_ptr<SigningKey> stored;
    if (found && SigningKey::FromPublicPem(stored_pem, &stored).ok() &&
        stored->PublicRaw() != key->key().PublicRaw()) {
      return Fail(r, 0, "the ledger names another deployment's key than the trusted one");
    }
  } else {
    if (!found) return Fail(r, 0, "the ledger names no public key; pass --vkey");
    s = TrustedKey::FromPem(stored_pem, &key);
    if (!s.ok()) return Fail(r, 0, "stored public key: " + s.message());
  }

  MerkleTree tree;
  uint64_t expect = 1;
  constexpr size_t kPage = 10000;
  for (;;) {
    std::vector<StoredEvent> page;
    s = backend.ReadEvents(expect, kPage, &page);
    if (!s.ok())
      return Fail(r, expect,
                  "cannot read events from " + std::to_string(expect) + ": " + s.message());
    if (page.empty()) break;
    for (const StoredEvent& e : page) {
      if (e.seq != expect) {
        return Fail(r, expect,
                    "event " + std::to_string(expect) + " is missing (the next stored is " +
                        std::to_string(e.seq) + ")");
      }
      v1::LedgerEvent parsed;
      if (!parsed.ParseFromString(e.payload)) {
        return Fail(r, e.seq,
                    "event " + std::to_string(e.seq) + " does not parse: its bytes were altered");
      }
      if (parsed.seq() != e.seq) {
        return Fail(r, e.seq,
                    "event " + std::to_string(e.seq) + " holds the payload of event " +
                        std::to_string(parsed.seq()) + ": rows were reordered or replaced");
      }
      Hash leaf = LeafHash(e.payload);
      if (leaf != e.leaf_hash) {
        return Fail(r, e.seq,
                    "event " + std::to_string(e.seq) +
                        " does not match its leaf hash: its bytes were altered");
      }
      if (parsed.type() != e.type || parsed.time().seconds() != e.time) {
        return Fail(
            r, e.seq,
            "event " + std::to_string(e.seq) + ": indexed type or time differ from the event");
      }
      tree.Append(leaf);
      ++expect;
    }
  }
  r.events = tree.size();

  std::vector<v1::Checkpoint> checkpoints;
  s = backend.ReadCheckpoints(&checkpoints);
  if (!s.ok()) return Fail(r, 0, "cannot read checkpoints: " + s.message());
  uint64_t previous_size = 0;
  Hash previous_root;
  for (const v1::Checkpoint& c : checkpoints) {
    uint64_t n = c.tree_size();
    if (n > tree.size()) {
      return Fail(r, tree.size() + 1,
                  "checkpoint at size " + std::to_string(n) + " covers events " +
                      std::to_string(tree.size() + 1) + ".." + std::to_string(n) +
                      ", which are missing");
    }
    s = key->VerifyCheckpoint(c);
    if (!s.ok()) return Fail(r, n, s.message() + " (seq " + std::to_string(n) + ")");
    Hash root = tree.Root(n);
    if (root != c.root_hash()) {
      return Fail(r, 0,
                  "checkpoint at size " + std::to_string(n) + " does not match events " +
                      std::to_string(previous_size + 1) + ".." + std::to_string(n) +
                      ": an event in that range was altered together with its leaf hash");
    }
    if (previous_size > 0 && !VerifyConsistency(previous_size, n, previous_root, root,
                                                tree.ConsistencyProof(previous_size, n))) {
      return Fail(r, 0,
                  "checkpoints at sizes " + std::to_string(previous_size) + " and " +
                      std::to_string(n) + " are not consistent");
    }
    previous_size = n;
    previous_root = root;
    ++r.checkpoints;
  }
  r.unsigned_tail = tree.size() - previous_size;
  r.ok = true;
  r.message = "ledger verifies: " + std::to_string(r.events) + " events, " +
              std::to_string(r.checkpoints) + " signed checkpoints" +
              (r.unsigned_tail
                   ? ", " + std::to_string(r.unsigned_tail) + " events after the last checkpoint"
                   : "") +
              "; root " + HexEncode(tree.Root(tree.size()));
  return r;
}

}  // namespace carewatch::ledger
