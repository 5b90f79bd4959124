#include "engine/ledger/note.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/common/digest.h"
#include "engine/common/utf8.h"
#include "engine/ledger/ledger.h"

namespace carewatch::ledger {

namespace {

constexpr char kSigPrefix[] = "\xE2\x80\x94 ";  // U+2014 EM DASH, then a space
constexpr unsigned char kEd25519Type = 0x01;
constexpr size_t kMaxNoteBytes = 1 << 20;
constexpr char kTimestampPrefix[] = "timestamp ";

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(n);
  return out;
}

Status Base64Decode(std::string_view text, std::string* out) {
  if (text.size() % 4 != 0 ||
      text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") !=
          std::string_view::npos) {
    return Status::InvalidArgument("not standard base64");
  }
  size_t pad = 0;
  while (pad < text.size() && pad < 2 && text[text.size() - 1 - pad] == '=') ++pad;
  if (text.substr(0, text.size() - pad).find('=') != std::string_view::npos)
    return Status::InvalidArgument("not standard base64");
  out->assign(3 * (text.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out->data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return Status::InvalidArgument("not standard base64");
  out->resize(static_cast<size_t>(n) - pad);
  return Status::Ok();
}

namespace {

// Unicode's White_Space characters beyond ASCII, as UTF-8 (a key name may
// hold none of them).
constexpr std::string_view kUnicodeSpaces[] = {
    "\xC2\x85",     "\xC2\xA0",     "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81",
    "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86",
    "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\xA8",
    "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};

// Where `text` holds an ASCII control character other than a newline, or
// npos: signed notes may hold none.
size_t FindControlCharacter(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 && c != '\n') return i;
  }
  return std::string_view::npos;
}

}  // namespace

bool ValidNoteKeyName(std::string_view name) {
  if (name.empty() || !IsValidUtf8(name)) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c == '+' || c == 0x7f) return false;
  }
  for (std::string_view space : kUnicodeSpaces) {
    if (name.find(space) != std::string_view::npos) return false;
  }
  return true;
}

std::string NoteKeyId(std::string_view name, std::string_view raw_public_key) {
  std::string input(name);
  input.push_back('\n');
  input.push_back(static_cast<char>(kEd25519Type));
  input.append(raw_public_key);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), 4);
}

std::string VerifierKeyString(std::string_view name, std::string_view raw_public_key) {
  std::string typed(1, static_cast<char>(kEd25519Type));
  typed.append(raw_public_key);
  return std::string(name) + "+" + HexEncode(NoteKeyId(name, raw_public_key)) + "+" +
         Base64Encode(typed);
}

Status SignNote(std::string_view text, std::string_view name, const SigningKey& key,
                std::string* note, std::string* raw_signature) {
  return SignNote(text, name, std::vector<const SigningKey*>{&key}, note, raw_signature);
}

Status SignNote(std::string_view text, std::string_view name,
                const std::vector<const SigningKey*>& keys, std::string* note,
                std::string* raw_signature) {
  if (!ValidNoteKeyName(name)) return Status::InvalidArgument("invalid note key name");
  if (text.empty() || text.back() != '\n' || text.find("\n\n") != std::string_view::npos ||
      FindControlCharacter(text) != std::string_view::npos || !IsValidUtf8(text)) {
    return Status::InvalidArgument(
        "note text must be non-empty lines of UTF-8 without control characters, each ending in a "
        "newline");
  }
  if (keys.empty()) return Status::InvalidArgument("a note needs a key to sign it");
  std::string signed_note = std::string(text) + "\n";
  for (size_t i = 0; i < keys.size(); ++i) {
    std::string signature;
    Status s = keys[i]->Sign(text, &signature);
    if (!s.ok()) return s;
    if (i == 0 && raw_signature) *raw_signature = signature;
    signed_note += kSigPrefix + std::string(name) + " " +
                   Base64Encode(NoteKeyId(name, keys[i]->PublicRaw()) + signature) + "\n";
  }
  *note = std::move(signed_note);
  return Status::Ok();
}

