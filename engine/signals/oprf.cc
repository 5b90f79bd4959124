#include "engine/signals/oprf.h"

#include <sodium.h>

#include <cstring>
#include <mutex>

namespace carewatch::signals {
namespace {

// contextString = "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier.
const std::string& ContextString() {
  static const std::string s =
      std::string("OPRFV1-") + std::string(1, '\0') + "-ristretto255-SHA512";
  return s;
}

std::string I2osp2(size_t n) {
  return std::string{static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
}

const uint8_t* U8(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

Status HashToGroup(std::string_view input, Element* out) {
  std::string uniform;
  if (Status s = ExpandMessageXmd(input, "HashToGroup-" + ContextString(), 64, &uniform); !s.ok())
    return s;
  crypto_core_ristretto255_from_hash(out->data(), U8(uniform));
  return Status::Ok();
}

Status HashToScalar(std::string_view input, const std::string& dst, Scalar* out) {
  std::string uniform;
  if (Status s = ExpandMessageXmd(input, dst, 64, &uniform); !s.ok()) return s;
  crypto_core_ristretto255_scalar_reduce(out->data(), U8(uniform));
  return Status::Ok();
}

bool IsZero(const uint8_t* p, size_t n) { return sodium_is_zero(p, n) == 1; }

Status CheckInput(std::string_view input) {
  if (input.size() > 0xffff)
    return Status::InvalidArgument("OPRF input of " + std::to_string(input.size()) +
                                   " bytes is longer than 65535");
  return Status::Ok();
}

// HashToGroup(input), refusing an input too long for I2OSP(len, 2) and one
// that maps to the identity (RFC 9497's InvalidInputError).
Status InputElement(std::string_view input, Element* out) {
  if (Status s = InitSodium(); !s.ok()) return s;
  if (Status s = CheckInput(input); !s.ok()) return s;
  if (Status s = HashToGroup(input, out); !s.ok()) return s;
  if (IsZero(out->data(), out->size()))
    return Status::InvalidArgument("OPRF input maps to the identity element");
  return Status::Ok();
}

// Output = SHA-512(I2OSP(len(input), 2) || input || I2OSP(32, 2) || element
// || "Finalize").
std::string FinalizeHash(std::string_view input, const Element& unblinded) {
  std::string h = I2osp2(input.size());
  h.append(input);
  h += I2osp2(kElementSize);
  h.append(reinterpret_cast<const char*>(unblinded.data()), unblinded.size());
  h += "Finalize";
  std::string out(kOutputSize, '\0');
  crypto_hash_sha512(reinterpret_cast<uint8_t*>(out.data()), U8(h), h.size());
  return out;
}

}  // namespace

Status InitSodium() {
  static int rc = sodium_init();
  if (rc < 0) return Status::Internal("libsodium could not be initialised");
  return Status::Ok();
}

Status ExpandMessageXmd(std::string_view msg, std::string_view dst, size_t len, std::string* out) {
  constexpr size_t kB = crypto_hash_sha512_BYTES;  // 64
  constexpr size_t kS = 128;                       // SHA-512 block size
  const size_t ell = (len + kB - 1) / kB;
  if (ell > 255 || len > 0xffff || dst.size() > 255)
    return Status::InvalidArgument("expand_message_xmd: length or DST too long");
  std::string dst_prime(dst);
  dst_prime += static_cast<char>(dst.size());
  std::string msg_prime(kS, '\0');
  msg_prime.append(msg);
  msg_prime += I2osp2(len);
  msg_prime += '\0';
  msg_prime += dst_prime;
  uint8_t b0[kB];
  crypto_hash_sha512(b0, U8(msg_prime), msg_prime.size());
  out->clear();
  uint8_t prev[kB];
  for (size_t i = 1; i <= ell; ++i) {
    std::string in;
    if (i == 1) {
      in.assign(reinterpret_cast<const char*>(b0), kB);
    } else {
      in.resize(kB);
      for (size_t j = 0; j < kB; ++j) in[j] = static_cast<char>(b0[j] ^ prev[j]);
    }
    in += static_cast<char>(i);
    in += dst_prime;
    crypto_hash_sha512(prev, U8(in), in.size());
    out->append(reinterpret_cast<const char*>(prev), kB);
  }
  out->resize(len);
  return Status::Ok();
}

Status DeriveKeyPair(std::string_view seed, std::string_view info, Scalar* sk, Element* pk) {
  if (Status s = InitSodium(); !s.ok()) return s;
  if (info.size() > 0xffff) return Status::InvalidArgument("DeriveKeyPair: info too long");
  std::string derive_input(seed);
  derive_input += I2osp2(info.size());
  derive_input.append(info);
  const std::string dst = "DeriveKeyPair" + ContextString();
  for (int counter = 0; counter < 256; ++counter) {
    if (Status s = HashToScalar(derive_input + static_cast<char>(counter), dst, sk); !s.ok())
      return s;
    if (!IsZero(sk->data(), sk->size())) {
      if (crypto_scalarmult_ristretto255_base(pk->data(), sk->data()) != 0)
        return Status::Internal("DeriveKeyPair: public key is the identity");
      return Status::Ok();
    }
  }
  return Status::Internal("DeriveKeyPair: no key after 256 attempts");
}

Scalar RandomScalar() {
  (void)InitSodium();
  Scalar s{};
  do {
    crypto_core_ristretto255_scalar_random(s.data());
  } while (IsZero(s.data(), s.size()));
  return s;
}

Status Blind(std::string_view input, Scalar* blind, Element* blinded, const Scalar* fixed_blind) {
  Element p;
  if (Status s = InputElement(input, &p); !s.ok()) return s;
  *blind = fixed_blind ? *fixed_blind : RandomScalar();
  if (crypto_scalarmult_ristretto255(blinded->data(), blind->data(), p.data()) != 0)
    return Status::InvalidArgument("OPRF blind gives the identity element");
  return Status::Ok();
}

Status BlindEvaluate(const Scalar& sk, std::string_view blinded, Element* evaluated) {
  if (Status s = InitSodium(); !s.ok()) return s;
  if (blinded.size() != kElementSize)
    return Status::InvalidArgument("blinded element is " + std::to_string(blinded.size()) +
                                   " bytes, not 32");
  if (crypto_core_ristretto255_is_valid_point(U8(blinded)) != 1 ||
      IsZero(U8(blinded), kElementSize))
    return Status::InvalidArgument("blinded element is not a valid ristretto255 element");
  if (crypto_scalarmult_ristretto255(evaluated->data(), sk.data(), U8(blinded)) != 0)
    return Status::InvalidArgument("blinded element evaluates to the identity");
  return Status::Ok();
}

Status Finalize(std::string_view input, const Scalar& blind, std::string_view evaluated,
                std::string* output) {
  if (Status s = InitSodium(); !s.ok()) return s;
  if (Status s = CheckInput(input); !s.ok()) return s;
  if (evaluated.size() != kElementSize ||
      crypto_core_ristretto255_is_valid_point(U8(evaluated)) != 1)
    return Status::InvalidArgument("evaluated element is not a valid ristretto255 element");
  Scalar inverse;
  if (crypto_core_ristretto255_scalar_invert(inverse.data(), blind.data()) != 0)
    return Status::InvalidArgument("blind is zero");
  Element n;
  if (crypto_scalarmult_ristretto255(n.data(), inverse.data(), U8(evaluated)) != 0)
    return Status::InvalidArgument("evaluated element unblinds to the identity");
  *output = FinalizeHash(input, n);
  return Status::Ok();
}

Status Evaluate(const Scalar& sk, std::string_view input, std::string* output) {
  Element p;
  if (Status s = InputElement(input, &p); !s.ok()) return s;
  Element n;
  if (crypto_scalarmult_ristretto255(n.data(), sk.data(), p.data()) != 0)
    return Status::InvalidArgument("OPRF evaluation gives the identity element");
  *output = FinalizeHash(input, n);
  return Status::Ok();
}

}  // namespace carewatch::signals
