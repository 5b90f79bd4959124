#include "engine/common/url.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string_view>

#include "engine/match/lists.h"
#include "tests/match/url_list_definition.h"

namespace carewatch::match {
namespace {

TEST(Url, NormalisesSchemeHostPortAndSlash) {
  EXPECT_EQ(NormalizeUrl("HTTPS://WWW.Example.TEST:443/a/b/")->key, "example.test/a/b");
  EXPECT_EQ(NormalizeUrl("http://example.test:80")->key, "example.test");
  EXPECT_EQ(NormalizeUrl("example.test/x#frag")->key, "example.test/x");
  EXPECT_EQ(NormalizeUrl("http://example.test:8080/x")->key, "example.test:8080/x");
  EXPECT_EQ(NormalizeUrl("http://user@example.test/%7Ea")->key, "example.test/~a");
  EXPECT_EQ(NormalizeUrl("http://example.test/q?id=1")->key, "example.test/q?id=1");
  EXPECT_FALSE(NormalizeUrl("http:///"));
  EXPECT_FALSE(NormalizeUrl("https://user@/x"));
  EXPECT_FALSE(NormalizeUrl("  "));
}

rules::ListDef UrlList(std::vector<std::string> entries) {
  rules::ListDef def;
  def.kind = rules::ListDef::Kind::kUrl;
  def.entries = std::move(entries);
  return def;
}

// Spellings a browser takes to the same place are one key, so that a URL
// written another way is not off the list.
TEST(Url, ASchemeIsOnlyAtTheStart) {
  // "://" in the query is not a scheme: the host is the one before it.
  EXPECT_EQ(NormalizeUrl("evil.test/r?u=http://good.test")->key, "evil.test/r?u=http://good.test");
  EXPECT_EQ(NormalizeUrl("evil.test?next=https://good.test/x")->host(), "evil.test");
  EXPECT_EQ(NormalizeUrl("HTTPS://evil.test/x?u=ftp://good.test")->host(), "evil.test");
  // http and https need no slashes, or take backslashes, as browsers do.
  EXPECT_EQ(NormalizeUrl("http:evil.test/x")->key, "evil.test/x");
  EXPECT_EQ(NormalizeUrl("https:/\\evil.test/x")->key, "evil.test/x");
  EXPECT_EQ(NormalizeUrl("http:///evil.test")->key, "evil.test");
  // A host and port is not a scheme.
  EXPECT_EQ(NormalizeUrl("evil.test:8080/x")->key, "evil.test:8080/x");
}

TEST(Url, AHostIsDecodedAndInIdnaAscii) {
  EXPECT_EQ(NormalizeUrl("http://%65vil.%74est/x")->key, "evil.test/x");
  EXPECT_EQ(NormalizeUrl("http://WWW.%45VIL.test/")->key, "evil.test");
  EXPECT_EQ(NormalizeUrl("https://b\xC3\xBC"
                         "cher.test/x")
                ->key,
            "xn--bcher-kva.test/x");
  EXPECT_EQ(NormalizeUrl("https://xn--bcher-kva.test/x")->key, "xn--bcher-kva.test/x");
  // Full-width letters and the ideographic full stop.
  EXPECT_EQ(NormalizeUrl("https://\xEF\xBD\x85vil\xE3\x80\x82test/x")->key, "evil.test/x");
  // Not a valid host name in IDNA: left as it is, lower-cased.
  EXPECT_EQ(NormalizeUrl("https://A\xC3\x9F--.test/")->host(), "a\xC3\x9F--.test");
  // Ports with leading zeros are the same port.
  EXPECT_EQ(NormalizeUrl("http://evil.test:0443/x")->key, "evil.test/x");
  EXPECT_EQ(NormalizeUrl("http://evil.test:08080/x")->key, "evil.test:8080/x");
}

TEST(Url, AnIpv4AddressInAnyFormIsDottedDecimal) {
  EXPECT_EQ(NormalizeUrl("http://3232235777/x")->key, "192.168.1.1/x");
  EXPECT_EQ(NormalizeUrl("http://0xC0.0250.1.1/x")->key, "192.168.1.1/x");
  EXPECT_EQ(NormalizeUrl("http://192.168.257/x")->key, "192.168.1.1/x");
  EXPECT_EQ(NormalizeUrl("http://192.0x00A80101/")->key, "192.168.1.1");
  EXPECT_EQ(NormalizeUrl("192.168.1.1.:8080")->key, "192.168.1.1:8080");
  EXPECT_EQ(NormalizeUrl("http://%31%39%32.168.1.1/")->key, "192.168.1.1");
  // Invalid addresses are no host, as browsers refuse them.
  EXPECT_FALSE(NormalizeUrl("http://256.1.1.1/"));
  EXPECT_FALSE(NormalizeUrl("http://1.2.3.4.5/"));
  EXPECT_FALSE(NormalizeUrl("http://1.2.3.256/"));
  EXPECT_FALSE(NormalizeUrl("http://4294967296/"));
  EXPECT_FALSE(NormalizeUrl("http://09.1.1.1/"));  // 9 is no octal digit
  EXPECT_FALSE(NormalizeUrl("http://a.test.123/"));
  // A name ending in letters is a name.
  EXPECT_EQ(NormalizeUrl("http://1.2.3.test/")->key, "1.2.3.test");
  EXPECT_EQ(NormalizeUrl("http://0x1g.test/")->key, "0x1g.test");
}

// WHATWG's reading of an IPv6 host: whatever the spelling, one form (lower
// case, no leading zeros, the first longest run of zeros as "::", an IPv4
// tail in hex), so that every spelling of a listed address matches it.
TEST(Url, AnIpv6AddressInAnyFormIsItsOneSerialisation) {
  for (const char* url : {"http://[::1]/x", "http://[0:0:0:0:0:0:0:1]/x", "http://[::0001]/x",
                          "https://[0000::1]:443/x", "[0:0::0:1]/x"}) {
    ASSERT_TRUE(NormalizeUrl(url)) << url;
    EXPECT_EQ(NormalizeUrl(url)->key, "[::1]/x") << url;
    EXPECT_EQ(NormalizeUrl(url)->host(), "[::1]") << url;
  }
  EXPECT_EQ(NormalizeUrl("http://[2001:DB8:0:0:1:0:0:1]/")->key, "[2001:db8::1:0:0:1]");
  EXPECT_EQ(NormalizeUrl("http://[2001:db8:0:0:0:0:2:1]/")->key, "[2001:db8::2:1]");
  EXPECT_EQ(NormalizeUrl("http://[1:0:0:2:0:0:0:3]/")->key, "[1:0:0:2::3]");
  EXPECT_EQ(NormalizeUrl("http://[1:2:3:4:5:6:7:0]/")->key, "[1:2:3:4:5:6:7:0]")
      << "one zero piece is not compressed";
  EXPECT_EQ(NormalizeUrl("http://[::]/")->key, "[::]");
  EXPECT_EQ(NormalizeUrl("http://[::ffff:192.168.1.1]/")->key, "[::ffff:c0a8:101]");
  EXPECT_EQ(NormalizeUrl("http://[::FFFF:C0A8:0101]:8080/")->key, "[::ffff:c0a8:101]:8080");
  // Not addresses: no host, so no URL.
  for (const char* bad :
       {"http://[::1::2]/", "http://[1:2:3:4:5:6:7:8:9]/", "http://[1:2:3]/", "http://[12345::]/",
        "http://[:1]/", "http://[1:]/", "http://[]/", "http://[::ffff:192.168.1.256]/",
        "http://[::ffff:1.2.3]/", "http://[::ffff:1.02.3.4]/", "http://[::1]x/", "http://[::1/",
        "http://[%3A%3A1]/", "http://[::g]/"}) {
    EXPECT_FALSE(NormalizeUrl(bad)) << bad;
  }
}

// Random addresses in random spellings (zero runs compressed anywhere
// they may be, capitals, leading zeros, an IPv4 tail), checked against the
// C library's parser and printer: the key names the same 16 bytes, and is
// the one form RFC 5952 gives them (where it does not print an IPv4 tail).
TEST(Url, RandomIpv6SpellingsAgreeWithTheCLibrary) {
  std::mt19937 rng(11);
  int compared = 0;
  for (int round = 0; round < 20000; ++round) {
    uint16_t pieces[8];
    for (uint16_t& p : pieces) {
      const unsigned r = rng() % 4;
      p = r < 2 ? 0 : static_cast<uint16_t>(r == 2 ? rng() % 16 : rng() % 65536);
    }
    // A run of zeros to write as "::" (any run, not only the longest).
    int from = -1, to = -1;
    for (int tries = 0; tries < 4 && from < 0; ++tries) {
      const int a = static_cast<int>(rng() % 8);
      int b = a;
      while (b < 8 && pieces[b] == 0) ++b;
      if (b > a) from = a, to = a + 1 + static_cast<int>(rng() % (b - a));
    }
    const bool ipv4_tail = rng() % 4 == 0;
    std::string text;
    for (int i = 0; i < 8; ++i) {
      if (i == from) {
        text += i == 0 ? "::" : ":";
        i = to - 1;
        if (to == 8) break;
        continue;
      }
      if (ipv4_tail && i == 6) {
        text += std::to_string(pieces[6] >> 8) + "." + std::to_string(pieces[6] & 255) + "." +
                std::to_string(pieces[7] >> 8) + "." + std::to_string(pieces[7] & 255);
        break;
      }
      char buf[8];
      std::snprintf(buf, sizeof buf, rng() % 3 == 0 ? "%04X" : "%x", pieces[i]);
      text += buf;
      if (i != 7) text += ':';
    }
    unsigned char want[16], got[16];
    ASSERT_EQ(inet_pton(AF_INET6, text.c_str(), want), 1) << text;
    std::optional<NormalizedUrl> u = NormalizeUrl("http://[" + text + "]/a");
    ASSERT_TRUE(u) << text;
    const std::string host(u->host());
    ASSERT_TRUE(host.size() > 2 && host.front() == '[' && host.back() == ']') << host;
    const std::string inner = host.substr(1, host.size() - 2);
    ASSERT_EQ(inet_pton(AF_INET6, inner.c_str(), got), 1) << text << " -> " << inner;
    ASSERT_EQ(std::memcmp(want, got, 16), 0) << text << " -> " << inner;
    char printed[INET6_ADDRSTRLEN];
    ASSERT_NE(inet_ntop(AF_INET6, want, printed, sizeof printed), nullptr);
    if (std::strchr(printed, '.') == nullptr) {
      EXPECT_EQ(inner, printed) << text;
      ++compared;
    }
    EXPECT_EQ(NormalizeUrl(u->key)->key, u->key) << text;
  }
  EXPECT_GT(compared, 15000);
}

TEST(Url, DotSegmentsAndBackslashesInThePathAreResolved) {
  EXPECT_EQ(NormalizeUrl("https://files.test/shared/x/../a1")->key, "files.test/shared/a1");
  EXPECT_EQ(NormalizeUrl("https://files.test/./shared/./a1/.")->key, "files.test/shared/a1");
  EXPECT_EQ(NormalizeUrl("https://files.test/shared/%2E%2e/shared/a1")->key,
            "files.test/shared/a1");
  EXPECT_EQ(NormalizeUrl("https://files.test/../../shared/a1")->key, "files.test/shared/a1");
  EXPECT_EQ(NormalizeUrl("https://files.test/shared\\a1")->key, "files.test/shared/a1");
  EXPECT_EQ(NormalizeUrl("https://files.test/a/..")->key, "files.test");
  // Only whole segments: "..." and "a.." are names.
  EXPECT_EQ(NormalizeUrl("https://files.test/.../a../b")->key, "files.test/.../a../b");
  // The query is not a path.
  EXPECT_EQ(NormalizeUrl("https://files.test/a?p=/../b")->key, "files.test/a?p=/../b");
  EXPECT_EQ(NormalizeUrl("https://files.test/a/b/c/")->path(), "/a/b/c");
  EXPECT_EQ(NormalizeUrl("https://files.test/a?x=1")->query(), "x=1");
  EXPECT_EQ(NormalizeUrl("https://files.test")->path(), "/");
}

// A '%' that starts no escape is written as the escape of '%': kept bare,
// an unreserved character decoded after it made a new escape, which the
// key read again decoded ("%%66" was "%f6", then "%F6"; "%%34%31" was
// "%41", then "A"). Found by fuzz_match_text.
TEST(Url, APercentThatStartsNoEscapeIsWrittenAsOne) {
  EXPECT_EQ(NormalizeUrl("a.test/66%%6666")->key, "a.test/66%25f66");
  EXPECT_EQ(NormalizeUrl("a.test/x%%34%31")->key, "a.test/x%2541");
  EXPECT_EQ(NormalizeUrl("a.test/100%")->key, "a.test/100%25");
  EXPECT_EQ(NormalizeUrl("a.test/%zz")->key, "a.test/%25zz");
  // The bare spelling and the escaped one are one resource.
  EXPECT_EQ(NormalizeUrl("a.test/%25zz")->key, "a.test/%25zz");
  for (const char* url : {"a.test/66%%6666", "a.test/x%%34%31", "a.test/%%2e%2e/b", "a.test/%"}) {
    const std::string key = NormalizeUrl(url)->key;
    EXPECT_EQ(NormalizeUrl("http://" + key)->key, key) << url;
  }
}

// A key is its own normal form: a list entry written as a key matches the
// URLs that normalise to it. Random URL-like strings, key of key == key.
TEST(Url, AKeyNormalisesToItself) {
  const std::vector<std::string> parts = {"a",
                                          "B",
                                          ".",
                                          "/",
                                          "\\",
                                          "%",
                                          "2e",
                                          "2E",
                                          "41",
                                          "%2F",
                                          ":",
                                          "@",
                                          "?",
                                          "#",
                                          "www.",
                                          "..",
                                          "8",
                                          "0",
                                          "http://",
                                          "HTTPS:",
                                          "//",
                                          "\xC3\xBC",
                                          "\xE3\x80\x82",
                                          "-",
                                          "[",
                                          "]",
                                          "[::",
                                          "::ffff:",
                                          "1.2.3.4",
                                          "0:0",
                                          " ",
                                          "~",
                                          "x.test",
                                          "=",
                                          "&"};
  std::mt19937 rng(7);
  int normalised = 0;
  for (int round = 0; round < 100000; ++round) {
    std::string url;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) url += parts[rng() % parts.size()];
    std::optional<NormalizedUrl> u = NormalizeUrl(url);
    if (!u) continue;
    ++normalised;
    std::optional<NormalizedUrl> again = NormalizeUrl(u->key);
    ASSERT_TRUE(again) << "url '" << url << "' key '" << u->key << "'";
    ASSERT_EQ(again->key, u->key) << "url '" << url << "'";
    ASSERT_EQ(again->host(), u->host()) << "url '" << url << "'";
    ASSERT_EQ(again->path(), u->path()) << "url '" << url << "'";
    ASSERT_EQ(again->query(), u->query()) << "url '" << url << "'";
  }
  EXPECT_GT(normalised, 25000);
}

TEST(UrlList, AListedUrlWrittenAnotherWayIsStillOnTheList) {
  rules::ListDef def = UrlList({"evil.test", "files.test/shared/a1", "xn--bcher-kva.test",
                                "192.168.1.1/x", "http://[2001:DB8:0:0:0:0:0:1]/x"});
  CompiledList list(def);
  EXPECT_TRUE(list.Contains("evil.test/r?u=http://good.test"));
  EXPECT_TRUE(list.Contains("http://%65vil.test/"));
  EXPECT_TRUE(list.Contains("https:evil.test"));
  EXPECT_TRUE(list.Contains("https://files.test/other/../shared/a1/b"));
  EXPECT_TRUE(list.Contains("https://files.test/shared\\a1"));
  EXPECT_TRUE(
      list.Contains("https://cdn.b\xC3\xBC"
                    "cher.test/x"));
  EXPECT_TRUE(list.Contains("http://3232235777/x/y"));
  EXPECT_TRUE(list.Contains("https://[2001:db8::0001]/x/y"));
  EXPECT_FALSE(list.Contains("https://[2001:db8::2]/x/y"));
  EXPECT_FALSE(list.Contains("good.test/r?u=http://evil.test"));
  EXPECT_FALSE(list.Contains("https://files.test/shared/a1/../a2"));
}

TEST(UrlList, HostEntryMatchesHostAndSubdomains) {
  rules::ListDef def = UrlList({"bad.test"});
  CompiledList list(def);
  EXPECT_TRUE(list.Contains("https://bad.test/"));
  EXPECT_TRUE(list.Contains("http://www.BAD.test/x/y?z=1"));
  EXPECT_TRUE(list.Contains("http://cdn.bad.test/img.png"));
  EXPECT_FALSE(list.Contains("http://notbad.test/"));
  EXPECT_FALSE(list.Contains("http://bad.test.example/"));
}

TEST(UrlList, PathEntryMatchesBelowItOnly) {
  rules::ListDef def = UrlList({"http://files.test/shared/a1"});
  CompiledList list(def);
  EXPECT_TRUE(list.Contains("https://files.test/shared/a1"));
  EXPECT_TRUE(list.Contains("https://files.test/shared/a1/"));
  EXPECT_TRUE(list.Contains("https://files.test/shared/a1/b?x=2"));
  EXPECT_FALSE(list.Contains("https://files.test/shared/a12"));
  EXPECT_FALSE(list.Contains("https://files.test/shared"));
  EXPECT_FALSE(list.Contains("https://other.files.test/shared/a1"));
}

TEST(UrlList, QueryEntryMatchesExactly) {
  rules::ListDef def = UrlList({"https://s.test/view?id=5"});
  CompiledList list(def);
  EXPECT_TRUE(list.Contains("http://www.s.test/view?id=5"));
  EXPECT_FALSE(list.Contains("http://s.test/view?id=6"));
  EXPECT_FALSE(list.Contains("http://s.test/view"));
}

// A query's escapes are read as RFC 3986 holds them equivalent, so that
// an escaped digit or letter does not take a listed URL off its list; what
// a server may read otherwise ('+', the order, an escaped '&') is kept.
TEST(UrlList, AQueryEntryMatchesItsEscapedSpellings) {
  rules::ListDef def = UrlList({"https://s.test/view?id=5&k=a%2fb"});
  CompiledList list(def);
  EXPECT_TRUE(list.Contains("http://s.test/view?id=5&k=a%2Fb"));
  EXPECT_TRUE(list.Contains("http://s.test/view?%69d=%35&k=a%2fb"));
  EXPECT_FALSE(list.Contains("http://s.test/view?id=5&k=a/b"));
  EXPECT_FALSE(list.Contains("http://s.test/view?k=a%2Fb&id=5"));
  EXPECT_FALSE(list.Contains("http://s.test/view?id=5%26k=a%2Fb"));
  EXPECT_EQ(NormalizeUrl("a.test/?q=a+b%20c%7e%zz%")->query(), "q=a+b%20c~%25zz%25");
  EXPECT_EQ(NormalizeUrl("a.test/?q=%c3%a9 \xC3\xA9")->query(), "q=%C3%A9%20%C3%A9");
}

TEST(UrlList, AHugeUrlCostsLookupsBoundedByTheListNotByTheUrl) {
  rules::ListDef def = UrlList({"files.test/shared/a1", "bad.test"});
  CompiledList list(def);
  // 1,000 KB of path segments under a listed path, and a host of 100,000
  // labels under a listed domain: each prefix or parent used to be copied
  // and hashed (CPU in the square of the length: 11 s for 1,000 KB).
  std::string path;
  while (path.size() < 1000000) path += "/x";
  size_t probes = 0;
  EXPECT_TRUE(list.Contains("https://files.test/shared/a1" + path, &probes));
  EXPECT_LE(probes, 4u) << "only prefixes as short as the longest entry are looked up";
  EXPECT_FALSE(list.Contains("https://files.test/other" + path, &probes));
  EXPECT_LE(probes, 12u);
  std::string host;
  for (int i = 0; i < 100000; ++i) host += "a.";
  EXPECT_TRUE(list.Contains("https://" + host + "bad.test/", &probes));
  EXPECT_LE(probes, 12u);
  EXPECT_FALSE(list.Contains("https://" + host + "good.test/", &probes));
  EXPECT_LE(probes, 12u);
}

TEST(HashList, CaseInsensitiveExactMatch) {
  rules::ListDef def;
  def.kind = rules::ListDef::Kind::kHash;
  def.entries = {"ABCDEF0123"};
  CompiledList list(def);
  EXPECT_TRUE(list.Contains("abcdef0123"));
  EXPECT_TRUE(list.Contains("ABCDEF0123"));
  EXPECT_FALSE(list.Contains("abcdef012"));
  EXPECT_FALSE(list.Contains("abcdef01234"));
}

// The filter in front of the index must pass every entry (else a listed
// hash would be missed) and should stop nearly every other key (else it
// saves nothing): about 2% pass at one byte an entry.
TEST(HashList, TheFilterPassesEveryEntryAndStopsNearlyAllOthers) {
  std::mt19937_64 rng(3);
  auto hex = [&] {
    char digest[33];
    std::snprintf(digest, sizeof digest, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return std::string(digest);
  };
  rules::ListDef def;
  def.kind = rules::ListDef::Kind::kHash;
  for (int i = 0; i < 100000; ++i) def.entries.push_back(hex());
  CompiledList list(def);
  for (size_t i = 0; i < def.entries.size(); ++i) {
    ASSERT_TRUE(list.FilterPasses(def.entries[i])) << def.entries[i];
    ASSERT_TRUE(list.Contains(def.entries[i]));
  }
  int passed = 0;
  const int others = 100000;
  for (int i = 0; i < others; ++i) {
    std::string other = hex();
    passed += list.FilterPasses(other);
    ASSERT_FALSE(list.Contains(other)) << other;
  }
  EXPECT_LT(passed, others / 20) << passed << " of " << others << " keys not on the list passed";
}

// A list asks only for the shapes of key its entries have (a bare host of
// so many labels, a path of so many segments, a query), and answers as if
// it asked for every one: lists of each mix of shapes, against the answer
// by definition, on URLs of every shape.
TEST(UrlList, LooksUpOnlyTheShapesItHoldsAndAnswersAsIfItLookedUpAll) {
  const std::vector<std::string> pool = {
      "bad.test",          "x.y.z.test",         "a.b.c.d.test",     "files.test/shared/a1",
      "deep.test/a/b/c/d", "one.test/top",       "s.test/view?id=5", "q.test/?k=v",
      "port.test:8080",    "port.test:8080/x/y", "10.1.2.3",         "10.1.2.3/p"};
  const char* hosts[] = {"bad.test",     "www.BAD.test", "a.b.bad.test", "x.y.z.test",
                         "q.x.y.z.test", "a.b.c.d.test", "files.test",   "deep.test",
                         "one.test",     "s.test",       "q.test",       "port.test:8080",
                         "port.test",    "10.1.2.3",     "other.test"};
  const char* paths[] = {"",           "/",          "/shared",  "/shared/a1", "/shared/a1/x/y",
                         "/view?id=5", "/view?id=6", "/a/b/c/d", "/a/b/c/d/e", "/a/b/c",
                         "/top",       "/top/more",  "/?k=v",    "/x/y/z",     "/p/q"};
  std::mt19937 rng(21);
  CompiledList::Probe probe;
  int found = 0;
  for (int list_round = 0; list_round < 60; ++list_round) {
    std::vector<std::string> entries;
    for (const std::string& e : pool) {
      if (rng() % 3 == 0) entries.push_back(e);
    }
    rules::ListDef def = UrlList(entries);
    const CompiledList list(def);
    for (const char* h : hosts) {
      for (const char* p : paths) {
        const std::string url = std::string("https://") + h + p;
        const bool expected = testing::UrlListContainsByDefinition(def, url);
        size_t probes = 0, prepared_probes = 0;
        ASSERT_EQ(list.Contains(url, &probes), expected) << url << " in list " << list_round;
        list.Prepare(url, &probe);
        ASSERT_EQ(list.Contains(probe, &prepared_probes), expected) << url;
        ASSERT_EQ(prepared_probes, probes) << url;
        found += expected;
      }
    }
  }
  EXPECT_GT(found, 1000) << "the URLs reach the lists";

  // How many keys are looked up: the shapes the list lacks are skipped.
  size_t probes = 0;
  rules::ListDef hosts_only = UrlList({"bad.test", "x.y.z.test"});
  const CompiledList by_host(hosts_only);
  EXPECT_TRUE(by_host.Contains("https://x.bad.test/p/q?s=1", &probes));
  EXPECT_EQ(probes, 1u) << "bad.test alone: no query, no path, no host of 3 labels";
  EXPECT_FALSE(by_host.Contains("https://o.zz.test/p/q/r", &probes));
  EXPECT_EQ(probes, 1u) << "zz.test alone";
  rules::ListDef two_segments = UrlList({"files.test/shared/a1"});
  const CompiledList by_path(two_segments);
  EXPECT_TRUE(by_path.Contains("https://files.test/shared/a1/x/y?z=1", &probes));
  EXPECT_EQ(probes, 1u) << "only the prefix of two segments";
  EXPECT_FALSE(by_path.Contains("https://files.test/shared", &probes));
  EXPECT_EQ(probes, 0u) << "a path of one segment and a host: shapes the list lacks";
  rules::ListDef queries = UrlList({"s.test/view?id=5"});
  const CompiledList by_query(queries);
  EXPECT_FALSE(by_query.Contains("https://s.test/view/more", &probes));
  EXPECT_EQ(probes, 0u) << "a URL without a query can equal no entry with one";
  EXPECT_TRUE(by_query.Contains("https://s.test/view?id=5", &probes));
  EXPECT_EQ(probes, 1u);
}

// A probe prepared from a value gives Contains(value)'s answer after the
// same lookups, whatever the value: URLs on and off the list, below listed
// paths, under listed domains, with queries, capitals, no host; hashes with
// capitals, too long, too short. One probe is reused throughout, as the
// Evaluator reuses them.
TEST(Lists, APreparedProbeAnswersAsTheValueDoes) {
  rules::ListDef urls = UrlList(
      {"files.test/shared/a1", "bad.test", "s.test/view?id=5", "deep.test/a/b/c/d", "x.y.z.test"});
  rules::ListDef hashes;
  hashes.kind = rules::ListDef::Kind::kHash;
  hashes.entries = {"abcdef0123", "00FF00FF", "5e0c6b8a"};
  const CompiledList url_list(urls), hash_list(hashes);
  const char* hosts[] = {"files.test", "bad.test", "www.BAD.test", "a.b.bad.test", "s.test",
                         "deep.test",  "y.z.test", "q.x.y.z.test", "other.test",   ""};
  const char* paths[] = {"",           "/",          "/shared",    "/shared/a1", "/shared/a1/x/y",
                         "/view?id=5", "/view?id=6", "/a/b/c/d/e", "/a/b/c",     "/A/B/C/D",
                         "/view"};
  const char* schemes[] = {"https://", "http://", "", "ftp://"};
  std::mt19937 rng(9);
  CompiledList::Probe probe;
  int found = 0;
  for (int round = 0; round < 3000; ++round) {
    const std::string url = std::string(schemes[rng() % std::size(schemes)]) +
                            hosts[rng() % std::size(hosts)] + paths[rng() % std::size(paths)];
    size_t direct_probes = 0, prepared_probes = 0;
    const bool direct = url_list.Contains(url, &direct_probes);
    url_list.Prepare(url, &probe);
    ASSERT_EQ(url_list.Contains(probe, &prepared_probes), direct) << url;
    ASSERT_EQ(prepared_probes, direct_probes) << url;
    found += direct;
  }
  EXPECT_GT(found, 300) << "the values reach the list";
  const char* digests[] = {"abcdef0123", "ABCDEF0123",  "00ff00ff", "00FF00FF", "5E0C6B8A",
                           "abcdef012",  "abcdef01234", "",         "zz"};
  for (const char* d : digests) {
    hash_list.Prepare(d, &probe);
    EXPECT_EQ(hash_list.Contains(probe), hash_list.Contains(d)) << d;
  }
  hash_list.Prepare("ABCDEF0123", &probe);
  EXPECT_TRUE(hash_list.Contains(probe));
}

}  // namespace
}  // namespace carewatch::match
