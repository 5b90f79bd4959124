#include "engine/match/lists.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "engine/common/url.h"

namespace carewatch::match {

namespace {
// ASCII only, whatever the locale: hex digests are ASCII.
std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  return out;
}
}  // namespace

CompiledList::CompiledList(const rules::ListDef& def)
    : is_url_(def.kind == rules::ListDef::Kind::kUrl), entries_(&def.entries) {
  Build(def);
}

CompiledList::CompiledList(const rules::ListDef& def, const std::string& cache_path)
    : is_url_(def.kind == rules::ListDef::Kind::kUrl), entries_(&def.entries) {
  if (cache_path.empty()) {
    Build(def);
  } else if (!Load(cache_path)) {
    Build(def);
    Store(cache_path);
  }
}

namespace {
// The cached index: a header, the slots, the changed entries, and a
// SHA-256 of all of it and of the list's entries (so a cache file of other
// entries, or a damaged one, is rebuilt, never trusted).
// Its last two characters number both the layout and the URL normalisation
// (url.h) the index was built with: an index of keys normalised otherwise
// is rebuilt.
constexpr char kIndexMagic[8] = {'c', 'w', 'l', 'i', 's', 't', '0', '9'};
struct IndexHeader {
  char magic[8];
  uint64_t entries, slots, size, longest, changed_bytes, changed_spans, filter_blocks;
  uint64_t host_labels, path_segments, has_query;  // the entries' shapes
};

template <typename Block>
std::string IndexDigest(const IndexHeader& h, const std::vector<uint32_t>& slots,
                        const std::vector<Block>& filter, const std::vector<char>& changed,
                        const std::vector<std::pair<uint32_t, uint32_t>>& spans,
                        const rules::ListEntries& entries) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, &h, sizeof h);
  EVP_DigestUpdate(ctx, slots.data(), slots.size() * 4);
  EVP_DigestUpdate(ctx, filter.data(), filter.size() * sizeof(Block));
  EVP_DigestUpdate(ctx, changed.data(), changed.size());
  EVP_DigestUpdate(ctx, spans.data(), spans.size() * 8);
  // The entries in two pieces, not one update each: a million small updates
  // cost more than hashing the bytes.
  static_assert(sizeof(entries.spans()[0]) == 8, "spans are hashed as bytes");
  EVP_DigestUpdate(ctx, entries.spans().data(), entries.spans().size() * 8);
  EVP_DigestUpdate(ctx, entries.joined().data(), entries.joined().size());
  std::string out(32, '\0');
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()), &len);
  EVP_MD_CTX_free(ctx);
  return out;
}
}  // namespace

bool CompiledList::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  IndexHeader h;
  if (!in.read(reinterpret_cast<char*>(&h), sizeof h)) return false;
  if (std::memcmp(h.magic, kIndexMagic, 8) != 0 || h.entries != entries_->size() || h.slots == 0 ||
      (h.slots & (h.slots - 1)) != 0 || h.slots > (1ull << 32) || h.size > h.entries ||
      h.changed_spans > h.entries || h.changed_bytes > (1ull << 32) ||
      h.filter_blocks != FilterBlocks(h.entries)) {
    return false;
  }
  std::vector<uint32_t> slots(h.slots);
  std::vector<FilterBlock> filter(h.filter_blocks);
  std::vector<char> changed(h.changed_bytes);
  std::vector<std::pair<uint32_t, uint32_t>> spans(h.changed_spans);
  std::string digest(32, '\0');
  in.read(reinterpret_cast<char*>(slots.data()), static_cast<std::streamsize>(h.slots * 4));
  in.read(reinterpret_cast<char*>(filter.data()),
          static_cast<std::streamsize>(filter.size() * sizeof(FilterBlock)));
  in.read(changed.data(), static_cast<std::streamsize>(changed.size()));
  in.read(reinterpret_cast<char*>(spans.data()), static_cast<std::streamsize>(spans.size() * 8));
  in.read(digest.data(), 32);
  if (!in) return false;
  for (const auto& [offset, length] : spans) {
    if (uint64_t{offset} + length > changed.size()) return false;
  }
  uint64_t limit = 1 + h.entries + h.changed_spans;
  value_bits_ = ValueBits(h.entries);
  value_mask_ = value_bits_ >= 32 ? ~0u : (1u << value_bits_) - 1;
  // Every slot checked, without a branch a slot (so the loop vectorises):
  // the digest below is no key, so a slot is only trusted in bounds.
  const uint32_t mask = value_mask_;
  bool bad = false;
  for (uint32_t v : slots) {
    const uint32_t value = v & mask;
    bad |= (value >= limit) | ((v != 0) & (value == 0));
  }
  if (bad) return false;
  if (IndexDigest(h, slots, filter, changed, spans, *entries_) != digest) return false;
  slots_ = std::move(slots);
  filter_ = std::move(filter);
  changed_ = std::move(changed);
  changed_spans_ = std::move(spans);
  size_ = h.size;
  longest_ = h.longest;
  host_labels_ = h.host_labels;
  path_segments_ = h.path_segments;
  has_query_ = h.has_query != 0;
  return true;
}

