#ifndef CAREWATCH_ENGINE_SIGNALS_OPRF_H_
#define CAREWATCH_ENGINE_SIGNALS_OPRF_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/common/status.h"

namespace carewatch::signals {

// RFC 9497 OPRF(ristretto255, SHA-512), mode 0x00 (OPRF), on libsodium's
// ristretto255 group. Elements and scalars are 32 bytes (the RFC's
// SerializeElement / SerializeScalar: ristretto255 encoding, scalars little
// endian); the output is 64 bytes (Nh).
//
// The protocol (RFC 9497 section 3.3.1):
//   client: (blind, blinded) = Blind(input)
//   server: evaluated = BlindEvaluate(skS, blinded)
//   client: output = Finalize(input, blind, evaluated)
// and the server alone, for inputs it sees anyway: output = Evaluate(skS,
// input). Both give the same output for the same key and input.
constexpr size_t kElementSize = 32;
constexpr size_t kScalarSize = 32;
constexpr size_t kOutputSize = 64;

using Scalar = std::array<uint8_t, kScalarSize>;
using Element = std::array<uint8_t, kElementSize>;

// Initialises libsodium once; every function below calls it.
Status InitSodium();

// expand_message_xmd with SHA-512 (RFC 9380 section 5.3.1).
Status ExpandMessageXmd(std::string_view msg, std::string_view dst, size_t len, std::string* out);

// RFC 9497 section 3.2.1: a key pair from a seed and info (deterministic).
Status DeriveKeyPair(std::string_view seed, std::string_view info, Scalar* sk, Element* pk);
// A fresh random private key (non-zero).
Scalar RandomScalar();

// Client: `blind` random unless `fixed_blind` is given (tests). InvalidArgument
// when the input maps to the identity element.
Status Blind(std::string_view input, Scalar* blind, Element* blinded,
             const Scalar* fixed_blind = nullptr);
// Server: InvalidArgument when `blinded` is not a valid, non-identity
// element (DeserializeElement's checks).
Status BlindEvaluate(const Scalar& sk, std::string_view blinded, Element* evaluated);
// Client: the 64-byte output.
Status Finalize(std::string_view input, const Scalar& blind, std::string_view evaluated,
                std::string* output);
// Server, input in the clear: the same output as the three steps above.
Status Evaluate(const Scalar& sk, std::string_view input, std::string* output);

}  // namespace carewatch::signals

#endif  // CAREWATCH_ENGINE_SIGNALS_OPRF_H_