Status TrustedKey::FromVerifierKey(std::string_view vkey, std::unique_ptr<TrustedKey>* out) {
  size_t a = vkey.find('+');
  size_t b = a == std::string_view::npos ? a : vkey.find('+', a + 1);
  if (b == std::string_view::npos) {
    return Status::InvalidArgument("verifier key: expected NAME+KEYID+BASE64KEY");
  }
  std::string_view name = vkey.substr(0, a), id_hex = vkey.substr(a + 1, b - a - 1),
                   key_b64 = vkey.substr(b + 1);
  while (!key_b64.empty() && (key_b64.back() == '\n' || key_b64.back() == '\r'))
    key_b64.remove_suffix(1);
  if (!ValidNoteKeyName(name)) return Status::InvalidArgument("verifier key: invalid key name");
  std::string typed;
  if (!Base64Decode(key_b64, &typed).ok() || typed.size() != 33 ||
      static_cast<unsigned char>(typed[0]) != kEd25519Type) {
    return Status::InvalidArgument("verifier key: not an Ed25519 key (type 0x01, 32 bytes)");
  }
  std::string raw = typed.substr(1);
  if (id_hex.size() != 8 || HexEncode(NoteKeyId(name, raw)) != id_hex) {
    return Status::InvalidArgument("verifier key: key id " + std::string(id_hex) +
                                   " does not match the key and name");
  }
  std::unique_ptr<TrustedKey> k(new TrustedKey());
  k->name_ = std::string(name);
  Entry e;
  e.key_id = NoteKeyId(name, raw);
  Status s = SigningKey::FromRawPublic(raw, &e.key);
  if (!s.ok()) return Status::InvalidArgument("verifier key: " + s.message());
  k->keys_.push_back(std::move(e));
  *out = std::move(k);
  return Status::Ok();
}

Status TrustedKey::FromPem(std::string_view pem, std::unique_ptr<TrustedKey>* out) {
  std::unique_ptr<TrustedKey> k(new TrustedKey());
  Entry e;
  Status s = SigningKey::FromPublicPem(pem, &e.key);
  if (!s.ok()) return s;
  k->keys_.push_back(std::move(e));
  *out = std::move(k);
  return Status::Ok();
}

bool TrustedKey::Trusts(std::string_view raw_public_key) const {
  for (const Entry& e : keys_) {
    if (e.key->PublicRaw() == raw_public_key) return true;
  }
  return false;
}

Status TrustedKey::Merge(std::unique_ptr<TrustedKey> other) {
  if (name_.empty() || other->name_ != name_) {
    return Status::InvalidArgument(
        "verifier keys: a keyring holds keys of one log (" +
        (name_.empty() ? std::string("a PEM key names none") : name_) + ", " +
        (other->name_.empty() ? std::string("a PEM key") : other->name_.substr(0, 80)) + ")");
  }
  for (Entry& e : other->keys_) {
    if (Trusts(e.key->PublicRaw())) continue;
    if (keys_.size() >= kMaxKeys) {
      return Status::InvalidArgument("verifier keys: more than " + std::to_string(kMaxKeys));
    }
    keys_.push_back(std::move(e));
  }
  return Status::Ok();
}

