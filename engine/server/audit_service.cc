// Audit: what a regulator's auditors call. Every call is recorded in the
// ledger (AUDIT_ACCESS) before it is answered; every answer is paged and
// bounded in bytes.
#include <algorithm>

#include "engine/ledger/audit.h"
#include "engine/ledger/evidence.h"
#include "engine/server/request.h"
#include "engine/server/services.h"

namespace carewatch::server {
namespace {

using grpc::ServerContext;
using grpc::StatusCode;

constexpr size_t kMaxPageBytes = 2 << 20;  // well under gRPC's 4 MiB default limit
constexpr size_t kMaxServicesListed = 1000;

size_t PageSize(int32_t n, int32_t fallback = 100) {
  return n <= 0 ? fallback : std::min(n, kMaxPageSize);
}

// A decimal page token; false when it is not one.
bool ParseOffset(const std::string& token, uint64_t* out) {
  if (token.empty() || token.size() > 19 ||
      token.find_first_not_of("0123456789") != std::string::npos)
    return false;
  *out = std::stoull(token);
  return true;
}

class AuditService final : public v1::Audit::Service {
 public:
  explicit AuditService(Server::State* s) : s_(s) {}

  // Aggregates of linkage alerts (docs/signals.md "What the regulator
  // sees"): counts per period, service and category; never a token, never
  // an alert joined to another service's reports.
  grpc::Status GetLinkageStats(ServerContext* ctx, const v1::GetLinkageStatsRequest* req,
                               v1::GetLinkageStatsResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetLinkageStats", *req, [&](const Principal&) -> grpc::Status {
      std::vector<v1::LinkageStatsRow> rows;
      Status st = ledger::LinkageStats(
          s_->ledger->backend(), req->service_id(),
          req->range().has_from() ? req->range().from().seconds() : INT64_MIN,
          req->range().has_to() ? req->range().to().seconds() : INT64_MAX, req->period(), &rows);
      if (st.code() == Status::Code::kInvalidArgument)
        return {StatusCode::RESOURCE_EXHAUSTED, st.message()};
      for (auto& r : rows) *resp->add_rows() = std::move(r);
      return ToGrpc(st);
    });
  }

  grpc::Status ListBreaches(ServerContext* ctx, const v1::ListBreachesRequest* req,
                            v1::ListBreachesResponse* resp) override {
    return Serve(*s_, ctx, "Audit/ListBreaches", *req, [&](const Principal&) -> grpc::Status {
      ledger::BreachQuery q;
      q.service_id = req->service_id();
      q.duty_id = req->duty_id();
      q.rule_id = req->rule_id();
      if (req->range().has_from()) q.from = req->range().from().seconds();
      if (req->range().has_to()) q.to = req->range().to().seconds();
      q.limit = PageSize(req->page_size());
      if (!req->page_token().empty() && !ParseOffset(req->page_token(), &q.after_seq))
        return {StatusCode::INVALID_ARGUMENT, "page_token: not a token from this service"};
      std::vector<std::pair<uint64_t, v1::Breach>> rows;
      grpc::Status st = ToGrpc(s_->ledger->backend().QueryBreaches(q, &rows));
      size_t bytes = 0;
      for (auto& [seq, b] : rows) {
        b.set_ledger_seq(seq);
        bytes += b.ByteSizeLong();
        *resp->add_breaches() = std::move(b);
        if (bytes > kMaxPageBytes && resp->breaches_size() < static_cast<int>(rows.size())) {
          resp->set_next_page_token(std::to_string(seq));
          return st;
        }
      }
      if (rows.size() == q.limit) resp->set_next_page_token(std::to_string(rows.back().first));
      return st;
    });
  }

  grpc::Status ListFindings(ServerContext* ctx, const v1::ListFindingsRequest* req,
                            v1::ListFindingsResponse* resp) override {
    return Serve(*s_, ctx, "Audit/ListFindings", *req, [&](const Principal&) {
      ledger::FindingQuery q;
      q.service_id = req->service_id();
      q.duty_id = req->duty_id();
      q.status = req->status();
      q.overlap = true;  // open at some moment of the range (docs/api.md)
      if (req->range().has_from()) q.from = req->range().from().seconds();
      if (req->range().has_to()) q.to = req->range().to().seconds();
      q.limit = PageSize(req->page_size());
      q.after_id = req->page_token();
      std::vector<v1::Finding> rows;
      grpc::Status st = ToGrpc(s_->ledger->backend().QueryFindings(q, &rows));
      size_t bytes = 0;
      for (auto& f : rows) {
        bytes += f.ByteSizeLong();
        *resp->add_findings() = f;
        if (bytes > kMaxPageBytes && resp->findings_size() < static_cast<int>(rows.size())) {
          resp->set_next_page_token(f.finding_id());
          return st;
        }
      }
      if (rows.size() == q.limit) resp->set_next_page_token(rows.back().finding_id());
      return st;
    });
  }

