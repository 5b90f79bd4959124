// carewatch audit evidence / entries / prove, verify --evidence, key vkey:
// what a regulator uses to hold evidence that stands without carewatch.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/digest.h"
#include "engine/common/files.h"
#include "engine/eval/report_json.h"
#include "engine/ledger/audit.h"
#include "engine/ledger/evidence.h"
#include "engine/ledger/monitor.h"
#include "engine/ledger/note.h"
#include "engine/ledger/pg_backend.h"
#include "engine/rules/duration.h"
#include "engine/rules/loader.h"
#include "engine/server/metrics.h"
#include "tools/carewatch/common.h"

namespace carewatch::cli {

Status FromGrpc(const grpc::Status& st, const char* what) {
  if (st.ok()) return Status::Ok();
  return Status::Unavailable(std::string(what) + ": " + st.error_message() + " (" +
                             server::GrpcCodeName(st.error_code()) + ")");
}

Status PageCheck::Page(size_t items, const std::string& next) {
  listed_ += items;
  if (listed_ > kMaxListed) {
    return Status::ResourceExhausted(what_ + ": the server's answer runs past " +
                                     std::to_string(kMaxListed) +
                                     " items; narrow the query (--service, --from, --to)");
  }
  if (next.empty()) return Status::Ok();
  if (items == 0) {
    return Status::DataLoss(what_ +
                            ": the server sent an empty page that names a next one; its pages "
                            "do not move on, so the listing stops here");
  }
  if (next == last_) {
    return Status::DataLoss(what_ +
                            ": the server named the same next page twice; its pages "
                            "do not move on, so the listing stops here");
  }
  last_ = next;
  return Status::Ok();
}

Status FetchRemote(v1::Audit::Stub& audit, const std::string& token, const std::string& finding_id,
                   ledger::Evidence* out, uint64_t tree_size) {
  v1::GetEvidenceRequest req;
  req.set_finding_id(finding_id);
  req.set_tree_size(tree_size);
  bool first = true;
  PageCheck pages("GetEvidence");
  for (;;) {
    v1::GetEvidenceResponse resp;
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    Status s = FromGrpc(audit.GetEvidence(&ctx, req, &resp), "GetEvidence");
    if (!s.ok()) return s;
    if (first) {
      first = false;
      out->finding = resp.finding();
      out->checkpoint = resp.checkpoint();
      out->total = resp.total_events();
      req.set_tree_size(resp.checkpoint().tree_size());
    }
    for (const auto& e : resp.events()) {
      ledger::EvidenceItem item;
      item.event.seq = e.event().seq();
      item.event.payload = e.event_bytes();
      item.event.leaf_hash = e.leaf_hash();
      item.parsed = e.event();
      item.proof.assign(e.inclusion_proof().begin(), e.inclusion_proof().end());
      out->items.push_back(std::move(item));
    }
    // The first page says how many events the evidence holds: no more come.
    if (out->items.size() > out->total) {
      return Status::DataLoss("GetEvidence: the server sent more than the " +
                              std::to_string(out->total) + " events it announced");
    }
    s = pages.Page(static_cast<size_t>(resp.events_size()), resp.next_page_token());
    if (!s.ok()) return s;
    if (resp.next_page_token().empty()) return Status::Ok();
    req.set_page_token(resp.next_page_token());
  }
}

namespace {

// The same from a ledger file, against its latest signed checkpoint.
Status FetchLocal(ledger::LedgerBackend& backend, const std::string& finding_id,
                  ledger::Evidence* out) {
  std::vector<v1::Checkpoint> checkpoints;
  Status s = backend.ReadCheckpoints(&checkpoints);
  if (!s.ok()) return s;
  if (checkpoints.empty()) return Status::NotFound("the ledger has no signed checkpoint yet");
  std::vector<ledger::Hash> leaves;
  s = backend.ReadLeafHashes(&leaves);
  if (!s.ok()) return s;
  ledger::MerkleTree tree;
  for (const auto& h : leaves) tree.Append(h);
  return ledger::BuildEvidence(
      backend,
      [&](uint64_t seq, uint64_t size, std::vector<ledger::Hash>* proof) {
        if (size > tree.size() || seq == 0 || seq > size)
          return Status::DataLoss("checkpoint beyond the log");
        *proof = tree.InclusionProof(seq - 1, size);
        return Status::Ok();
      },
      checkpoints.back(), finding_id, 0, SIZE_MAX, out);
}

}  // namespace

Status LocalVerifierKey(ledger::LedgerBackend& backend, std::string* vkey) {
  std::string pem, origin;
  bool found_key = false, found_origin = false;
  Status s = backend.GetMeta("public_key", &pem, &found_key);
  if (s.ok()) s = backend.GetMeta("origin", &origin, &found_origin);
  if (!s.ok()) return s;
  if (!found_key || !found_origin) {
    return Status::NotFound("the ledger records no origin or key (open it with carewatchd once)");
  }
  std::unique_ptr<ledger::SigningKey> key;
  s = ledger::SigningKey::FromPublicPem(pem, &key);
  if (!s.ok()) return s;
  *vkey = ledger::VerifierKeyString(origin, key->PublicRaw());
  return Status::Ok();
}

v1::EvidenceBundle ToBundle(const ledger::Evidence& ev, const std::string& vkey) {
  v1::EvidenceBundle b;
  b.set_format(1);
  b.set_verifier_key(vkey);
  b.set_checkpoint_note(ev.checkpoint.note());
  *b.mutable_finding() = ev.finding;
  for (const auto& it : ev.items) {
    v1::BundleEntry* e = b.add_entries();
    e->set_seq(it.event.seq);
    e->set_event_bytes(it.event.payload);
    for (const auto& h : it.proof) e->add_inclusion_proof(h);
  }
  return b;
}

namespace {

void PrintEvidence(const ledger::Evidence& ev, bool json) {
  if (json) {
    std::cout << "{\"finding\":" << eval::ToJson(ev.finding)
              << ",\"checkpoint\":" << eval::ToJson(ev.checkpoint) << ",\"events\":[";
    for (size_t i = 0; i < ev.items.size(); ++i) {
      const auto& it = ev.items[i];
      std::cout << (i ? "," : "") << "{\"seq\":" << it.event.seq << ",\"leaf_hash\":\""
                << HexEncode(it.event.leaf_hash) << "\",\"event_bytes\":\""
                << ledger::Base64Encode(it.event.payload) << "\",\"inclusion_proof\":[";
      for (size_t k = 0; k < it.proof.size(); ++k)
        std::cout << (k ? "," : "") << "\"" << HexEncode(it.proof[k]) << "\"";
      std::cout << "],\"event\":" << eval::ToJson(it.parsed) << "}";
    }
    std::cout << "]}\n";
    return;
  }
  const v1::Finding& f = ev.finding;
  std::cout << "finding " << f.finding_id() << " (" << f.status() << ") " << f.service_id() << " "
            << f.duty_id() << ": " << ledger::FindingReason(f) << "\n";
  std::cout << "checkpoint: size " << ev.checkpoint.tree_size() << ", root "
            << HexEncode(ev.checkpoint.root_hash()) << "\n";
  for (const auto& it : ev.items) {
    std::cout << "  " << it.event.seq << "  " << v1::EventType_Name(it.parsed.type()) << "  "
              << rules::FormatDateTime(it.parsed.time().seconds()) << "  leaf "
              << HexEncode(it.event.leaf_hash).substr(0, 16) << "  proof: " << it.proof.size()
              << " hashes\n";
  }
}

}  // namespace

int RunAuditEvidence(const std::string& ledger_url, const AuditFilters& f, bool json) {
  if (f.finding_id.empty()) {
    std::cerr << "error: audit evidence needs a FINDING_ID\n";
    return kExitUsage;
  }
  ledger::Evidence ev;
  std::string vkey;
  Status s;
  if (!f.server.empty()) {
    auto audit = v1::Audit::NewStub(Connect(f.server, f.ca_file));
    s = FetchRemote(*audit, f.token, f.finding_id, &ev);
    if (s.ok() && !f.bundle.empty()) {
      v1::GetCheckpointResponse cp;
      grpc::ClientContext ctx;
      Authorize(&ctx, f.token);
      s = FromGrpc(audit->GetCheckpoint(&ctx, {}, &cp), "GetCheckpoint");
      vkey = cp.verifier_key();
    }
  } else {
    std::unique_ptr<ledger::LedgerBackend> backend;
    s = ledger::OpenBackend(ledger_url, true, &backend);
    // The finding, its events, the checkpoint and the proofs from one moment.
    std::unique_ptr<ledger::ReadSnapshot> snapshot;
    if (s.ok()) {
      snapshot = std::make_unique<ledger::ReadSnapshot>(*backend);
      s = snapshot->status();
    }
    if (s.ok()) s = FetchLocal(*backend, f.finding_id, &ev);
    if (s.ok() && !f.bundle.empty()) s = LocalVerifierKey(*backend, &vkey);
  }
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  if (!f.bundle.empty()) {
    std::ofstream out(f.bundle, std::ios::binary | std::ios::trunc);
    out << eval::ToJson(ToBundle(ev, vkey)) << "\n";
    if (!out) {
      std::cerr << "error: cannot write " << f.bundle << "\n";
      return kExitFailure;
    }
    std::cout << "wrote " << f.bundle << ": finding " << ev.finding.finding_id() << ", "
              << ev.items.size() << " events proved against the checkpoint at size "
              << ev.checkpoint.tree_size() << "\ncheck it with: carewatch verify --evidence "
              << f.bundle << " --vkey '" << (vkey.empty() ? "KEY" : vkey) << "'\n";
    return kExitOk;
  }
  PrintEvidence(ev, json);
  return kExitOk;
}

int RunAuditEntries(const std::string& ledger_url, const AuditFilters& f, bool json) {
  uint64_t start = f.start_seq == 0 ? 1 : f.start_seq;
  uint64_t printed = 0;
  auto print = [&](uint64_t seq, const std::string& bytes, const std::string& leaf) {
    v1::LedgerEvent e;
    bool parsed = e.ParseFromString(bytes);
    if (json) {
      std::cout << "{\"seq\":" << seq << ",\"leaf_hash\":\"" << HexEncode(leaf)
                << "\",\"event_bytes\":\"" << ledger::Base64Encode(bytes) << "\""
                << (parsed ? ",\"event\":" + eval::ToJson(e) : std::string()) << "}\n";
    } else {
      std::cout << seq << "  " << (parsed ? v1::EventType_Name(e.type()) : "(unparsable)") << "  "
                << (parsed ? rules::FormatDateTime(e.time().seconds()) : "") << "  leaf "
                << HexEncode(leaf) << "\n";
    }
    ++printed;
  };
  if (!f.server.empty()) {
    auto audit = v1::Audit::NewStub(Connect(f.server, f.ca_file));
    v1::GetEntriesRequest req;
    req.set_start_seq(start);
    req.set_end_seq(f.end_seq);
    for (;;) {
      v1::GetEntriesResponse resp;
      grpc::ClientContext ctx;
      Authorize(&ctx, f.token);
      Status s = FromGrpc(audit->GetEntries(&ctx, req, &resp), "GetEntries");
      if (!s.ok()) {
        std::cerr << "error: " << s.message() << "\n";
        return kExitFailure;
      }
      for (const auto& e : resp.entries()) print(e.seq(), e.event_bytes(), e.leaf_hash());
      if (resp.next_seq() == 0) break;
      if (resp.next_seq() <= req.start_seq() || resp.entries_size() == 0) {
        // A server held to account could otherwise keep this going forever.
        std::cerr << "error: GetEntries: the server's next page (seq " << resp.next_seq()
                  << ") does not move on from seq " << req.start_seq() << "\n";
        return kExitFailure;
      }
      req.set_start_seq(resp.next_seq());
    }
  } else {
    std::unique_ptr<ledger::LedgerBackend> backend;
    Status s = ledger::OpenBackend(ledger_url, true, &backend);
    for (uint64_t next = start; s.ok();) {
      std::vector<ledger::StoredEvent> rows;
      s = backend->ReadEvents(next, 1000, &rows);
      if (!s.ok() || rows.empty()) break;
      bool done = false;
      for (const auto& r : rows) {
        if (f.end_seq && r.seq > f.end_seq) {
          done = true;
          break;
        }
        print(r.seq, r.payload, r.leaf_hash);
        next = r.seq + 1;
      }
      if (done) break;
    }
    if (!s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  if (!json) std::cout << printed << " entries\n";
  return kExitOk;
}

int RunAuditProve(const std::string& ledger_url, const AuditFilters& f, bool json) {
  if (f.seq == 0) {
    std::cerr << "error: audit prove needs a SEQ\n";
    return kExitUsage;
  }
  v1::GetInclusionProofResponse resp;
  Status s;
  if (!f.server.empty()) {
    auto audit = v1::Audit::NewStub(Connect(f.server, f.ca_file));
    v1::GetInclusionProofRequest req;
    req.set_seq(f.seq);
    req.set_tree_size(f.tree_size);
    grpc::ClientContext ctx;
    Authorize(&ctx, f.token);
    s = FromGrpc(audit->GetInclusionProof(&ctx, req, &resp), "GetInclusionProof");
  } else {
    std::unique_ptr<ledger::LedgerBackend> backend;
    s = ledger::OpenBackend(ledger_url, true, &backend);
    // The checkpoint, the leaves and the event from one moment.
    std::unique_ptr<ledger::ReadSnapshot> snapshot;
    if (s.ok()) {
      snapshot = std::make_unique<ledger::ReadSnapshot>(*backend);
      s = snapshot->status();
    }
    std::vector<v1::Checkpoint> checkpoints;
    if (s.ok()) s = backend->ReadCheckpoints(&checkpoints);
    const v1::Checkpoint* c = nullptr;
    for (const auto& x : checkpoints) {
      if (f.tree_size ? x.tree_size() == f.tree_size : x.tree_size() >= f.seq) c = &x;
    }
    if (s.ok() && !c)
      s = Status::NotFound("no signed checkpoint covers seq " + std::to_string(f.seq));
    std::vector<ledger::Hash> leaves;
    if (s.ok()) s = backend->ReadLeafHashes(&leaves);
    std::vector<ledger::StoredEvent> rows;
    if (s.ok()) s = backend->ReadEvents(f.seq, 1, &rows);
    if (s.ok() && (rows.empty() || rows[0].seq != f.seq))
      s = Status::NotFound("no event " + std::to_string(f.seq));
    if (s.ok()) {
      ledger::MerkleTree tree;
      for (const auto& h : leaves) tree.Append(h);
      *resp.mutable_checkpoint() = *c;
      resp.mutable_entry()->set_seq(f.seq);
      resp.mutable_entry()->set_event_bytes(rows[0].payload);
      resp.mutable_entry()->set_leaf_hash(rows[0].leaf_hash);
      for (const auto& h : tree.InclusionProof(f.seq - 1, c->tree_size())) resp.add_proof(h);
    }
  }
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  if (json) {
    std::cout << eval::ToJson(resp) << "\n";
    return kExitOk;
  }
  v1::LedgerEvent e;
  bool parsed = e.ParseFromString(resp.entry().event_bytes());
  std::cout << "event " << f.seq << " (" << (parsed ? v1::EventType_Name(e.type()) : "?")
            << "), leaf " << HexEncode(ledger::LeafHash(resp.entry().event_bytes())) << "\n"
            << "in the tree of " << resp.checkpoint().tree_size() << " events, root "
            << HexEncode(resp.checkpoint().root_hash()) << "\naudit path (" << resp.proof_size()
            << " hashes):\n";
  for (const auto& h : resp.proof()) std::cout << "  " << HexEncode(h) << "\n";
  std::cout << "signed checkpoint:\n" << resp.checkpoint().note();
  return kExitOk;
}

int RunVerifyEvidence(const std::string& file, const std::string& vkey_text) {
  std::unique_ptr<ledger::TrustedKey> key;
  Status s = ledger::TrustedKey::Load(vkey_text, &key);
  if (!s.ok()) {
    std::cout << "FAIL: --vkey: " << s.message() << "\n";
    return kExitFailure;
  }
  std::string error;
  auto text = rules::ReadFileToString(file, &error);
  if (!text) {
    std::cout << "FAIL: " << file << ": " << error << "\n";
    return kExitFailure;
  }
  v1::EvidenceBundle bundle;
  google::protobuf::util::JsonParseOptions options;
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &bundle, options);
  if (!parsed.ok()) {
    std::cout << "FAIL: " << file << " is not an evidence bundle: " << parsed.message() << "\n";
    return kExitFailure;
  }
  ledger::BundleReport r = ledger::VerifyBundle(bundle, *key);
  for (const auto& c : r.checked) std::cout << "  ok: " << c << "\n";
  if (!r.ok) {
    std::cout << "FAIL: " << r.message << "\n";
    return kExitFailure;
  }
  std::cout << "OK: " << r.message << "\n";
  return kExitOk;
}

namespace {

// The monitor's --state file: absent on a first run.
Status ReadState(const std::string& path, ledger::MonitorState* out) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return Status::Ok();  // none yet: the first run
  std::string error;
  auto text = rules::ReadFileToString(path, &error);
  if (!text) return Status::Unavailable("--state " + path + ": " + error);
  if (text->size() > 4096) return Status::InvalidArgument("--state " + path + ": too large");
  Status s = ledger::ParseMonitorState(*text, out);
  if (!s.ok()) return Status::InvalidArgument("--state " + path + ": " + s.message());
  return Status::Ok();
}

// One check of the server's current checkpoint (ledger::MonitorCheck). On
// success `state` advances to it.
Status CheckCheckpoint(v1::Audit::Stub& audit, const std::string& token,
                       const ledger::TrustedKey& key, ledger::MonitorState* state,
                       v1::Checkpoint* out) {
  v1::GetCheckpointResponse cp;
  {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    Status s = FromGrpc(audit.GetCheckpoint(&ctx, {}, &cp), "GetCheckpoint");
    if (!s.ok()) return s;
  }
  auto fetch = [&](uint64_t first, uint64_t second, std::vector<ledger::Hash>* proof) {
    v1::GetConsistencyProofRequest req;
    req.set_first_tree_size(first);
    req.set_second_tree_size(second);
    v1::GetConsistencyProofResponse resp;
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    Status s = FromGrpc(audit.GetConsistencyProof(&ctx, req, &resp), "GetConsistencyProof");
    if (s.ok()) proof->assign(resp.proof().begin(), resp.proof().end());
    return s;
  };
  Status s = ledger::MonitorCheck(key, cp.checkpoint(), fetch, state);
  if (s.ok()) *out = cp.checkpoint();
  // Not signed by a key held: if the server says the log was handed over
  // to a key not held, say so (its word; the deployment publishes keys).
  if (s.code() == Status::Code::kDataLoss && !cp.key_rotations().empty()) {
    const v1::KeyRotationEntry& last = *cp.key_rotations().rbegin();
    std::unique_ptr<ledger::TrustedKey> next;
    if (last.rotated().verifier_key().size() <= 512 &&
        ledger::TrustedKey::FromVerifierKey(last.rotated().verifier_key(), &next).ok() &&
        !key.Trusts(next->key().PublicRaw())) {
      std::string reason = last.rotated().reason().substr(0, 200);
      for (char& c : reason) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
      }
      return Status::DataLoss(
          s.message() + "; the server says the log's key was handed over at event " +
          std::to_string(last.seq()) + " (" + rules::FormatDateTime(last.recorded_at().seconds()) +
          (reason.empty() ? "" : ", " + reason) + ") to " + last.rotated().verifier_key() +
          ": if the deployment published that key, add it to --vkey");
    }
  }
  return s;
}

}  // namespace

