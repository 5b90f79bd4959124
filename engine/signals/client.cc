#include "engine/signals/client.h"

#include "engine/signals/canonical.h"
#include "engine/signals/oprf.h"

namespace carewatch::signals {

Status FetchTokens(v1::Signals::StubInterface* stub, const std::string& bearer,
                   const std::string& service_id, const std::vector<Identifier>& ids,
                   std::vector<std::string>* tokens, int64_t* quota_remaining) {
  tokens->clear();
  std::vector<std::string> inputs;
  std::vector<Scalar> blinds;
  v1::BlindEvaluateRequest req;
  req.set_service_id(service_id);
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string canonical;
    Status s = Canonicalize(ids[i].kind, ids[i].value, &canonical);
    if (!s.ok())
      return Status::InvalidArgument("identifier " + std::to_string(i) + ": " + s.message());
    inputs.push_back(TokenInput(ids[i].kind, canonical));
    Scalar blind;
    Element blinded;
    if (Status b = Blind(inputs.back(), &blind, &blinded); !b.ok()) return b;
    blinds.push_back(blind);
    req.add_blinded_elements(
        std::string(reinterpret_cast<const char*>(blinded.data()), blinded.size()));
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + bearer);
  v1::BlindEvaluateResponse resp;
  grpc::Status st = stub->BlindEvaluate(&ctx, req, &resp);
  if (!st.ok()) {
    std::string m = "BlindEvaluate: " + st.error_message();
    return st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? Status::ResourceExhausted(m)
           : st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? Status::InvalidArgument(m)
                                                                   : Status::Unavailable(m);
  }
  if (resp.evaluated_elements_size() != static_cast<int>(inputs.size()))
    return Status::DataLoss("BlindEvaluate answered " +
                            std::to_string(resp.evaluated_elements_size()) + " elements for " +
                            std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string out;
    if (Status f =
            Finalize(inputs[i], blinds[i], resp.evaluated_elements(static_cast<int>(i)), &out);
        !f.ok())
      return f;
    tokens->push_back(std::move(out));
  }
  if (quota_remaining) *quota_remaining = resp.quota_remaining();
  return Status::Ok();
}

}  // namespace carewatch::signals
