#ifndef CAREWATCH_ENGINE_MATCH_LISTS_H_
#define CAREWATCH_ENGINE_MATCH_LISTS_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/rules/ruleset.h"

namespace carewatch::match {

// An exact-match list compiled for lookups. Immutable after construction,
// shared read-only between threads.
//
// URL lists: an entry with a query matches that exact URL; an entry with a
// path matches that path and everything below it ("a.test/x" matches
// "https://www.A.test/x/y", not "a.test/xy"); a bare host matches the host
// and its subdomains. Both sides are normalised first (url.h).
// Hash lists: hex digests compared case-insensitively.
//
// Memory: an open-addressing index of 4-byte slots (at most half full) over
// the list's own bytes in `def`, which must outlive it (the Evaluator holds
// its RuleSet); only entries that normalising changes are copied. Built in
// one pass, no sort: a million entries take tens of milliseconds.
//
// In front of the index, a split-block Bloom filter of about one byte per
// entry (1 MiB for a million) answers most lookups of keys not on the list,
// nearly all of them, from one 32-byte block small enough to stay in the
// CPU's cache, where the index (8 MiB for a million) does not: a miss costs
// one cache line read instead of a read from memory. About 2% of keys not
// on the list pass the filter and are looked up in the index.
//
// A URL is looked up by its whole key (only when it has a query), its path
// prefixes and its host and parent domains; of those, only the shapes the
// list holds (a bare host of so many labels, a path of so many segments, a
// query) are looked up: a list of full URLs is not asked for hosts.
class CompiledList {
 public:
  explicit CompiledList(const rules::ListDef& def);
  explicit CompiledList(const rules::ListDef&& def) = delete;  // must outlive the list
  // With `cache_path`: the index is read from that file when it holds the
  // index of exactly these entries (checked by digest), else built and
  // written there, so a restart with large lists does not rebuild them.
  CompiledList(const rules::ListDef& def, const std::string& cache_path);

  bool is_url() const { return is_url_; }
  // True when `value` (a URL or a hex digest) is on the list. Linear in the
  // length of `value`: only prefixes and parent domains no longer than the
  // list's longest entry are looked up (`probes`, when given, counts them).
  bool Contains(std::string_view value, size_t* probes = nullptr) const;

  // The keys a value is looked up by, each with its hash, in the order
  // Contains looks them up. Prepare also asks memory for the filter blocks
  // they will read (a prefetch), so that work the caller does before
  // Contains(probe) hides those reads: a lookup that misses the filter then
  // costs no wait for memory. Reusable: its storage is kept.
  class Probe {
   public:
    size_t size() const { return keys_.size(); }

   private:
    friend class CompiledList;
    struct Key {
      uint32_t start, length;  // in text_
      size_t hash;
    };
    std::string text_;  // the keys are spans of it
    std::vector<Key> keys_;
  };
  void Prepare(std::string_view value, Probe* probe) const;
  // The same answer as Contains(value) for the value `probe` was prepared
  // from, by this list.
  bool Contains(const Probe& probe, size_t* probes = nullptr) const;
  size_t size() const { return size_; }
  // Whether a key as the index holds it (normalised) gets past the filter
  // in front of the index: true for every entry (tests, benchmarks).
  bool FilterPasses(std::string_view key) const;
  // Bytes this index holds beyond the list's own entries.
  size_t bytes() const {
    return slots_.capacity() * sizeof(uint32_t) + filter_.capacity() * sizeof(filter_[0]) +
           changed_.capacity() + changed_spans_.capacity() * sizeof(changed_spans_[0]);
  }

 private:
  void Build(const rules::ListDef& def);
  bool Load(const std::string& path);
  void Store(const std::string& path) const;
  bool Has(std::string_view key, size_t hash) const;
  static size_t Hash(std::string_view key) { return std::hash<std::string_view>()(key); }
  // Calls visit(base, key) for each key `value` is looked up by, in order,
  // until one call returns true, and returns whether one did. Every key is
  // a view of `base`: the value itself or its normalised form (valid until
  // the thread's next call).
  template <class Visit>
  bool ForEachKey(std::string_view value, Visit visit) const;
  // The filter: blocks of eight 32-bit words; a key sets one bit in each
  // word of the block its hash picks (Parquet's split-block Bloom filter).
  struct alignas(32) FilterBlock {
    uint32_t words[8];
  };
  static size_t FilterBlocks(size_t entries);
  size_t BlockIndex(size_t hash) const { return (hash >> 32) & (filter_.size() - 1); }
  static void FilterAdd(FilterBlock* block, size_t hash);
  static bool FilterMayHave(const FilterBlock& block, size_t hash);
  // The key a slot value names: 1 + i for entry i of the list as it is,
  // 1 + n + j for the j-th changed entry.
  std::string_view KeyAt(uint32_t value) const;
  // A slot holds the value in its low value_bits_ bits and, above them,
  // that many top bits of the key's hash: a lookup reads a key only when
  // the tags agree, so a miss rarely touches the entries.
  static int ValueBits(size_t entries);
  uint32_t TagOf(size_t hash) const {
    return value_bits_ >= 32 ? 0 : static_cast<uint32_t>(hash >> (32 + value_bits_)) << value_bits_;
  }

  bool is_url_;
  const rules::ListEntries* entries_;
  std::vector<char> changed_;  // normalised forms of entries that differ
  std::vector<std::pair<uint32_t, uint32_t>> changed_spans_;
  std::vector<uint32_t> slots_;      // 0: empty; a power of two in size
  std::vector<FilterBlock> filter_;  // a power of two in size
  int value_bits_ = 32;
  uint32_t value_mask_ = ~0u;
  size_t size_ = 0;
  size_t longest_ = 0;  // bytes of the longest entry
  // The shapes of a URL list's entries, so that a lookup skips keys no
  // entry can equal: bit min(n, 63) is set when an entry is a bare host of
  // n labels (host_labels_) or a path of n segments without a query
  // (path_segments_); has_query_ when an entry has a query. The three
  // kinds of key never equal one another ('/' and '?' tell them apart).
  uint64_t host_labels_ = 0;
  uint64_t path_segments_ = 0;
  bool has_query_ = false;
  // The bit of a count in those masks (63 stands for 63 and more).
  static uint64_t ShapeBit(size_t count) { return uint64_t{1} << std::min<size_t>(count, 63); }
};

}  // namespace carewatch::match

#endif  // CAREWATCH_ENGINE_MATCH_LISTS_H_