int RunVerifyServer(const std::string& server, const std::string& token,
                    const std::string& trusted_key, const std::string& state_file,
                    const std::string& ca_file, int64_t watch_seconds, int rounds) {
  std::unique_ptr<ledger::TrustedKey> key;
  Status s = ledger::TrustedKey::Load(trusted_key, &key);
  if (!s.ok()) {
    std::cout << "FAIL: trusted key: " << s.message() << "\n";
    return kExitFailure;
  }
  ledger::MonitorState state;
  if (!state_file.empty()) {
    s = ReadState(state_file, &state);
    if (!s.ok()) {
      std::cout << "FAIL: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  auto audit = v1::Audit::NewStub(Connect(server, ca_file));
  // The state is written durably before a check is reported OK: a crash
  // leaves the old state or the new one, never an empty file.
  auto save = [&]() -> Status {
    if (state_file.empty()) return Status::Ok();
    return WriteFileDurably(state_file, ledger::FormatMonitorState(state), 0644);
  };
  if (watch_seconds > 0) {
    // Monitor: each new checkpoint must extend the last one accepted.
    for (int round = 1; rounds == 0 || round <= rounds; ++round) {
      v1::Checkpoint c;
      s = CheckCheckpoint(*audit, token, *key, &state, &c);
      if (s.code() == Status::Code::kDataLoss) {
        std::cout << "ALERT: " << s.message() << "\n" << std::flush;
        return kExitFailure;
      }
      if (!s.ok()) {
        // The server may be down for a while: say so and keep watching.
        std::cout << "WARN: " << s.message() << "\n" << std::flush;
      } else {
        s = save();
        if (!s.ok()) {
          std::cout << "FAIL: " << s.message() << "\n" << std::flush;
          return kExitFailure;
        }
        std::cout << "OK: checkpoint at size " << c.tree_size()
                  << " signed and consistent with every one before\n"
                  << std::flush;
      }
      if (rounds != 0 && round == rounds) break;
      std::this_thread::sleep_for(std::chrono::seconds(watch_seconds));
    }
    return kExitOk;
  }
  v1::Checkpoint c;
  s = CheckCheckpoint(*audit, token, *key, &state, &c);
  if (!s.ok()) {
    std::cout << "FAIL: " << s.message() << "\n";
    return kExitFailure;
  }
  // Every finding's evidence, checked and recomputed as verify --evidence does.
  v1::ListFindingsRequest lreq;
  lreq.set_page_size(1000);
  uint64_t findings = 0, events = 0;
  PageCheck pages("ListFindings");
  for (;;) {
    v1::ListFindingsResponse lresp;
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    s = FromGrpc(audit->ListFindings(&ctx, lreq, &lresp), "ListFindings");
    if (!s.ok()) {
      std::cout << "FAIL: " << s.message() << "\n";
      return kExitFailure;
    }
    for (const v1::Finding& f : lresp.findings()) {
      ledger::Evidence ev;
      s = FetchRemote(*audit, token, f.finding_id(), &ev);
      if (!s.ok()) {
        std::cout << "FAIL: evidence for " << f.finding_id() << ": " << s.message() << "\n";
        return kExitFailure;
      }
      ledger::BundleReport r = ledger::VerifyBundle(ToBundle(ev, ""), *key);
      if (!r.ok) {
        std::cout << "FAIL: evidence for " << f.finding_id() << ": " << r.message << "\n";
        return kExitFailure;
      }
      events += r.entries;
      ++findings;
    }
    s = pages.Page(static_cast<size_t>(lresp.findings_size()), lresp.next_page_token());
    if (!s.ok()) {
      std::cout << "FAIL: " << s.message() << "\n";
      return kExitFailure;
    }
    if (lresp.next_page_token().empty()) break;
    lreq.set_page_token(lresp.next_page_token());
  }
  s = save();
  if (!s.ok()) {
    std::cout << "FAIL: " << s.message() << "\n";
    return kExitFailure;
  }
  std::cout << "OK: checkpoint at size " << c.tree_size() << " signed by the published key"
            << (state_file.empty() ? "" : " and consistent with the last one accepted") << "; "
            << findings << " findings recomputed from " << events
            << " evidence events with inclusion proofs\n";
  return kExitOk;
}

int RunKeyVkey(const std::string& ledger_url) {
  std::unique_ptr<ledger::LedgerBackend> backend;
  Status s = ledger::OpenBackend(ledger_url, true, &backend);
  std::string vkey;
  if (s.ok()) s = LocalVerifierKey(*backend, &vkey);
  if (!s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  std::cout << vkey << "\n";
  return kExitOk;
}

int RunKeyRotate(const KeyRotateOptions& o) {
  namespace fs = std::filesystem;
  const bool postgres = ledger::IsPostgresUrl(o.ledger);
  if (postgres && (o.signing_key.empty() || o.new_key.empty())) {
    std::cerr << "error: key rotate --ledger postgresql://... needs --signing-key and --new-key "
                 "(a database ledger has no directory to keep keys in)\n";
    return kExitUsage;
  }
  // By default the key beside the ledger. Without --new-key the new one is
  // made beside the old (KEY.next) and, once the ledger has it, takes the
  // old one's name; the old one is kept as KEY.retired-<key id>.
  const std::string old_path =
      o.signing_key.empty() ? ledger::LedgerDirectory(o.ledger) + "/ledger.key" : o.signing_key;
  const bool install = o.new_key.empty();
  const std::string new_path = install ? old_path + ".next" : o.new_key;
  auto fail = [](const Status& s) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  };
  std::unique_ptr<ledger::LedgerBackend> backend;
  Status s = ledger::OpenBackend(o.ledger, true, &backend);
  std::string origin;
  bool found = false;
  if (s.ok()) s = backend->GetMeta("origin", &origin, &found);
  if (!s.ok()) return fail(s);
  if (!found)
    return fail(Status::NotFound("the ledger records no origin (open it with carewatchd once)"));
  backend.reset();
  if (!fs::exists(old_path))
    return fail(Status::NotFound("signing key " + old_path + " does not exist"));
  std::unique_ptr<ledger::SigningKey> next;
  s = ledger::SigningKey::LoadOrCreate(new_path, &next);
  if (!s.ok()) return fail(s);
  const std::string new_vkey = ledger::VerifierKeyString(origin, next->PublicRaw());
  if (o.dry_run) {
    std::cout << "the new verifier key (nothing rotated yet; publish it, then run without "
                 "--dry-run):\n"
              << new_vkey << "\n";
    return kExitOk;
  }
  ledger::LedgerOptions options;
  options.url = o.ledger;
  options.signing_key_path = old_path;
  std::unique_ptr<ledger::Ledger> l;
  s = ledger::Ledger::Open(options, &l);
  if (!s.ok()) return fail(s);
  const std::string old_vkey = l->VerifierKey();
  s = l->RotateKey(std::move(next), o.reason);
  v1::Checkpoint handover;
  if (s.ok()) s = l->LatestCheckpoint(&handover);
  l.reset();  // closes the ledger
  if (!s.ok()) return fail(s);
  std::string moved;
  if (install) {
    const std::string id = old_vkey.substr(origin.size() + 1, 8);
    const std::string retired = old_path + ".retired-" + id;
    std::error_code ec;
    fs::rename(old_path, retired, ec);
    if (!ec) fs::rename(new_path, old_path, ec);
    if (ec) {
      return fail(Status::Unavailable(
          "the ledger was rotated to " + new_path + " but moving the key files failed (" +
          ec.message() + "): move " + new_path + " to " + old_path + " before carewatchd starts"));
    }
    moved = "The new key is now " + old_path + "; the old one was moved to " + retired +
            ": keep it offline or destroy it, it signs nothing more.\n";
  } else {
    moved = "Restart carewatchd with signing_key: " + new_path + " (the old key " + old_path +
            " no longer opens the ledger: keep it offline or destroy it).\n";
  }
  std::cout << "OK: the ledger is signed by " << new_vkey << "\n"
            << "  from the KEY_ROTATED event at seq " << handover.tree_size()
            << "; the checkpoint at size " << handover.tree_size()
            << " is signed by both keys, so whoever trusts " << old_vkey
            << " can follow the log across.\n"
            << moved
            << "Publish the new verifier key; verifiers may hold both keys meanwhile "
               "(--vkey 'OLD,NEW').\n";
  return kExitOk;
}

}  // namespace carewatch::cli
