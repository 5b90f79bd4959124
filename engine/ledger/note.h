#ifndef CAREWATCH_ENGINE_LEDGER_NOTE_H_
#define CAREWATCH_ENGINE_LEDGER_NOTE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "engine/common/status.h"
#include "engine/ledger/keys.h"
#include "engine/ledger/merkle.h"

namespace carewatch::ledger {

// C2SP signed notes and tlog-checkpoints (docs/api.md "Checkpoints"): the
// format that transparency-log tools already read.
//
//   <origin>\n<tree size, decimal>\n<root hash, base64>\ntimestamp <unix seconds>\n
//   \n
//   — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\n
//
// The key name is the origin. Key id = SHA-256(name || 0x0A || 0x01 ||
// public key)[:4]. The verifier key a deployment publishes is
// "<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>".

std::string Base64Encode(std::string_view data);
// Standard alphabet with padding; anything else is an error.
Status Base64Decode(std::string_view text, std::string* out);

// The 4-byte key id of an Ed25519 key under `name`.
std::string NoteKeyId(std::string_view name, std::string_view raw_public_key);
// "<name>+<hex key id>+<base64(0x01 || public key)>".
std::string VerifierKeyString(std::string_view name, std::string_view raw_public_key);
// A valid key name: non-empty UTF-8 without spaces or '+'.
bool ValidNoteKeyName(std::string_view name);

// Signs `text` (non-empty, ending in '\n', no blank line) as a note.
// `signature` (optional) receives the raw 64-byte signature.
Status SignNote(std::string_view text, std::string_view name, const SigningKey& key,
                std::string* note, std::string* signature = nullptr);
// The same note signed by every key of `keys` (at least one), a signature
// line each in that order; `signature` receives the first key's.
Status SignNote(std::string_view text, std::string_view name,
                const std::vector<const SigningKey*>& keys, std::string* note,
                std::string* signature = nullptr);

// A checkpoint note's text, parsed.
struct CheckpointText {
  std::string origin;
  uint64_t tree_size = 0;
  Hash root_hash;
  std::vector<std::string> extensions;  // further lines, as given
};

// What a verifier trusts: the deployment's key, from its verifier key string
// or (for ledgers and scripts that predate notes) its PEM public key; or
// several verifier keys of one log (a keyring: the keys before and after a
// rotation, docs/operations.md "Keys"), any of which may sign.
class TrustedKey {
 public:
  // At most this many keys in a keyring.
  static constexpr size_t kMaxKeys = 16;

  // Text holding verifier key strings (one, or several separated by commas
  // or white space, all naming one log), or a PEM public key, or a path to
  // a file holding either.
  static Status Load(std::string_view text_or_path, std::unique_ptr<TrustedKey>* out);
  static Status FromVerifierKey(std::string_view vkey, std::unique_ptr<TrustedKey>* out);
  static Status FromPem(std::string_view pem, std::unique_ptr<TrustedKey>* out);

  // The key name ("" when loaded from PEM: any name is accepted then).
  const std::string& name() const { return name_; }
  // The first key given.
  const SigningKey& key() const { return *keys_.front().key; }
  size_t size() const { return keys_.size(); }
  // Whether the key whose raw public half is `raw_public_key` is trusted.
  bool Trusts(std::string_view raw_public_key) const;
  // Adds the keys of `other` (the same log's) to this keyring.
  Status Merge(std::unique_ptr<TrustedKey> other);

  // Opens a signed note: a signature line of a trusted key must be there,
  // and every such line must verify. Returns the text. The error says what
  // failed (format, unknown key, signature).
  Status OpenNote(std::string_view note, std::string* text) const;

  // Opens a checkpoint note: signed by this key, its text a tlog-checkpoint
  // (ParseCheckpointBody), and its origin the log this key names (the key
  // name is the origin; a key loaded from PEM has no name and accepts any
  // origin). A checkpoint of another log signed with the same key is refused.
  Status OpenCheckpoint(std::string_view note, CheckpointText* out) const;

  // Checks a checkpoint: its note is opened by OpenCheckpoint and names its
  // tree size and root (for checkpoints signed before notes, the legacy
  // signature over CheckpointSignedText).
  Status VerifyCheckpoint(const v1::Checkpoint& c) const;

 private:
  TrustedKey() = default;
  struct Entry {
    std::string key_id;  // empty for a PEM key
    std::unique_ptr<SigningKey> key;
  };
  std::string name_;
  std::vector<Entry> keys_;
};

std::string CheckpointBody(std::string_view origin, uint64_t tree_size, const Hash& root,
                           int64_t time);
// C2SP tlog-checkpoint: at least three lines, each non-empty and ending in
// '\n'; the size decimal without leading zeros and at most 2^64 - 1; the
// root 32 bytes of base64. Anything else is an error naming the line.
Status ParseCheckpointBody(std::string_view text, CheckpointText* out);

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_NOTE_H_