Status TrustedKey::Load(std::string_view text_or_path, std::unique_ptr<TrustedKey>* out) {
  std::string text(text_or_path);
  if (text.find('+') == std::string::npos || text.find("-----BEGIN") != std::string::npos ||
      std::filesystem::exists(text)) {
    if (std::filesystem::exists(text)) {
      std::ifstream in(text, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      if (ss.str().size() > 64 * 1024)
        return Status::InvalidArgument(text + ": too large for a key");
      text = ss.str();
    } else if (text.find("-----BEGIN") == std::string::npos) {
      return Status::InvalidArgument("'" + std::string(text_or_path.substr(0, 80)) +
                                     "' is neither a verifier key nor a key file");
    }
  }
  if (text.find("-----BEGIN") != std::string::npos) return FromPem(text, out);
  // One verifier key, or several separated by commas or white space.
  std::unique_ptr<TrustedKey> ring;
  size_t at = 0;
  const char* kSeparators = ", \t\r\n";
  while ((at = text.find_first_not_of(kSeparators, at)) != std::string::npos) {
    size_t end = text.find_first_of(kSeparators, at);
    if (end == std::string::npos) end = text.size();
    std::unique_ptr<TrustedKey> one;
    Status s = FromVerifierKey(std::string_view(text).substr(at, end - at), &one);
    if (!s.ok()) return s;
    if (!ring) {
      ring = std::move(one);
    } else {
      s = ring->Merge(std::move(one));
      if (!s.ok()) return s;
    }
    at = end;
  }
  if (!ring) return Status::InvalidArgument("verifier key: empty");
  *out = std::move(ring);
  return Status::Ok();
}

Status TrustedKey::OpenNote(std::string_view note, std::string* text) const {
  if (note.size() > kMaxNoteBytes) return Status::InvalidArgument("note: larger than 1 MiB");
  if (!IsValidUtf8(note)) return Status::InvalidArgument("note: not valid UTF-8");
  if (const size_t at = FindControlCharacter(note); at != std::string_view::npos) {
    return Status::InvalidArgument("note: a control character (byte " + std::to_string(at) +
                                   ") where only newlines may be");
  }
  size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) {
    return Status::InvalidArgument("note: no blank line before the signatures");
  }
  std::string_view body = note.substr(0, split + 1);
  std::string_view sigs = note.substr(split + 2);
  if (sigs.empty() || sigs.back() != '\n')
    return Status::InvalidArgument("note: signature lines must end in a newline");
  int lines = 0;
  bool found = false;
  while (!sigs.empty()) {
    size_t end = sigs.find('\n');
    std::string_view line = sigs.substr(0, end);
    sigs.remove_prefix(end + 1);
    if (++lines > 100) return Status::InvalidArgument("note: more than 100 signatures");
    if (line.substr(0, sizeof kSigPrefix - 1) != kSigPrefix) {
      return Status::InvalidArgument("note: a signature line must start with an em dash");
    }
    line.remove_prefix(sizeof kSigPrefix - 1);
    size_t space = line.rfind(' ');
    if (space == std::string_view::npos) return Status::InvalidArgument("note: bad signature line");
    std::string_view name = line.substr(0, space);
    if (!ValidNoteKeyName(name)) {
      return Status::InvalidArgument("note: signature line " + std::to_string(lines) +
                                     ": the key name is empty or holds a space or '+'");
    }
    std::string blob;
    if (!Base64Decode(line.substr(space + 1), &blob).ok() || blob.size() < 5) {
      return Status::InvalidArgument("note: bad signature line");
    }
    if (!name_.empty() && name != name_) continue;  // other keys' lines are ignored
    const std::string_view id = std::string_view(blob).substr(0, 4);
    bool ours = false, verified = false;
    for (const Entry& e : keys_) {
      if (id != (e.key_id.empty() ? NoteKeyId(name, e.key->PublicRaw()) : e.key_id)) continue;
      ours = true;
      verified = verified || e.key->Verify(body, std::string_view(blob).substr(4));
    }
    if (!ours) continue;
    // Every line of a trusted key is verified (the signed-note rule), not
    // only the first: one that fails means the note was altered.
    if (!verified) {
      return Status::InvalidArgument("note: the signature of " + std::string(name) +
                                     " does not verify: the note was altered");
    }
    found = true;
  }
  if (!found) {
    return Status::InvalidArgument("note: no signature by the trusted key" +
                                   (name_.empty() ? std::string() : " (" + name_ + ")"));
  }
  *text = std::string(body);
  return Status::Ok();
}

Status TrustedKey::OpenCheckpoint(std::string_view note, CheckpointText* out) const {
  std::string text;
  Status s = OpenNote(note, &text);
  if (!s.ok()) return s;
  s = ParseCheckpointBody(text, out);
  if (!s.ok()) return s;
  if (!name_.empty() && out->origin != name_) {
    return Status::InvalidArgument("checkpoint: its origin '" + out->origin.substr(0, 80) +
                                   "' is not the log this key names (" + name_ + ")");
  }
  return Status::Ok();
}

