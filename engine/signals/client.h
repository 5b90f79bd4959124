#ifndef CAREWATCH_ENGINE_SIGNALS_CLIENT_H_
#define CAREWATCH_ENGINE_SIGNALS_CLIENT_H_

#include <string>
#include <vector>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/common/status.h"

namespace carewatch::signals {

struct Identifier {
  std::string kind;   // email | phone | handle | profile_url
  std::string value;  // as the platform holds it; canonicalised here
};

// The client side of the blinded path (docs/signals.md): canonicalises each
// identifier, blinds it, has carewatchd evaluate the blinded elements
// (Signals.BlindEvaluate, authenticated with `bearer`), and unblinds the
// answers into tokens (64 bytes each, in order). The identifiers never
// leave this process; carewatchd sees only random-looking group elements.
Status FetchTokens(v1::Signals::StubInterface* stub, const std::string& bearer,
                   const std::string& service_id, const std::vector<Identifier>& ids,
                   std::vector<std::string>* tokens, int64_t* quota_remaining = nullptr);

}  // namespace carewatch::signals

#endif  // CAREWATCH_ENGINE_SIGNALS_CLIENT_H_