  grpc::Status GetEvidence(ServerContext* ctx, const v1::GetEvidenceRequest* req,
                           v1::GetEvidenceResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetEvidence", *req, [&](const Principal&) -> grpc::Status {
      uint64_t offset = 0;
      if (!req->page_token().empty() && (!ParseOffset(req->page_token(), &offset) ||
                                         req->tree_size() == 0 || offset > (1u << 30))) {
        return {StatusCode::INVALID_ARGUMENT,
                "page_token: not a token from this service (pass tree_size too)"};
      }
      // The first page signs a checkpoint covering everything so far; the
      // others are proved against the same one.
      v1::Checkpoint checkpoint;
      Status s = CheckpointFor(req->tree_size(), &checkpoint);
      if (!s.ok()) return ToGrpc(s);
      ledger::Evidence ev;
      s = ledger::BuildEvidence(
          s_->ledger->backend(),
          [&](uint64_t seq, uint64_t size, std::vector<ledger::Hash>* proof) {
            return s_->ledger->InclusionProof(seq, size, proof);
          },
          checkpoint, req->finding_id(), offset, PageSize(req->page_size(), 500), &ev);
      if (!s.ok()) return ToGrpc(s);
      *resp->mutable_finding() = ev.finding;
      *resp->mutable_checkpoint() = ev.checkpoint;
      resp->set_total_events(static_cast<uint32_t>(ev.total));
      size_t bytes = 0;
      for (auto& item : ev.items) {
        // Bounded in bytes too: a page stops early and says where to go on.
        if (bytes > kMaxPageBytes) {
          resp->set_next_page_token(std::to_string(offset));
          return grpc::Status::OK;
        }
        v1::EvidenceEvent* e = resp->add_events();
        *e->mutable_event() = item.parsed;
        e->set_leaf_hash(item.event.leaf_hash);
        e->set_event_bytes(item.event.payload);
        for (auto& h : item.proof) e->add_inclusion_proof(h);
        bytes += 2 * item.event.payload.size() + 32 * (item.proof.size() + 1);
        ++offset;
      }
      if (ev.next_offset) resp->set_next_page_token(std::to_string(ev.next_offset));
      return grpc::Status::OK;
    });
  }

  grpc::Status GetEntries(ServerContext* ctx, const v1::GetEntriesRequest* req,
                          v1::GetEntriesResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetEntries", *req, [&](const Principal&) -> grpc::Status {
      uint64_t size = s_->ledger->size();
      uint64_t end = req->end_seq() == 0 ? size : std::min<uint64_t>(req->end_seq(), size);
      if (req->start_seq() == 0 || req->start_seq() > size ||
          (req->end_seq() != 0 && req->end_seq() < req->start_seq())) {
        return {StatusCode::INVALID_ARGUMENT,
                "start_seq..end_seq: need 1 <= start_seq <= end_seq, within the log's " +
                    std::to_string(size) + " events"};
      }
      std::vector<ledger::StoredEvent> rows;
      uint64_t want = std::min<uint64_t>(end - req->start_seq() + 1, kMaxPageSize);
      Status s = s_->ledger->backend().ReadEvents(req->start_seq(), want, &rows);
      if (!s.ok()) return ToGrpc(s);
      size_t bytes = 0;
      uint64_t next = req->start_seq();
      for (auto& row : rows) {
        if (row.seq > end || (bytes > 0 && bytes + row.payload.size() > kMaxPageBytes)) break;
        bytes += row.payload.size();
        v1::LogEntry* e = resp->add_entries();
        e->set_seq(row.seq);
        e->set_event_bytes(std::move(row.payload));
        e->set_leaf_hash(row.leaf_hash);
        next = row.seq + 1;
      }
      resp->set_next_seq(next <= end ? next : 0);
      return grpc::Status::OK;
    });
  }

  grpc::Status GetInclusionProof(ServerContext* ctx, const v1::GetInclusionProofRequest* req,
                                 v1::GetInclusionProofResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetInclusionProof", *req, [&](const Principal&) -> grpc::Status {
      v1::Checkpoint checkpoint;
      Status s = CheckpointFor(req->tree_size(), &checkpoint);
      if (!s.ok()) return ToGrpc(s);
      if (req->seq() == 0 || req->seq() > checkpoint.tree_size()) {
        return {StatusCode::INVALID_ARGUMENT, "seq: must be from 1 to the checkpoint's size " +
                                                  std::to_string(checkpoint.tree_size())};
      }
      std::vector<ledger::Hash> proof;
      s = s_->ledger->InclusionProof(req->seq(), checkpoint.tree_size(), &proof);
      std::vector<ledger::StoredEvent> rows;
      if (s.ok()) s = s_->ledger->backend().ReadEvents(req->seq(), 1, &rows);
      if (s.ok() && (rows.empty() || rows[0].seq != req->seq()))
        s = Status::DataLoss("event " + std::to_string(req->seq()) + " is missing");
      if (!s.ok()) return ToGrpc(s);
      resp->mutable_entry()->set_seq(rows[0].seq);
      resp->mutable_entry()->set_event_bytes(rows[0].payload);
      resp->mutable_entry()->set_leaf_hash(rows[0].leaf_hash);
      *resp->mutable_checkpoint() = checkpoint;
      for (auto& h : proof) resp->add_proof(h);
      return grpc::Status::OK;
    });
  }

  grpc::Status GetCheckpoint(ServerContext* ctx, const v1::GetCheckpointRequest* req,
                             v1::GetCheckpointResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetCheckpoint", *req, [&](const Principal&) {
      Status s = s_->ledger->Flush();
      if (s.ok()) s = s_->ledger->LatestCheckpoint(resp->mutable_checkpoint());
      resp->set_public_key_pem(s_->ledger->key().PublicPem());
      resp->set_verifier_key(s_->ledger->VerifierKey());
      // Advisory: a rotation event that cannot be read leaves the list
      // short, never the checkpoint unanswered (verify names the event).
      std::vector<v1::KeyRotationEntry> rotations;
      if (s.ok() && ledger::ReadKeyRotations(s_->ledger->backend(), 16, &rotations).ok()) {
        for (auto& r : rotations) *resp->add_key_rotations() = std::move(r);
      }
      return ToGrpc(s);
    });
  }

  grpc::Status GetConsistencyProof(ServerContext* ctx, const v1::GetConsistencyProofRequest* req,
                                   v1::GetConsistencyProofResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetConsistencyProof", *req, [&](const Principal&) {
      std::vector<ledger::Hash> proof;
      Status s =
          s_->ledger->ConsistencyProof(req->first_tree_size(), req->second_tree_size(), &proof);
      for (auto& h : proof) resp->add_proof(h);
      return ToGrpc(s);
    });
  }

  grpc::Status GetStats(ServerContext* ctx, const v1::GetStatsRequest* req,
                        v1::GetStatsResponse* resp) override {
    return Serve(*s_, ctx, "Audit/GetStats", *req, [&](const Principal&) -> grpc::Status {
      uint64_t first = 0;
      if (!req->page_token().empty() && !ParseOffset(req->page_token(), &first))
        return {StatusCode::INVALID_ARGUMENT, "page_token: not a token from this service"};
      std::vector<ledger::PeriodStats> stats;
      std::vector<std::string> services;
      Status s = ledger::ComputeStats(
          s_->ledger->backend(), req->service_id(), req->period().empty() ? "month" : req->period(),
          req->range().has_from() ? req->range().from().seconds() : INT64_MIN,
          req->range().has_to() ? req->range().to().seconds() : INT64_MAX, &stats, &services);
      if (!s.ok()) return ToGrpc(s);
      size_t bytes = 0;
      if (first == 0) {
        resp->set_services_total(static_cast<int32_t>(services.size()));
        for (size_t i = 0; i < services.size() && i < kMaxServicesListed; ++i) {
          resp->add_services(services[i]);
          bytes += services[i].size() + 2;
        }
      }
      size_t limit = PageSize(req->page_size(), kMaxPageSize);
      for (size_t i = first; i < stats.size(); ++i) {
        if (i - first == limit || (bytes > kMaxPageBytes && i > first)) {
          resp->set_next_page_token(std::to_string(i));
          break;
        }
        v1::PeriodStats* out = resp->add_periods();
        ledger::ToProto(stats[i], out);
        bytes += out->ByteSizeLong();
      }
      return grpc::Status::OK;
    });
  }

 private:
  // The signed checkpoint of `tree_size` events; 0: sign one covering
  // everything durable now.
  Status CheckpointFor(uint64_t tree_size, v1::Checkpoint* out) {
    if (tree_size != 0) return s_->ledger->CheckpointAt(tree_size, out);
    Status s = s_->ledger->Flush();
    return s.ok() ? s_->ledger->LatestCheckpoint(out) : s;
  }
  Server::State* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewAuditService(Server::State* s) {
  return std::make_unique<AuditService>(s);
}

}  // namespace carewatch::server
