#include "engine/signals/canonical.h"

#include <gtest/gtest.h>

namespace carewatch::signals {
namespace {

struct Row {
  const char *kind, *in, *out;
};

// docs/signals.md "Canonical forms": each row is a rule of that table.
// Identifiers here are synthetic (example.test, +44 7700 900xxx is Ofcom's
// drama range).
constexpr Row kCanonical[] = {
    {"email", "Alice@Example.TEST", "alice@example.test"},
    {"email", "  alice@example.test.  ", "alice@example.test"},
    {"email", "ＡＬＩＣＥ@example.test", "alice@example.test"},  // full-width letters
    {"email", "bob@bücher.example", "bob@xn--bcher-kva.example"},
    {"email", "bob@XN--BCHER-KVA.example", "bob@xn--bcher-kva.example"},
    {"phone", "+44 7700 900123", "+447700900123"},
    {"phone", "+44 (0)7700-900.123", "+4407700900123"},
    {"phone", "0044 7700 900123", "+447700900123"},
    {"phone", "+1 (555) 010-0199", "+15550100199"},
    {"handle", "OtherApp:@Alice_01", "otherapp:alice_01"},
    {"handle", "otherapp: ＡＬＩＣＥ ", "otherapp:alice"},
    {"handle", "otherapp:Straße", "otherapp:strasse"},
    {"profile_url", "https://www.OtherApp.test/u/Alice/", "otherapp.test/u/Alice"},
    {"profile_url", "http://otherapp.test:80/u/Alice#top", "otherapp.test/u/Alice"},
    {"profile_url", "otherapp.test/profile?id=42", "otherapp.test/profile?id=42"},
    {"profile_url", "https://bücher.example/u/x", "xn--bcher-kva.example/u/x"},
    {"profile_url", "https://%6Ftherapp.test/u/../u/alice", "otherapp.test/u/alice"},
    {"profile_url", "https:otherapp.test/u/zoë", "otherapp.test/u/zo%C3%AB"},
    {"profile_url", "otherapp.test/profile?id=%34%32&n=%2f", "otherapp.test/profile?id=42&n=%2F"},
    {"profile_url", "otherapp.test/u/100%", "otherapp.test/u/100%25"},
};

TEST(Canonical, TableOfCanonicalForms) {
  for (const Row& r : kCanonical) {
    SCOPED_TRACE(std::string(r.kind) + " " + r.in);
    std::string out;
    Status s = Canonicalize(r.kind, r.in, &out);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(out, r.out);
  }
}

TEST(Canonical, RefusesWhatIsNotAnIdentifierWithoutRepeatingIt) {
  const Row bad[] = {
      {"email", "alice.example.test", "exactly one '@'"},
      {"email", "a@b@example.test", "exactly one '@'"},
      {"email", "al ice@example.test", "space"},
      {"email", "alice@localhost", "domain"},
      {"phone", "07700 900123", "country code"},
      {"phone", "+44 7700 9001x3", "only digits"},
      {"phone", "+12", "7 to 15 digits"},
      {"phone", "+0447700900123", "never starts with 0"},
      {"handle", "bobby", "PLATFORM:HANDLE"},
      {"handle", "other app:alice", "platform name"},
      {"handle", "otherapp:@", "empty"},
      {"handle", "otherapp:al ice", "space"},
      {"profile_url", "/u/alice", "host"},
      {"username", "alice", "unknown identifier kind"},
      {"email", "", "empty"},
  };
  for (const Row& r : bad) {
    SCOPED_TRACE(std::string(r.kind) + " " + r.in);
    std::string out;
    Status s = Canonicalize(r.kind, r.in, &out);
    ASSERT_EQ(s.code(), Status::Code::kInvalidArgument);
    EXPECT_NE(s.message().find(r.out), std::string::npos) << s.message();
    if (std::string(r.in).size() > 3) {
      EXPECT_EQ(s.message().find(r.in), std::string::npos);
    }
  }
  std::string out;
  EXPECT_FALSE(Canonicalize("email", std::string(600, 'a') + "@example.test", &out).ok());
  EXPECT_FALSE(Canonicalize("handle", "otherapp:\xff\xfe", &out).ok());
}

TEST(Canonical, KindsNeverShareATokenInput) {
  EXPECT_NE(TokenInput("handle", "x:a"), TokenInput("email", "x:a"));
  EXPECT_EQ(TokenInput("email", "a@b.test"), std::string("email\0a@b.test", 14));
}

}  // namespace
}  // namespace carewatch::signals
