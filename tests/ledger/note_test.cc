#include "engine/ledger/note.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/common/digest.h"
#include "engine/ledger/merkle.h"

namespace carewatch::ledger {
namespace {

// The published example of the C2SP signed-note format (Go's
// golang.org/x/mod/sumdb/note): a key, a text and the note it signs to.
constexpr char kGoSigner[] =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr char kGoVerifier[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr char kGoText[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr char kGoNote[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\xE2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    "\n";

std::unique_ptr<SigningKey> GoKey() {
  std::string typed;
  // PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)> (the base64 may hold '+').
  const std::string prefix = "PRIVATE+KEY+PeterNeumann+c74f20a3+";
  EXPECT_TRUE(Base64Decode(std::string(kGoSigner).substr(prefix.size()), &typed).ok());
  EXPECT_EQ(typed.size(), 33u);
  std::unique_ptr<SigningKey> key;
  EXPECT_TRUE(SigningKey::FromRawSeed(typed.substr(1), &key).ok());
  return key;
}

TEST(Note, SignsThePublishedExampleByteForByte) {
  auto key = GoKey();
  EXPECT_EQ(VerifierKeyString("PeterNeumann", key->PublicRaw()), kGoVerifier);
  std::string note;
  ASSERT_TRUE(SignNote(kGoText, "PeterNeumann", *key, &note).ok());
  EXPECT_EQ(note, kGoNote);
}

TEST(Note, OpensThePublishedExampleAndRefusesAlterations) {
  std::unique_ptr<TrustedKey> trusted;
  ASSERT_TRUE(TrustedKey::FromVerifierKey(kGoVerifier, &trusted).ok());
  std::string text;
  ASSERT_TRUE(trusted->OpenNote(kGoNote, &text).ok());
  EXPECT_EQ(text, kGoText);
  std::string altered = kGoNote;
  altered[3] = 'X';
  Status s = trusted->OpenNote(altered, &text);
  EXPECT_NE(s.message().find("does not verify"), std::string::npos) << s.message();
  std::unique_ptr<TrustedKey> other;
  ASSERT_TRUE(TrustedKey::FromVerifierKey(
                  "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop", &other)
                  .ok());
  s = other->OpenNote(kGoNote, &text);
  EXPECT_NE(s.message().find("no signature by the trusted key"), std::string::npos) << s.message();
}

// The signed-note rules a verifier must keep beyond one good signature:
// no control characters but newlines, valid key names on every line, and
// every signature line of the trusted key verified, not only the first.
TEST(Note, NotesOutsideTheSignedNoteRulesAreRefused) {
  std::unique_ptr<TrustedKey> trusted;
  ASSERT_TRUE(TrustedKey::FromVerifierKey(kGoVerifier, &trusted).ok());
  std::string text;
  std::string with_cr = kGoNote;
  with_cr.insert(with_cr.find('\n'), "\r");
  Status s = trusted->OpenNote(with_cr, &text);
  EXPECT_NE(s.message().find("a control character (byte 56)"), std::string::npos) << s.message();
  // The good line, then a second line of the same key over other bytes.
  const std::string good_line = std::string(kGoNote).substr(std::string(kGoNote).rfind("\n\n") + 2);
  std::string sig = good_line.substr(good_line.rfind(' ') + 1);
  sig.pop_back();  // the newline
  std::string blob;
  ASSERT_TRUE(Base64Decode(sig, &blob).ok());
  blob[10] ^= 1;
  const std::string bad_line = "\xE2\x80\x94 PeterNeumann " + Base64Encode(blob) + "\n";
  s = trusted->OpenNote(std::string(kGoNote) + bad_line, &text);
  EXPECT_NE(s.message().find("does not verify"), std::string::npos) << s.message();
  // A line whose key name holds a space is not a signature line.
  s = trusted->OpenNote(std::string(kGoNote) + "\xE2\x80\x94 Peter Neumann " + sig + "\n", &text);
  EXPECT_NE(s.message().find("signature line 2: the key name"), std::string::npos) << s.message();
  // Another key's line is still ignored, whatever it signs.
  EXPECT_TRUE(
      trusted
          ->OpenNote(std::string(kGoNote) + "\xE2\x80\x94 EnochRoot " + Base64Encode(blob) + "\n",
                     &text)
          .ok());
  EXPECT_FALSE(ValidNoteKeyName("example.org/\xC2\xA0log")) << "a no-break space";
  EXPECT_FALSE(ValidNoteKeyName("example.org/\xE3\x80\x80log")) << "an ideographic space";
  EXPECT_TRUE(ValidNoteKeyName("example.org/l\xC3\xB6g"));
  auto key = GoKey();
  std::string note;
  EXPECT_FALSE(SignNote("a\tb\n", "PeterNeumann", *key, &note).ok()) << "nor is one signed";
}

TEST(Note, VerifierKeysWithAWrongIdOrTypeAreRefused) {
  std::unique_ptr<TrustedKey> k;
  EXPECT_NE(TrustedKey::FromVerifierKey(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &k)
                .message()
                .find("key id c74f20a4 does not match"),
            std::string::npos);
  EXPECT_FALSE(TrustedKey::FromVerifierKey("PeterNeumann+c74f20a3", &k).ok());
  EXPECT_FALSE(TrustedKey::FromVerifierKey("Peter Neumann+c74f20a3+AQ==", &k).ok());
}

TEST(Note, CheckpointTextIsTheTlogCheckpointFormat) {
  Hash root = LeafHash("x");
  std::string body = CheckpointBody("example.org/log", 42, root, 1767607200);
  EXPECT_EQ(body, "example.org/log\n42\n" + Base64Encode(root) + "\ntimestamp 1767607200\n");
  CheckpointText parsed;
  ASSERT_TRUE(ParseCheckpointBody(body, &parsed).ok());
  EXPECT_EQ(parsed.origin, "example.org/log");
  EXPECT_EQ(parsed.tree_size, 42u);
  EXPECT_EQ(parsed.root_hash, root);
  ASSERT_EQ(parsed.extensions.size(), 1u);
  EXPECT_FALSE(ParseCheckpointBody("o\n042\nAAAA\n", &parsed).ok()) << "no leading zeros";
  EXPECT_FALSE(ParseCheckpointBody("o\n1\nnot base64\n", &parsed).ok());
}

// tlog-checkpoint's rules a signed text must also keep: every line
// non-empty (the origin too), and a size that is a number below 2^64
// (strtoull would turn 20 nines into 2^64 - 1).
TEST(Note, CheckpointTextOutsideTheFormatIsRefused) {
  const std::string root = Base64Encode(LeafHash("x"));
  CheckpointText parsed;
  ASSERT_TRUE(ParseCheckpointBody("o\n18446744073709551615\n" + root + "\n", &parsed).ok());
  EXPECT_EQ(parsed.tree_size, UINT64_MAX);
  ASSERT_TRUE(ParseCheckpointBody("o\n0\n" + root + "\n", &parsed).ok());
  EXPECT_EQ(parsed.tree_size, 0u);
  Status s = ParseCheckpointBody("o\n18446744073709551616\n" + root + "\n", &parsed);
  EXPECT_NE(s.message().find("not a decimal number below 2^64"), std::string::npos) << s.message();
  EXPECT_FALSE(ParseCheckpointBody("o\n99999999999999999999\n" + root + "\n", &parsed).ok());
  s = ParseCheckpointBody("\n5\n" + root + "\n", &parsed);
  EXPECT_NE(s.message().find("line 1 is empty"), std::string::npos) << s.message();
  s = ParseCheckpointBody("o\n5\n" + root + "\n\nextension\n", &parsed);
  EXPECT_NE(s.message().find("line 4 is empty"), std::string::npos) << s.message();
}

// A key names one log: a checkpoint of another origin, even signed with
// the same key, is not this log's.
TEST(Note, ACheckpointOfAnotherOriginIsNotThisLogs) {
  std::unique_ptr<SigningKey> key;
  ASSERT_TRUE(SigningKey::FromRawSeed(std::string(32, '\x11'), &key).ok());
  std::unique_ptr<TrustedKey> trusted;
  ASSERT_TRUE(
      TrustedKey::FromVerifierKey(VerifierKeyString("example.org/log", key->PublicRaw()), &trusted)
          .ok());
  const Hash root = LeafHash("x");
  v1::Checkpoint c;
  c.set_tree_size(7);
  c.set_root_hash(root);
  std::string note;
  ASSERT_TRUE(
      SignNote(CheckpointBody("example.org/log", 7, root, 1), "example.org/log", *key, &note).ok());
  c.set_note(note);
  EXPECT_TRUE(trusted->VerifyCheckpoint(c).ok());
  // The same key, its line under the same name, over another log's text.
  ASSERT_TRUE(
      SignNote(CheckpointBody("example.org/other", 7, root, 1), "example.org/log", *key, &note)
          .ok());
  c.set_note(note);
  Status s = trusted->VerifyCheckpoint(c);
  EXPECT_NE(s.message().find("origin 'example.org/other' is not the log this key names"),
            std::string::npos)
      << s.message();
  CheckpointText parsed;
  EXPECT_FALSE(trusted->OpenCheckpoint(note, &parsed).ok());
  // A PEM key has no name, so no origin to hold the note to.
  std::unique_ptr<TrustedKey> pem;
  ASSERT_TRUE(TrustedKey::FromPem(key->PublicPem(), &pem).ok());
  EXPECT_TRUE(pem->VerifyCheckpoint(c).ok());
}

// Keys before and after a rotation: a note signed by both opens with
// either alone or with a keyring of both; one signed by the new key alone
// needs the new key in the keyring; a keyring holds keys of one log only.
TEST(Note, AKeyringOpensANoteSignedByAnyOfItsKeys) {
  std::unique_ptr<SigningKey> old_key, new_key, stranger;
  ASSERT_TRUE(SigningKey::FromRawSeed(std::string(32, '\x21'), &old_key).ok());
  ASSERT_TRUE(SigningKey::FromRawSeed(std::string(32, '\x22'), &new_key).ok());
  ASSERT_TRUE(SigningKey::FromRawSeed(std::string(32, '\x23'), &stranger).ok());
  const std::string log = "example.org/log";
  const std::string old_vkey = VerifierKeyString(log, old_key->PublicRaw());
  const std::string new_vkey = VerifierKeyString(log, new_key->PublicRaw());
  const Hash root = LeafHash("x");
  const std::string body = CheckpointBody(log, 9, root, 1);
  std::string both, new_only, signature;
  ASSERT_TRUE(SignNote(body, log, {new_key.get(), old_key.get()}, &both, &signature).ok());
  ASSERT_TRUE(SignNote(body, log, *new_key, &new_only).ok());
  EXPECT_EQ(std::count(both.begin(), both.end(), '\n'), 7) << both;
  EXPECT_TRUE(new_key->Verify(body, signature)) << "the first key's signature is returned";

  std::unique_ptr<TrustedKey> old_trust, ring;
  ASSERT_TRUE(TrustedKey::Load(old_vkey, &old_trust).ok());
  ASSERT_TRUE(TrustedKey::Load(old_vkey + ",\n " + new_vkey + "\n", &ring).ok());
  EXPECT_EQ(ring->size(), 2u);
  EXPECT_TRUE(ring->Trusts(new_key->PublicRaw()));
  EXPECT_FALSE(old_trust->Trusts(new_key->PublicRaw()));
  std::string text;
  EXPECT_TRUE(old_trust->OpenNote(both, &text).ok());
  EXPECT_EQ(text, body);
  EXPECT_TRUE(ring->OpenNote(both, &text).ok());
  EXPECT_TRUE(ring->OpenNote(new_only, &text).ok());
  Status s = old_trust->OpenNote(new_only, &text);
  EXPECT_NE(s.message().find("no signature by the trusted key"), std::string::npos) << s.message();

  // The stored signature of a handover checkpoint is the new key's: a
  // verifier holding the old key alone still finds it among the note's.
  v1::Checkpoint c;
  c.set_tree_size(9);
  c.set_root_hash(root);
  c.set_note(both);
  c.set_signature(signature);
  EXPECT_TRUE(old_trust->VerifyCheckpoint(c).ok());
  std::string forged;
  ASSERT_TRUE(stranger->Sign(body, &forged).ok());
  c.set_signature(forged);
  s = old_trust->VerifyCheckpoint(c);
  EXPECT_NE(s.message().find("its stored signature is not the note's"), std::string::npos)
      << s.message();

  // A line of a trusted key that does not verify fails the note, whichever
  // key of the keyring it is.
  std::string altered = both;
  altered.replace(altered.find("\n9\n"), 3, "\n8\n");
  EXPECT_FALSE(ring->OpenNote(altered, &text).ok());

  std::unique_ptr<TrustedKey> mixed;
  s = TrustedKey::Load(
      old_vkey + " " + VerifierKeyString("example.org/other", stranger->PublicRaw()), &mixed);
  EXPECT_NE(s.message().find("a keyring holds keys of one log"), std::string::npos) << s.message();
  EXPECT_FALSE(TrustedKey::Load(old_vkey + ", not-a-key", &mixed).ok());
  std::string many;
  for (int i = 0; i < 17; ++i) {
    std::unique_ptr<SigningKey> k;
    ASSERT_TRUE(SigningKey::FromRawSeed(std::string(31, '\x30') + static_cast<char>(i), &k).ok());
    many += VerifierKeyString(log, k->PublicRaw()) + "\n";
  }
  s = TrustedKey::Load(many, &mixed);
  EXPECT_NE(s.message().find("more than 16"), std::string::npos) << s.message();
}

// An independent implementation checks our signature: openssl, over the
// note's text with the key the verifier key names.
TEST(Note, OpensslVerifiesACheckpointSignature) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
  std::string dir = ::testing::TempDir() + "/cw-note-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::unique_ptr<SigningKey> key;
  ASSERT_TRUE(SigningKey::LoadOrCreate(dir + "/k.pem", &key).ok());
  std::string body = CheckpointBody("carewatch.test/log", 7, LeafHash("y"), 1767607200);
  std::string note, signature;
  ASSERT_TRUE(SignNote(body, "carewatch.test/log", *key, &note, &signature).ok());
  // The signature line carries key id || signature.
  std::string blob;
  ASSERT_TRUE(
      Base64Decode(note.substr(note.rfind(' ') + 1, note.size() - note.rfind(' ') - 2), &blob)
          .ok());
  ASSERT_EQ(blob.size(), 68u);
  EXPECT_EQ(blob.substr(0, 4), NoteKeyId("carewatch.test/log", key->PublicRaw()));
  std::ofstream(dir + "/pub.pem") << key->PublicPem();
  std::ofstream(dir + "/body", std::ios::binary) << body;
  std::ofstream(dir + "/sig", std::ios::binary) << blob.substr(4);
  std::string cmd = "openssl pkeyutl -verify -pubin -inkey " + dir + "/pub.pem -rawin -in " + dir +
                    "/body -sigfile " + dir + "/sig > /dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "openssl does not accept the note's signature";
  std::ofstream(dir + "/body", std::ios::binary) << body << "x";
  EXPECT_NE(std::system(cmd.c_str()), 0) << "and refuses an altered text";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::ledger

// RFC 4231's test cases 1 and 2, computed in turn on one thread: the
// thread's kept HMAC context must take each call's key, not the last one.
TEST(Hmac, MatchesRfc4231WhenTheKeyChangesBetweenCalls) {
  const std::string key1(20, '\x0b');
  const std::string want1 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
  const std::string want2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(carewatch::ledger::HmacSha256Hex(key1, "Hi There"), want1);
    EXPECT_EQ(carewatch::ledger::HmacSha256Hex(key1, "Hi There"), want1);
    EXPECT_EQ(carewatch::ledger::HmacSha256Hex("Jefe", "what do ya want for nothing?"), want2);
  }
  EXPECT_EQ(carewatch::ledger::HmacSha256Hex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}
