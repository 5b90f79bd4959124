#ifndef CAREWATCH_ENGINE_LEDGER_KEYS_H_
#define CAREWATCH_ENGINE_LEDGER_KEYS_H_

#include <memory>
#include <string>
#include <string_view>

#include "engine/common/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace carewatch::ledger {

// An Ed25519 key pair (or a public key alone, for verifiers).
class SigningKey {
 public:
  ~SigningKey();
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  // Loads the PEM private key at `path`, or generates one and writes it there
  // (mode 0600, parent directories created) when the file does not exist.
  static Status LoadOrCreate(const std::string& path, std::unique_ptr<SigningKey>* out);
  // A verifier from a PEM public key.
  static Status FromPublicPem(std::string_view pem, std::unique_ptr<SigningKey>* out);
  // A verifier from a raw 32-byte Ed25519 public key.
  static Status FromRawPublic(std::string_view raw, std::unique_ptr<SigningKey>* out);
  // A key pair from a raw 32-byte Ed25519 seed (tests with published vectors).
  static Status FromRawSeed(std::string_view seed, std::unique_ptr<SigningKey>* out);

  bool has_private() const { return has_private_; }
  std::string PublicPem() const;
  // Raw 32-byte public key, hex: a short fingerprint for messages.
  std::string PublicHex() const;
  // Raw 32-byte public key.
  std::string PublicRaw() const;

  // Ed25519 signature (64 bytes). REQUIRES: has_private().
  Status Sign(std::string_view message, std::string* signature) const;
  bool Verify(std::string_view message, std::string_view signature) const;

 private:
  SigningKey() = default;
  EVP_PKEY* key_ = nullptr;
  bool has_private_ = false;
};

// Loads a 32-byte HMAC key (hex in a file) or creates one (mode 0600).
Status LoadOrCreateHmacKey(const std::string& path, std::string* key);

// HMAC-SHA256 of `data`, lower-case hex.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_KEYS_H_