Status TrustedKey::VerifyCheckpoint(const v1::Checkpoint& c) const {
  if (c.note().empty()) {
    // Signed before checkpoints were notes.
    const std::string signed_text =
        CheckpointSignedText(c.tree_size(), c.root_hash(), c.time().seconds());
    bool verified = false;
    for (const Entry& e : keys_) verified = verified || e.key->Verify(signed_text, c.signature());
    if (!verified) {
      return Status::InvalidArgument("checkpoint at size " + std::to_string(c.tree_size()) +
                                     ": signature is not valid for the deployment's key");
    }
    return Status::Ok();
  }
  CheckpointText parsed;
  Status s = OpenCheckpoint(c.note(), &parsed);
  if (!s.ok()) {
    return Status::InvalidArgument("checkpoint at size " + std::to_string(c.tree_size()) + ": " +
                                   s.message());
  }
  // The signed text is everything before the signatures.
  const std::string_view text = std::string_view(c.note()).substr(0, c.note().rfind("\n\n") + 1);
  // The stored signature is one of the note's: a trusted key's, or (after a
  // rotation, for a keyring holding only one of the two) the other's line.
  bool stored_ok = c.signature().empty();
  for (const Entry& e : keys_) stored_ok = stored_ok || e.key->Verify(text, c.signature());
  if (!stored_ok) {
    for (size_t at = c.note().rfind("\n\n") + 2; at < c.note().size();) {
      size_t end = c.note().find('\n', at);
      if (end == std::string::npos) break;
      std::string_view line = std::string_view(c.note()).substr(at, end - at);
      std::string blob;
      if (line.rfind(' ') != std::string_view::npos &&
          Base64Decode(line.substr(line.rfind(' ') + 1), &blob).ok() && blob.size() > 4 &&
          std::string_view(blob).substr(4) == c.signature()) {
        stored_ok = true;
      }
      at = end + 1;
    }
  }
  if (!stored_ok) {
    return Status::InvalidArgument("checkpoint at size " + std::to_string(c.tree_size()) +
                                   ": its stored signature is not the note's");
  }
  if (parsed.tree_size != c.tree_size() || parsed.root_hash != c.root_hash()) {
    return Status::InvalidArgument("checkpoint at size " + std::to_string(c.tree_size()) +
                                   ": the signed note names another tree (size " +
                                   std::to_string(parsed.tree_size) + ")");
  }
  return Status::Ok();
}

std::string CheckpointBody(std::string_view origin, uint64_t tree_size, const Hash& root,
                           int64_t time) {
  return std::string(origin) + "\n" + std::to_string(tree_size) + "\n" + Base64Encode(root) + "\n" +
         kTimestampPrefix + std::to_string(time) + "\n";
}

Status ParseCheckpointBody(std::string_view text, CheckpointText* out) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos)
      return Status::InvalidArgument("checkpoint: the last line has no newline");
    if (end == start) {
      return Status::InvalidArgument("checkpoint: line " + std::to_string(lines.size() + 1) +
                                     " is empty");
    }
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (lines.size() < 3) return Status::InvalidArgument("checkpoint: fewer than three lines");
  out->origin = lines[0];
  // 20 digits can exceed 2^64 - 1 (18446744073709551615): checked below.
  const std::string& size = lines[1];
  errno = 0;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(size.c_str(), &end, 10);
  if (size.size() > 20 || size.find_first_not_of("0123456789") != std::string::npos ||
      (size.size() > 1 && size[0] == '0') || errno == ERANGE || end != size.c_str() + size.size()) {
    return Status::InvalidArgument("checkpoint: tree size '" + size.substr(0, 32) +
                                   "' is not a decimal number below 2^64");
  }
  out->tree_size = n;
  if (!Base64Decode(lines[2], &out->root_hash).ok() || out->root_hash.size() != 32) {
    return Status::InvalidArgument("checkpoint: the root hash is not 32 bytes of base64");
  }
  out->extensions.assign(lines.begin() + 3, lines.end());
  return Status::Ok();
}

}  // namespace carewatch::ledger
