#ifndef CAREWATCH_ENGINE_MATCH_NORMALIZE_H_
#define CAREWATCH_ENGINE_MATCH_NORMALIZE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace carewatch::match {

// A field value after evasion folding, with a map back to the original.
// For every byte i of `text`, [orig_start[i], orig_end[i]) is the byte range
// of the original value it came from.
struct FoldedText {
  std::string text;
  std::vector<uint32_t> orig_start;
  std::vector<uint32_t> orig_end;

  // Maps the span [start, end) of `text` to the original value.
  // REQUIRES: start < end <= text.size().
  std::pair<uint32_t, uint32_t> MapSpan(uint32_t start, uint32_t end) const {
    return {orig_start[start], orig_end[end - 1]};
  }
  void Clear() {
    text.clear();
    orig_start.clear();
    orig_end.clear();
  }
};

// Evasion folding for `normalize: true` leaves (docs/rules.md):
//  - Unicode NFKC with case folding (full-width, ligatures, styled letters);
//  - accents and other combining marks dropped;
//  - zero-width and other invisible format characters removed;
//  - look-alike letters from Cyrillic and Greek folded to Latin;
//  - digits and symbols used for letters folded (0->o 1->i 3->e 4->a 5->s
//    7->t 8->b @->a $->s !->i |->l);
//  - separator punctuation (. - _ * + ~ / \ , ' " ` ^ = :  ;) removed, runs of
//    white space collapsed to one space, and runs of three or more single
//    characters separated by spaces joined ("s n a p" -> "snap").
// REQUIRES: `input` is valid UTF-8. Thread-safe; reuses `out`'s storage.
// With `with_map` false only `out->text` is written (the scan path); spans
// are mapped back on the rare reports that match, after folding again.
void FoldForMatching(std::string_view input, FoldedText* out, bool with_map = true);

// Convenience for patterns and tests: the folded text alone.
std::string FoldForMatching(std::string_view input);

// The whole-block path that folds ordinary ASCII text, chosen at start-up
// as the widest this CPU has: 64 bytes at a time (AVX-512 with VBMI2), 32
// (AVX2 and BMI2; two such blocks are folded together while both can be),
// or none (16-byte prefixes of letters, then one byte at a time). All give
// the same output.
enum class FoldBlockPath { kNone, kAvx2, kAvx512 };
FoldBlockPath FoldBlockPathInUse();
// For tests: makes `path` the one used, if this CPU has it (else returns
// false and changes nothing). Not to be called while other threads fold.
bool SetFoldBlockPathForTesting(FoldBlockPath path);

}  // namespace carewatch::match

#endif  // CAREWATCH_ENGINE_MATCH_NORMALIZE_H_
