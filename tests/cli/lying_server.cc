// carewatch_lying_server: an Audit service whose pages never end, for
// tests of the regulator's tools against a server run by the party held to
// account (tests/cli/lying_server_test.sh). It authenticates nobody and
// answers every listing as `--mode` says:
//   repeat   one item a page, and always the same next page token
//   empty    no item, and a next page token
//   endless  a full page and a new token every time (evidence: more events
//            than the first page announced)
// Usage: carewatch_lying_server --listen HOST:PORT --mode MODE
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>
#include <string>

#include "carewatch/v1/service.grpc.pb.h"

namespace {

using namespace carewatch;
using grpc::ServerContext;

class LyingAudit final : public v1::Audit::Service {
 public:
  explicit LyingAudit(std::string mode) : mode_(std::move(mode)) {}

  grpc::Status ListBreaches(ServerContext*, const v1::ListBreachesRequest*,
                            v1::ListBreachesResponse* resp) override {
    for (int i = 0; i < Items(); ++i) {
      v1::Breach* b = resp->add_breaches();
      b->set_obligation_id("ob-" + std::to_string(++counter_));
      b->set_service_id("example-social");
    }
    resp->set_next_page_token(Token());
    return grpc::Status::OK;
  }
  grpc::Status ListFindings(ServerContext*, const v1::ListFindingsRequest*,
                            v1::ListFindingsResponse* resp) override {
    for (int i = 0; i < Items(); ++i) {
      resp->add_findings()->set_finding_id("fd-" + std::to_string(++counter_));
    }
    resp->set_next_page_token(Token());
    return grpc::Status::OK;
  }
  grpc::Status GetStats(ServerContext*, const v1::GetStatsRequest*,
                        v1::GetStatsResponse* resp) override {
    for (int i = 0; i < Items(); ++i) {
      resp->add_periods()->set_period("2026-" + std::to_string(++counter_));
    }
    resp->set_next_page_token(Token());
    return grpc::Status::OK;
  }
  grpc::Status GetEvidence(ServerContext*, const v1::GetEvidenceRequest*,
                           v1::GetEvidenceResponse* resp) override {
    resp->mutable_finding()->set_finding_id("fd-1");
    resp->mutable_checkpoint()->set_tree_size(10);
    resp->set_total_events(3);
    for (int i = 0; i < Items(); ++i) {
      resp->add_events()->mutable_event()->set_seq(static_cast<uint64_t>(1 + counter_++ % 10));
    }
    resp->set_next_page_token(Token());
    return grpc::Status::OK;
  }
  grpc::Status GetEntries(ServerContext*, const v1::GetEntriesRequest* req,
                          v1::GetEntriesResponse* resp) override {
    // Never past where it was asked to start.
    if (mode_ != "empty") resp->add_entries()->set_seq(req->start_seq());
    resp->set_next_seq(req->start_seq() == 0 ? 1 : req->start_seq());
    return grpc::Status::OK;
  }

 private:
  int Items() const { return mode_ == "empty" ? 0 : mode_ == "repeat" ? 1 : 1000; }
  std::string Token() { return mode_ == "endless" ? "p" + std::to_string(++pages_) : "again"; }

  std::string mode_;
  std::atomic<int64_t> counter_{0}, pages_{0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"An Audit service whose pages never end (tests only)"};
  std::string listen, mode;
  app.add_option("--listen", listen)->required();
  app.add_option("--mode", mode)->required()->check(CLI::IsMember({"repeat", "empty", "endless"}));
  CLI11_PARSE(app, argc, argv);
  LyingAudit audit(mode);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials());
  builder.RegisterService(&audit);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::cerr << "cannot listen on " << listen << "\n";
    return 1;
  }
  std::cerr << "serving " << mode << " on " << listen << "\n";
  server->Wait();
  return 0;
}