void CompiledList::Store(const std::string& path) const {
  IndexHeader h{};
  std::memcpy(h.magic, kIndexMagic, 8);
  h.entries = entries_->size();
  h.slots = slots_.size();
  h.size = size_;
  h.longest = longest_;
  h.changed_bytes = changed_.size();
  h.changed_spans = changed_spans_.size();
  h.filter_blocks = filter_.size();
  h.host_labels = host_labels_;
  h.path_segments = path_segments_;
  h.has_query = has_query_;
  std::string digest = IndexDigest(h, slots_, filter_, changed_, changed_spans_, *entries_);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
    out.write(reinterpret_cast<const char*>(slots_.data()),
              static_cast<std::streamsize>(slots_.size() * 4));
    out.write(reinterpret_cast<const char*>(filter_.data()),
              static_cast<std::streamsize>(filter_.size() * sizeof(FilterBlock)));
    out.write(changed_.data(), static_cast<std::streamsize>(changed_.size()));
    out.write(reinterpret_cast<const char*>(changed_spans_.data()),
              static_cast<std::streamsize>(changed_spans_.size() * 8));
    out.write(digest.data(), 32);
    if (!out) {
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);  // readers see the old file or the new one
}

int CompiledList::ValueBits(size_t entries) {
  // Values run up to 1 + 2n (every entry changed by normalising).
  int bits = 1;
  while (bits < 32 && (uint64_t{1} << bits) <= 1 + 2 * uint64_t{entries}) ++bits;
  return bits;
}

size_t CompiledList::FilterBlocks(size_t entries) {
  // About 8 bits an entry (32 entries a 256-bit block), a power of two.
  size_t blocks = 1;
  while (blocks * 32 < entries) blocks *= 2;
  return blocks;
}

namespace {
// The odd constants of Parquet's split-block Bloom filter: word i of a
// block takes bit (hash * kSalt[i]) >> 27 of the low 32 bits of the hash.
constexpr uint32_t kSalt[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
                               0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};
}  // namespace

void CompiledList::FilterAdd(FilterBlock* block, size_t hash) {
  const uint32_t h = static_cast<uint32_t>(hash);
  for (int i = 0; i < 8; ++i) block->words[i] |= 1u << ((h * kSalt[i]) >> 27);
}

bool CompiledList::FilterMayHave(const FilterBlock& block, size_t hash) {
  const uint32_t h = static_cast<uint32_t>(hash);
  uint32_t missing = 0;
  for (int i = 0; i < 8; ++i) missing |= ~block.words[i] & (1u << ((h * kSalt[i]) >> 27));
  return missing == 0;
}

void CompiledList::Build(const rules::ListDef& def) {
  const size_t n = def.entries.size();
  size_t capacity = 16;
  while (capacity < 2 * n) capacity *= 2;
  slots_.assign(capacity, 0);
  filter_.assign(FilterBlocks(n), FilterBlock{});
  value_bits_ = ValueBits(n);
  value_mask_ = value_bits_ >= 32 ? ~0u : (1u << value_bits_) - 1;
  auto insert = [&](std::string_view key, uint32_t value) {
    size_t mask = slots_.size() - 1;
    const size_t hash = Hash(key);
    const uint32_t tag = TagOf(hash);
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      if (slots_[i] == 0) {
        slots_[i] = value | tag;
        FilterAdd(&filter_[BlockIndex(hash)], hash);
        ++size_;
        longest_ = std::max(longest_, key.size());
        return;
      }
      if ((slots_[i] & ~value_mask_) == tag && KeyAt(slots_[i] & value_mask_) == key) {
        return;  // a duplicate
      }
    }
  };
  std::string lowered;
  for (size_t i = 0; i < n; ++i) {
    std::string_view e = def.entries[i];
    std::string_view key = e;
    std::optional<NormalizedUrl> u;
    if (is_url_) {
      u = NormalizeUrl(e);
      if (!u) continue;  // not a URL: never matches
      key = u->key;
      if (key.size() > u->authority_size + u->path_size) {
        has_query_ = true;
      } else if (u->path_size > 0) {
        path_segments_ |= ShapeBit(std::count(key.begin() + u->authority_size, key.end(), '/'));
      } else {
        host_labels_ |= ShapeBit(1 + std::count(key.begin(), key.end(), '.'));
      }
    } else {
      lowered = Lower(e);
      key = lowered;
    }
    if (key == e) {
      insert(e, static_cast<uint32_t>(1 + i));
      continue;
    }
    // Copied: the views above must not move, so the buffer grows only here
    // and KeyAt reads it through offsets.
    changed_spans_.emplace_back(static_cast<uint32_t>(changed_.size()),
                                static_cast<uint32_t>(key.size()));
    changed_.insert(changed_.end(), key.begin(), key.end());
    insert(key, static_cast<uint32_t>(1 + n + changed_spans_.size() - 1));
  }
  changed_.shrink_to_fit();
  changed_spans_.shrink_to_fit();
}

