// libFuzzer target: an evidence bundle, as a regulator receives it, through
// the offline check (`carewatch verify --evidence`, ledger::VerifyBundle).
// A bundle comes from the party held to account, so nothing in it may crash
// or hang the check, whatever it holds.
//
// Byte 0 picks the mode; the rest is the bundle, in the protobuf JSON mapping
// (as bundle files are written) when it starts with '{', else in the binary
// encoding.
//   even: checked as it is, against a fixed trusted key. Exercises the note,
//         the checkpoint text and the proofs.
//   odd:  first made to pass the checks a forger cannot: the harness builds
//         the Merkle tree of the entries' own bytes (at their seqs, other
//         leaves filler), replaces each entry's proof and signs a checkpoint
//         of that tree with the trusted key. The fuzzed events then reach
//         the recomputation of the finding, its breaches, rates and
//         accountability, which is where a hostile event would do harm.
// Then the evidence report renders the finding from the bundle's events.
// The key is a fixed test key, generated for this harness only.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "carewatch/v1/ledger.pb.h"
#include "engine/ledger/evidence.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/note.h"
#include "engine/report/report.h"

namespace {

using namespace carewatch;

// Bundles naming seqs past this are checked as they are (their entries
// fail as outside the tree): the harness keeps its trees small.
constexpr uint64_t kMaxTree = 1 << 14;
constexpr char kOrigin[] = "carewatch/fuzz";

struct Keys {
  std::unique_ptr<ledger::SigningKey> signing;
  std::unique_ptr<ledger::TrustedKey> trusted;
};

const Keys& TestKeys() {
  static Keys* keys = [] {
    // Invalid UTF-8 in a string field is a parse failure; its log line
    // would only slow the run.
    google::protobuf::SetLogHandler(nullptr);
    auto* k = new Keys;
    // A fixed seed (not a secret: this key signs nothing but fuzz inputs).
    const std::string seed(32, '\x5a');
    if (!ledger::SigningKey::FromRawSeed(seed, &k->signing).ok()) __builtin_trap();
    std::string vkey = ledger::VerifierKeyString(kOrigin, k->signing->PublicRaw());
    if (!ledger::TrustedKey::FromVerifierKey(vkey, &k->trusted).ok()) __builtin_trap();
    return k;
  }();
  return *keys;
}

// Proves every entry against a tree of the entries' own bytes and signs its
// checkpoint with the test key.
void Resign(v1::EvidenceBundle* bundle) {
  uint64_t size = 0;
  for (const v1::BundleEntry& e : bundle->entries()) {
    if (e.seq() > kMaxTree) return;
    if (e.seq() > size) size = e.seq();
  }
  if (size == 0) return;
  std::vector<ledger::Hash> leaves(size, ledger::LeafHash("filler"));
  for (const v1::BundleEntry& e : bundle->entries()) {
    if (e.seq() > 0) leaves[e.seq() - 1] = ledger::LeafHash(e.event_bytes());
  }
  ledger::MerkleTree tree;
  for (const ledger::Hash& h : leaves) tree.Append(h);
  for (v1::BundleEntry& e : *bundle->mutable_entries()) {
    e.clear_inclusion_proof();
    if (e.seq() == 0) continue;
    for (const ledger::Hash& h : tree.InclusionProof(e.seq() - 1, size)) e.add_inclusion_proof(h);
  }
  std::string note;
  std::string body = ledger::CheckpointBody(kOrigin, size, tree.Root(size), 0);
  if (!ledger::SignNote(body, kOrigin, *TestKeys().signing, &note).ok()) __builtin_trap();
  bundle->set_checkpoint_note(note);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool resign = data[0] & 1;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  v1::EvidenceBundle bundle;
  if (input.front() == '{') {
    google::protobuf::util::JsonParseOptions options;
    if (!google::protobuf::util::JsonStringToMessage(std::string(input), &bundle, options).ok())
      return 0;
  } else if (!bundle.ParseFromArray(input.data(), static_cast<int>(input.size()))) {
    return 0;
  }
  if (resign) Resign(&bundle);
  ledger::BundleReport r = ledger::VerifyBundle(bundle, *TestKeys().trusted);
  // A failed check names what failed; a passing one says what it checked.
  if (r.ok ? r.checked.empty() : r.message.empty()) __builtin_trap();

  // The evidence report renders a finding's events whatever the check said
  // (it shows the check's result beside them): its timeline and page must
  // cope with any times, counts and ids the events hold.
  report::ReportData page;
  report::FindingEvidence finding;
  finding.finding = bundle.finding();
  for (const v1::BundleEntry& e : bundle.entries()) {
    ledger::EvidenceItem item;
    if (!item.parsed.ParseFromString(e.event_bytes())) continue;
    item.event.seq = e.seq();
    item.event.type = item.parsed.type();
    item.event.time = item.parsed.time().seconds();
    item.event.payload = e.event_bytes();
    item.event.leaf_hash = ledger::LeafHash(e.event_bytes());
    finding.items.push_back(std::move(item));
  }
  finding.checked = true;
  finding.verified = r.ok;
  finding.message = r.message;
  page.findings.push_back(std::move(finding));
  if (report::RenderHtml(page).empty()) __builtin_trap();
  return 0;
}
