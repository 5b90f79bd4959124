#include "engine/match/url.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "engine/match/lists.h"

namespace carewatch::match {
namespace {

TEST(Url, NormalisesSchemeHostPortAndSlash) {
  EXPECT_EQ(NormalizeUrl("HTTPS://WWW.Example.TEST:443/a/b/")->key, "example.test/a/b");
  EXPECT_EQ(NormalizeUrl("http://example.test:80")->key, "example.test");
  EXPECT_EQ(NormalizeUrl("example.test/x#frag")->key, "example.test/x");
  EXPECT_EQ(NormalizeUrl("http://example.test:8080/x")->key, "example.test:8080/x");
  EXPECT_EQ(NormalizeUrl("http://user@example.test/%7Ea")->key, "example.test/~a");
  EXPECT_EQ(NormalizeUrl("http://example.test/q?id=1")->key, "example.test/q?id=1");
  EXPECT_FALSE(NormalizeUrl("http:///nohost"));
}

rules::ListDef UrlList(std::vector<std::string> entries) {
  rules::ListDef def;
  def.kind = rules::ListDef::Kind::kUrl;
  def.entries = std::move(entries);
  return def;
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
    std::snprintf(digest, sizeof digest, "%016llx%016llx",
                  static_cast<unsigned long long>(rng()), static_cast<unsigned long long>(rng()));
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

// A probe prepared from a value gives Contains(value)'s answer after the
// same lookups, whatever the value: URLs on and off the list, below listed
// paths, under listed domains, with queries, capitals, no host; hashes with
// capitals, too long, too short. One probe is reused throughout, as the
// Evaluator reuses them.
TEST(Lists, APreparedProbeAnswersAsTheValueDoes) {
  rules::ListDef urls = UrlList({"files.test/shared/a1", "bad.test", "s.test/view?id=5",
                                 "deep.test/a/b/c/d", "x.y.z.test"});
  rules::ListDef hashes;
  hashes.kind = rules::ListDef::Kind::kHash;
  hashes.entries = {"abcdef0123", "00FF00FF", "5e0c6b8a"};
  const CompiledList url_list(urls), hash_list(hashes);
  const char* hosts[] = {"files.test", "bad.test", "www.BAD.test", "a.b.bad.test", "s.test",
                         "deep.test", "y.z.test", "q.x.y.z.test", "other.test", ""};
  const char* paths[] = {"", "/", "/shared", "/shared/a1", "/shared/a1/x/y", "/view?id=5",
                         "/view?id=6", "/a/b/c/d/e", "/a/b/c", "/A/B/C/D", "/view"};
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
  const char* digests[] = {"abcdef0123", "ABCDEF0123", "00ff00ff", "00FF00FF", "5E0C6B8A",
                           "abcdef012",  "abcdef01234", "",        "zz"};
  for (const char* d : digests) {
    hash_list.Prepare(d, &probe);
    EXPECT_EQ(hash_list.Contains(probe), hash_list.Contains(d)) << d;
  }
  hash_list.Prepare("ABCDEF0123", &probe);
  EXPECT_TRUE(hash_list.Contains(probe));
}

}  // namespace
}  // namespace carewatch::match