std::string_view CompiledList::KeyAt(uint32_t value) const {
  size_t n = entries_->size();
  if (value <= n) return (*entries_)[value - 1];
  auto [offset, length] = changed_spans_[value - 1 - n];
  return {changed_.data() + offset, length};
}

bool CompiledList::FilterPasses(std::string_view key) const {
  const size_t hash = Hash(key);
  return FilterMayHave(filter_[BlockIndex(hash)], hash);
}

bool CompiledList::Has(std::string_view key, size_t hash) const {
  const size_t mask = slots_.size() - 1;
  if (!FilterMayHave(filter_[BlockIndex(hash)], hash)) return false;
  const uint32_t tag = TagOf(hash);
  for (size_t i = hash & mask; slots_[i] != 0; i = (i + 1) & mask) {
    const uint32_t slot = slots_[i];
    if ((slot & ~value_mask_) == tag && KeyAt(slot & value_mask_) == key) return true;
  }
  return false;
}

template <class Visit>
bool CompiledList::ForEachKey(std::string_view value, Visit visit) const {
  // Every key is a view of `value` or of its normalised form: nothing is
  // copied but a hash digest with capitals.
  if (!is_url_) {
    if (value.size() > longest_) return false;
    if (std::none_of(value.begin(), value.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return visit(value, value);
    }
    thread_local std::string lowered;
    lowered.resize(value.size());
    for (size_t i = 0; i < value.size(); ++i) {
      char c = value[i];
      lowered[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
    }
    return visit(lowered, lowered);
  }
  thread_local NormalizedUrl u;
  if (!NormalizeUrl(value, &u)) return false;
  const std::string_view key = u.key;
  const size_t host_port_len = u.authority_size;
  // The whole key, when it has a query: without one it is the longest path
  // prefix below (or the host), looked up there.
  if (key.size() > host_port_len + u.path_size && has_query_ && key.size() <= longest_ &&
      visit(key, key)) {
    return true;
  }
  // Path prefixes at segment boundaries, longest first, then the host and
  // its parent domains: each a prefix or a suffix of the key's host and
  // path. Only keys no longer than the longest entry, and only of a shape
  // some entry has, can be on the list, so only those are visited: the
  // walk is linear in the URL's length however many segments or labels it
  // has.
  if (path_segments_ != 0) {
    const std::string_view path = u.path();
    size_t path_len = path.size();
    size_t segments = static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
    while (path_len > 1) {
      if (host_port_len + path_len <= longest_ && (path_segments_ & ShapeBit(segments)) &&
          visit(key, key.substr(0, host_port_len + path_len))) {
        return true;
      }
      size_t slash = path.rfind('/', path_len - 1);
      path_len = slash == 0 ? 1 : slash;
      --segments;
    }
  }
  if (host_labels_ == 0) return false;
  std::string_view host = key.substr(0, host_port_len);
  size_t labels = 1 + static_cast<size_t>(std::count(host.begin(), host.end(), '.'));
  while (!host.empty()) {
    if (host.size() <= longest_ && (host_labels_ & ShapeBit(labels)) && visit(key, host)) {
      return true;
    }
    size_t dot = host.find('.');
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
    --labels;
    if (host.find('.') == std::string_view::npos) break;  // never match a bare TLD
  }
  return false;
}

bool CompiledList::Contains(std::string_view value, size_t* probes) const {
  size_t looked_up = 0;
  const bool found = ForEachKey(value, [&](std::string_view, std::string_view key) {
    ++looked_up;
    return Has(key, Hash(key));
  });
  if (probes) *probes = looked_up;
  return found;
}

void CompiledList::Prepare(std::string_view value, Probe* probe) const {
  probe->text_.clear();
  probe->keys_.clear();
  ForEachKey(value, [&](std::string_view base, std::string_view key) {
    if (probe->text_.empty()) probe->text_.assign(base);
    const size_t hash = Hash(key);
    __builtin_prefetch(&filter_[BlockIndex(hash)]);
    probe->keys_.push_back(
        {static_cast<uint32_t>(key.data() - base.data()), static_cast<uint32_t>(key.size()), hash});
    return false;  // every key
  });
}

bool CompiledList::Contains(const Probe& probe, size_t* probes) const {
  size_t looked_up = 0;
  bool found = false;
  for (const Probe::Key& k : probe.keys_) {
    ++looked_up;
    if (Has(std::string_view(probe.text_).substr(k.start, k.length), k.hash)) {
      found = true;
      break;
    }
  }
  if (probes) *probes = looked_up;
  return found;
}

}  // namespace carewatch::match
