// libFuzzer target: the monitor of a carewatchd (`carewatch verify --server
// --state`, ledger::MonitorCheck and the state file), facing a server run by
// the party held to account. That party also holds the signing key, so the
// harness signs whatever checkpoint text the input chooses with the trusted
// key: a signature proves only that the server said it, and the monitor must
// still catch two things said that disagree.
//
// The input drives up to eight rounds against a log of 1 to 600 events that
// the harness builds. Each round the server shows a checkpoint: the true one
// at some size, a signed one of a size and root the input chooses, a signed
// note of text the input writes, or unsigned bytes; asked for a consistency
// proof it answers the true proof, hashes the input chooses, or an error.
// Checked every round, beyond "no crash":
//   - a refused checkpoint leaves the state as it was, with a message;
//   - an accepted one becomes the state, never smaller than the one before,
//     never another root for the same size;
//   - the true checkpoint with the true proof, after only true ones, is
//     always accepted (no false alarm).
// The state file's text is fuzzed too: what parses prints back the same.
// The key is a fixed test key, generated for this harness only.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/ledger/keys.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/monitor.h"
#include "engine/ledger/note.h"

namespace {

using namespace carewatch;
constexpr char kOrigin[] = "carewatch/fuzz-monitor";

struct Keys {
  std::unique_ptr<ledger::SigningKey> signing;
  std::unique_ptr<ledger::TrustedKey> trusted;
};

const Keys& TestKeys() {
  static Keys* keys = [] {
    auto* k = new Keys;
    // A fixed seed (not a secret: this key signs nothing but fuzz inputs).
    if (!ledger::SigningKey::FromRawSeed(std::string(32, '\x6b'), &k->signing).ok())
      __builtin_trap();
    std::string vkey = ledger::VerifierKeyString(kOrigin, k->signing->PublicRaw());
    if (!ledger::TrustedKey::FromVerifierKey(vkey, &k->trusted).ok()) __builtin_trap();
    return k;
  }();
  return *keys;
}

// The input's choice of hashes: mostly 32 bytes, some of other lengths.
std::vector<ledger::Hash> Hashes(FuzzedDataProvider& in) {
  std::vector<ledger::Hash> out(in.ConsumeIntegralInRange<size_t>(0, 70));
  for (auto& h : out) {
    const size_t n = in.ConsumeBool() ? 32 : in.ConsumeIntegralInRange<size_t>(0, 40);
    h = in.ConsumeBytesAsString(n);
  }
  return out;
}

v1::Checkpoint SignedText(const std::string& text, uint64_t size, const ledger::Hash& root) {
  v1::Checkpoint c;
  c.set_tree_size(size);
  c.set_root_hash(root);
  std::string note;
  // SignNote refuses text outside a note's form; the server may still send it.
  if (ledger::SignNote(text, kOrigin, *TestKeys().signing, &note).ok())
    c.set_note(note);
  else
    c.set_note(text);
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const Keys& keys = TestKeys();

  ledger::MonitorState state;
  if (in.ConsumeBool()) {
    const std::string text = in.ConsumeRandomLengthString(200);
    ledger::MonitorState parsed;
    if (ledger::ParseMonitorState(text, &parsed).ok()) {
      ledger::MonitorState again;
      if (!ledger::ParseMonitorState(ledger::FormatMonitorState(parsed), &again).ok() ||
          again.size != parsed.size || again.root != parsed.root)
        __builtin_trap();
      state = parsed;
    }
  }

  const uint64_t events = in.ConsumeIntegralInRange<uint64_t>(1, 600);
  ledger::MerkleTree tree;
  for (uint64_t i = 0; i < events; ++i) tree.Append(ledger::LeafHash(std::to_string(i)));
  // Whether every state so far came from the true log.
  bool honest = state.size == 0;

  for (int round = 0; round < 8 && in.remaining_bytes() > 0; ++round) {
    v1::Checkpoint c;
    bool true_checkpoint = false;
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0: {  // the true checkpoint at a size
        const uint64_t n = in.ConsumeIntegralInRange<uint64_t>(0, events);
        c = SignedText(ledger::CheckpointBody(kOrigin, n, tree.Root(n), 0), n, tree.Root(n));
        true_checkpoint = true;
        break;
      }
      case 1: {  // a signed size and root of the input's choosing
        const uint64_t n = in.ConsumeBool() ? in.ConsumeIntegral<uint64_t>()
                                            : in.ConsumeIntegralInRange<uint64_t>(0, events + 8);
        const ledger::Hash root =
            in.ConsumeBool() && n <= events ? tree.Root(n) : in.ConsumeBytesAsString(32);
        c = SignedText(ledger::CheckpointBody(kOrigin, n, root, 0), n, root);
        if (in.ConsumeBool()) c.set_tree_size(in.ConsumeIntegral<uint64_t>());
        break;
      }
      case 2: {  // signed text of the input's writing
        const std::string text = in.ConsumeRandomLengthString(300);
        c = SignedText(text, in.ConsumeIntegral<uint64_t>(), in.ConsumeBytesAsString(32));
        break;
      }
      default: {  // bytes, as a lying or broken server sends them
        c.set_tree_size(in.ConsumeIntegral<uint64_t>());
        c.set_root_hash(in.ConsumeRandomLengthString(40));
        c.set_note(in.ConsumeRandomLengthString(400));
        c.set_signature(in.ConsumeRandomLengthString(70));
        break;
      }
    }
    const int answer = in.ConsumeIntegralInRange(0, 2);
    std::vector<ledger::Hash> chosen;
    if (answer == 1) chosen = Hashes(in);
    bool fetched_true = true;
    auto fetch = [&](uint64_t first, uint64_t second, std::vector<ledger::Hash>* proof) {
      if (answer == 2) return Status::Unavailable("the server is down");
      if (answer == 1 || second > events || first > second) {
        fetched_true = answer != 1 && first <= second && second <= events;
        *proof = chosen;
        return Status::Ok();
      }
      *proof = tree.ConsistencyProof(first, second);
      return Status::Ok();
    };
    const ledger::MonitorState before = state;
    Status s = ledger::MonitorCheck(*keys.trusted, c, fetch, &state);
    if (!s.ok()) {
      if (s.message().empty() || state.size != before.size || state.root != before.root)
        __builtin_trap();
      // No false alarm: the true log's checkpoint and proof, after only true ones.
      if (honest && true_checkpoint && answer == 0 && fetched_true && c.tree_size() >= before.size)
        __builtin_trap();
      continue;
    }
    if (state.size != c.tree_size() || state.root != c.root_hash() || state.size < before.size ||
        (before.size > 0 && before.size == state.size && before.root != state.root))
      __builtin_trap();
    honest = honest && true_checkpoint;
  }
  return 0;
}
