// Noop: the transport's baseline for benchmarks (docs/performance.md). Off
// unless noop_service is set; answers any authenticated caller.
#include "engine/server/request.h"
#include "engine/server/services.h"

namespace carewatch::server {
namespace {

using grpc::ServerContext;

// Evaluate is served as Moderation/Evaluate is (gRPC's callback API), so
// that the baseline costs what the same transport costs.
class NoopService final : public v1::Noop::WithCallbackMethod_Evaluate<v1::Noop::Service> {
 public:
  explicit NoopService(Server::State* s) : s_(s) {}
  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const v1::EvaluateRequest* req,
                                     v1::EvaluateResponse* resp) override {
    return ServeAsync(*s_, ctx, "Noop/Evaluate", *req,
                      [&](const Principal&, const UnaryAnswer& answer) {
                        resp->mutable_verdict()->set_report_id(req->report().report_id());
                        answer(grpc::Status::OK);
                      });
  }
  grpc::Status EvaluateStream(
      ServerContext* ctx,
      grpc::ServerReaderWriter<v1::EvaluateResponse, v1::EvaluateRequest>* stream) override {
    return ServeStream(*s_, ctx, "Noop/EvaluateStream", [&](const Principal&, const MethodPolicy&) {
      v1::EvaluateRequest req;
      v1::EvaluateResponse resp;
      while (stream->Read(&req)) {
        resp.mutable_verdict()->set_report_id(req.report().report_id());
        stream->Write(resp);
      }
      return grpc::Status::OK;
    });
  }

 private:
  Server::State* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewNoopService(Server::State* s) {
  return std::make_unique<NoopService>(s);
}

}  // namespace carewatch::server
