#include "engine/ledger/keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "engine/common/digest.h"
#include "engine/common/files.h"

namespace carewatch::ledger {

namespace fs = std::filesystem;

SigningKey::~SigningKey() {
  if (key_) EVP_PKEY_free(key_);
}

namespace {

Status WritePrivateFile(const std::string& path, const std::string& content) {
  std::error_code ec;
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  // Created 0600 from the start (never readable by others, whatever the
  // umask), written whole, synced, then renamed into place.
  Status s = WriteFileDurably(path, content, 0600);
  return s.ok() ? s : s.WithPrefix("key file: ");
}

}  // namespace

Status SigningKey::LoadOrCreate(const std::string& path, std::unique_ptr<SigningKey>* out) {
  std::unique_ptr<SigningKey> k(new SigningKey());
  if (fs::exists(path)) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return Status::Unavailable("cannot open signing key " + path);
    k->key_ = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    if (!k->key_ || EVP_PKEY_get_base_id(k->key_) != EVP_PKEY_ED25519) {
      return Status::InvalidArgument("signing key " + path + " is not an Ed25519 PEM private key");
    }
  } else {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
    if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &k->key_) <= 0) {
      EVP_PKEY_CTX_free(ctx);
      return Status::Internal("Ed25519 key generation failed");
    }
    EVP_PKEY_CTX_free(ctx);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, k->key_, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    std::string pem(data, len);
    BIO_free(bio);
    Status s = WritePrivateFile(path, pem);
    if (!s.ok()) return s;
  }
  k->has_private_ = true;
  *out = std::move(k);
  return Status::Ok();
}

Status SigningKey::FromPublicPem(std::string_view pem, std::unique_ptr<SigningKey>* out) {
  std::unique_ptr<SigningKey> k(new SigningKey());
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  k->key_ = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!k->key_ || EVP_PKEY_get_base_id(k->key_) != EVP_PKEY_ED25519) {
    return Status::InvalidArgument("not an Ed25519 PEM public key");
  }
  *out = std::move(k);
  return Status::Ok();
}

std::string SigningKey::PublicPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key_);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, len);
  BIO_free(bio);
  return pem;
}

Status SigningKey::FromRawPublic(std::string_view raw, std::unique_ptr<SigningKey>* out) {
  if (raw.size() != 32) return Status::InvalidArgument("an Ed25519 public key has 32 bytes");
  std::unique_ptr<SigningKey> k(new SigningKey());
  k->key_ = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                        reinterpret_cast<const unsigned char*>(raw.data()), 32);
  if (!k->key_) return Status::InvalidArgument("not a valid Ed25519 public key");
  *out = std::move(k);
  return Status::Ok();
}

Status SigningKey::FromRawSeed(std::string_view seed, std::unique_ptr<SigningKey>* out) {
  if (seed.size() != 32) return Status::InvalidArgument("an Ed25519 seed has 32 bytes");
  std::unique_ptr<SigningKey> k(new SigningKey());
  k->key_ = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                         reinterpret_cast<const unsigned char*>(seed.data()), 32);
  if (!k->key_) return Status::InvalidArgument("not a valid Ed25519 seed");
  k->has_private_ = true;
  *out = std::move(k);
  return Status::Ok();
}

std::string SigningKey::PublicRaw() const {
  unsigned char raw[32];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(key_, raw, &len) != 1) return "";
  return std::string(reinterpret_cast<char*>(raw), len);
}

std::string SigningKey::PublicHex() const {
  unsigned char raw[32];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(key_, raw, &len) != 1) return "";
  return HexEncode(std::string_view(reinterpret_cast<char*>(raw), len));
}

Status SigningKey::Sign(std::string_view message, std::string* signature) const {
  if (!has_private_) return Status::FailedPrecondition("no private key");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 64;
  signature->resize(len);
  bool ok =
      ctx && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature->data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return Status::Internal("Ed25519 signing failed");
  signature->resize(len);
  return Status::Ok();
}

bool SigningKey::Verify(std::string_view message, std::string_view signature) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
            EVP_DigestVerify(
                ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

Status LoadOrCreateHmacKey(const std::string& path, std::string* key) {
  if (fs::exists(path)) {
    std::ifstream in(path);
    std::string hex;
    in >> hex;
    if (hex.size() != 64 || !HexDecode(hex, key)) {
      return Status::InvalidArgument("HMAC key " + path + " must hold 64 lower-case hex digits");
    }
    return Status::Ok();
  }
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return Status::Internal("no randomness for the HMAC key");
  key->assign(reinterpret_cast<char*>(raw), sizeof raw);
  return WritePrivateFile(path, HexEncode(*key) + "\n");
}

namespace {

// One keyed HMAC-SHA256 context per thread, kept between calls: OpenSSL's
// one-shot HMAC() looks the algorithm up and builds a context every time,
// which costs more than hashing a report's fields.
class ThreadHmac {
 public:
  ThreadHmac() {
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac) ctx_ = EVP_MAC_CTX_new(mac);
  }
  ~ThreadHmac() { EVP_MAC_CTX_free(ctx_); }
  ThreadHmac(const ThreadHmac&) = delete;
  ThreadHmac& operator=(const ThreadHmac&) = delete;

  // False when OpenSSL cannot compute it (then the caller falls back).
  bool Compute(std::string_view key, std::string_view data, unsigned char* out, size_t* len) {
    if (!ctx_) return false;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    const bool same_key = keyed_ && key == key_;
    // The same key as the last call: re-initialised with the key it holds.
    int ok = same_key ? EVP_MAC_init(ctx_, nullptr, 0, nullptr)
                      : EVP_MAC_init(ctx_, reinterpret_cast<const unsigned char*>(key.data()),
                                     key.size(), params);
    if (!ok) {
      keyed_ = false;
      return false;
    }
    if (!same_key) {
      key_.assign(key);
      keyed_ = true;
    }
    return EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(data.data()), data.size()) &&
           EVP_MAC_final(ctx_, out, len, EVP_MAX_MD_SIZE);
  }

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
  std::string key_;
  bool keyed_ = false;
};

}  // namespace

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  thread_local ThreadHmac hmac;
  size_t len = 0;
  if (!hmac.Compute(key, data, out, &len)) {
    unsigned int n = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n);
    len = n;
  }
  return HexEncode(std::string_view(reinterpret_cast<char*>(out), len));
}

}  // namespace carewatch::ledger
