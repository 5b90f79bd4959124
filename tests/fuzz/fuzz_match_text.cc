// libFuzzer target: the functions that read a report's text before any rule
// sees it, each checked against an independent answer, not only for
// crashes. They run on every field of every report a platform sends, and
// the fastest of them are hand-written vector code whose mistakes would
// not crash: they would quietly fold or look up the wrong bytes.
//
// Checked for every input:
//   - UTF-8: FindInvalidUtf8 names the offset ICU's U8_NEXT stops at (the
//     first ill-formed sequence: overlong, surrogate, above U+10FFFF,
//     truncated), or none when ICU reads it all.
//   - The evasion fold (valid UTF-8 only): every whole-block path this CPU
//     has (64-byte, 32-byte, none) folds to the same text; the text is the
//     one folded with a zero-width space between every two ASCII bytes
//     (which no block path can take, and the fold removes); the fold with
//     a map back to the original gives the same text, and each folded
//     byte maps to a non-empty range of the input, in order.
//   - URLs: a normalised URL's parts lie where NormalizedUrl says they do,
//     and its key read again as a URL is the same key (one form per
//     resource, so a list entry and a report's URL meet in it).
//   - Lists: the input's lines, all but the last as the entries of a URL
//     list and of a hash list, the last as the value looked up. A prepared
//     probe answers as the value does, after the same number of lookups;
//     the URL list answers as its definition does (every key looked up:
//     the whole key, each path prefix, the host and each parent domain but
//     a bare TLD), whatever shapes its entries have; and every entry that
//     is a URL is found on its own list.
#include <unicode/utf8.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "engine/common/url.h"
#include "engine/common/utf8.h"
#include "engine/match/lists.h"
#include "engine/match/normalize.h"
#include "engine/rules/ruleset.h"
#include "tests/match/url_list_definition.h"

namespace {

using namespace carewatch;

[[noreturn]] void Fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "fuzz_match_text: %s\ninput (%zu bytes): ", what, input.size());
  for (unsigned char c : input) std::fprintf(stderr, "\\x%02x", c);
  std::fprintf(stderr, "\n");
  __builtin_trap();
}

// The offset of the first sequence ICU finds ill-formed, or npos.
size_t IcuFirstInvalid(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t n = static_cast<int32_t>(s.size());
  int32_t i = 0;
  while (i < n) {
    const int32_t at = i;
    UChar32 c;
    U8_NEXT(p, i, n, c);
    if (c < 0) return static_cast<size_t>(at);
  }
  return std::string_view::npos;
}

void CheckUtf8(std::string_view in) {
  if (FindInvalidUtf8(in) != IcuFirstInvalid(in)) Fail("FindInvalidUtf8 disagrees with ICU", in);
}

// `s` with U+200B between every two adjacent ASCII bytes.
std::string SpacedAscii(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 4);
  for (size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (i + 1 < s.size() && static_cast<unsigned char>(s[i]) < 0x80 &&
        static_cast<unsigned char>(s[i + 1]) < 0x80) {
      out += "\u200B";
    }
  }
  return out;
}

void CheckFold(std::string_view in) {
  using match::FoldBlockPath;
  const FoldBlockPath widest = match::FoldBlockPathInUse();
  match::FoldedText folded, mapped;
  std::string first;
  bool have_first = false;
  for (FoldBlockPath path : {FoldBlockPath::kAvx512, FoldBlockPath::kAvx2, FoldBlockPath::kNone}) {
    if (!match::SetFoldBlockPathForTesting(path)) continue;
    match::FoldForMatching(in, &folded, /*with_map=*/false);
    if (!have_first) {
      first = folded.text;
      have_first = true;
    } else if (folded.text != first) {
      match::SetFoldBlockPathForTesting(widest);
      Fail("two block paths fold differently", in);
    }
  }
  match::SetFoldBlockPathForTesting(widest);

  match::FoldForMatching(SpacedAscii(in), &folded, /*with_map=*/false);
  if (folded.text != first) Fail("the block paths differ from the fold byte by byte", in);

  match::FoldForMatching(in, &mapped, /*with_map=*/true);
  if (mapped.text != first) Fail("the fold with a map folds differently", in);
  if (mapped.orig_start.size() != mapped.text.size() ||
      mapped.orig_end.size() != mapped.text.size()) {
    Fail("the map is not one range per folded byte", in);
  }
  for (size_t i = 0; i < mapped.text.size(); ++i) {
    if (mapped.orig_start[i] >= mapped.orig_end[i] || mapped.orig_end[i] > in.size())
      Fail("a folded byte maps to an empty range or past the input", in);
    if (i > 0 && mapped.orig_start[i] < mapped.orig_start[i - 1])
      Fail("the map goes backwards", in);
  }
}

void CheckUrl(std::string_view in) {
  NormalizedUrl url;
  if (!NormalizeUrl(in, &url)) return;
  const std::string& key = url.key;
  if (url.host_size == 0 || url.host_size > url.authority_size ||
      url.authority_size + url.path_size > key.size()) {
    Fail("a normalised URL's parts lie outside its key", in);
  }
  if (url.path_size > 0 && key[url.authority_size] != '/')
    Fail("a normalised path does not start with '/'", in);
  const size_t rest = url.authority_size + url.path_size;
  if (rest < key.size() && key[rest] != '?') Fail("the key goes on after its path without '?'", in);
  NormalizedUrl again;
  if (!NormalizeUrl("http://" + key, &again)) Fail("a normalised URL's key is no URL", in);
  if (again.key != key || again.host_size != url.host_size ||
      again.authority_size != url.authority_size || again.path_size != url.path_size) {
    Fail("a normalised URL's key normalises to another key", in);
  }
}

void CheckLists(std::string_view in) {
  std::vector<std::string_view> lines;
  size_t at = 0;
  while (lines.size() < 9) {
    const size_t nl = in.find('\n', at);
    lines.push_back(in.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at));
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  if (lines.size() < 2) return;
  const std::string_view value = lines.back();
  lines.pop_back();
  rules::ListDef urls, hashes;
  urls.kind = rules::ListDef::Kind::kUrl;
  hashes.kind = rules::ListDef::Kind::kHash;
  for (std::string_view line : lines) {
    if (line.empty()) continue;
    urls.entries.push_back(line);
    hashes.entries.push_back(line);
  }
  const match::CompiledList url_list(urls), hash_list(hashes);
  match::CompiledList::Probe probe;
  for (const match::CompiledList* list : {&url_list, &hash_list}) {
    size_t direct_probes = 0, prepared_probes = 0;
    const bool direct = list->Contains(value, &direct_probes);
    list->Prepare(value, &probe);
    if (list->Contains(probe, &prepared_probes) != direct || prepared_probes != direct_probes)
      Fail("a prepared probe answers otherwise than its value", in);
  }
  if (url_list.Contains(value) != carewatch::testing::UrlListContainsByDefinition(urls, value))
    Fail("a URL list answers otherwise than its definition", in);
  for (size_t i = 0; i < urls.entries.size(); ++i) {
    const std::string_view entry = urls.entries[i];
    if (NormalizeUrl(entry) && !url_list.Contains(entry)) Fail("a listed URL is not found", in);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  CheckUtf8(in);
  if (IsValidUtf8(in)) CheckFold(in);
  CheckUrl(in);
  CheckLists(in);
  return 0;
}
