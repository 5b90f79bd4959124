#include "engine/ledger/report_filter.h"

#include <sodium.h>

#include <bit>
#include <cstring>
#include <memory>
#include <string>

namespace carewatch::ledger {

ReportFilter::ReportFilter(size_t bytes)
    : blocks_(bytes / 64 > 0 ? bytes / 64 : 1), words_(new std::atomic<uint64_t>[blocks_ * 8]) {
  for (size_t i = 0; i < blocks_ * 8; ++i) words_[i].store(0, std::memory_order_relaxed);
  static_assert(sizeof(key_) == crypto_shorthash_siphashx24_KEYBYTES);
  static const int init = sodium_init();  // idempotent; randombytes works either way
  (void)init;
  randombytes_buf(key_, sizeof(key_));
}

ReportFilter::ReportFilter(size_t blocks, const uint64_t key[2])
    : blocks_(blocks), words_(new std::atomic<uint64_t>[blocks_ * 8]) {
  key_[0] = key[0];
  key_[1] = key[1];
}

namespace {
constexpr char kMagic[8] = {'c', 'w', 'f', 'i', 'l', 't', '0', '1'};
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
}  // namespace

std::string ReportFilter::Save() const {
  std::string out;
  out.reserve(sizeof(kMagic) + 32 + blocks_ * 64);
  out.append(kMagic, sizeof(kMagic));
  PutU64(&out, blocks_);
  PutU64(&out, key_[0]);
  PutU64(&out, key_[1]);
  PutU64(&out, added_.load(std::memory_order_relaxed));
  // The words little-endian, as PutU64 writes them, a word at a time.
  const size_t at = out.size();
  out.resize(at + blocks_ * 64);
  for (size_t i = 0; i < blocks_ * 8; ++i) {
    uint64_t w = words_[i].load(std::memory_order_relaxed);
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    std::memcpy(out.data() + at + 8 * i, &w, 8);
  }
  return out;
}

std::unique_ptr<ReportFilter> ReportFilter::Restore(std::string_view bytes, std::string* error) {
  constexpr size_t kHeader = sizeof(kMagic) + 32;
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    *error = "not a saved report filter";
    return nullptr;
  }
  const char* p = bytes.data() + sizeof(kMagic);
  const uint64_t blocks = GetU64(p);
  if (blocks == 0 || blocks > (uint64_t{1} << 32) || bytes.size() != kHeader + blocks * 64) {
    *error = "a saved report filter of " + std::to_string(bytes.size()) +
             " bytes does not hold the blocks it names";
    return nullptr;
  }
  const uint64_t key[2] = {GetU64(p + 8), GetU64(p + 16)};
  std::unique_ptr<ReportFilter> f(new ReportFilter(static_cast<size_t>(blocks), key));
  f->added_.store(GetU64(p + 24), std::memory_order_relaxed);
  const char* w = bytes.data() + kHeader;
  for (size_t i = 0; i < blocks * 8; ++i) {
    uint64_t v;
    std::memcpy(&v, w + 8 * i, 8);
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
    f->words_[i].store(v, std::memory_order_relaxed);
  }
  return f;
}

std::string ReportFilter::SaveStamped(const std::string& stamp) const {
  return stamp + '\n' + Save();
}

std::unique_ptr<ReportFilter> ReportFilter::RestoreStamped(std::string_view bytes,
                                                           std::string_view stamp) {
  const size_t nl = bytes.find('\n');
  if (stamp.empty() || nl == std::string_view::npos || bytes.substr(0, nl) != stamp) return nullptr;
  std::string error;
  std::unique_ptr<ReportFilter> f = Restore(bytes.substr(nl + 1), &error);
  if (f) f->MarkComplete();
  return f;
}

ReportFilter::Probe ReportFilter::Locate(std::string_view service_id,
                                         std::string_view report_id) const {
  // The id as length-prefixed parts, so that no two ids share an input.
  unsigned char stack[256];
  std::string heap;
  const uint64_t n = service_id.size();
  const size_t len = sizeof(n) + service_id.size() + report_id.size();
  unsigned char* in = stack;
  if (len > sizeof(stack)) {
    heap.resize(len);
    in = reinterpret_cast<unsigned char*>(heap.data());
  }
  std::memcpy(in, &n, sizeof(n));
  std::memcpy(in + sizeof(n), service_id.data(), service_id.size());
  std::memcpy(in + sizeof(n) + service_id.size(), report_id.data(), report_id.size());
  uint64_t h[2];
  crypto_shorthash_siphashx24(reinterpret_cast<unsigned char*>(h), in, len,
                              reinterpret_cast<const unsigned char*>(key_));
  Probe p;
  p.block = static_cast<size_t>(h[0] % blocks_);
  // One bit in each of the block's eight words, six bits of h[1] apiece.
  for (int i = 0; i < kProbes; ++i) p.bits[i] = uint64_t{1} << ((h[1] >> (6 * i)) & 63);
  return p;
}

void ReportFilter::Add(std::string_view service_id, std::string_view report_id) {
  const Probe p = Locate(service_id, report_id);
  std::atomic<uint64_t>* w = &words_[p.block * 8];
  for (int i = 0; i < kProbes; ++i) w[i].fetch_or(p.bits[i], std::memory_order_relaxed);
  added_.fetch_add(1, std::memory_order_relaxed);
}

bool ReportFilter::MayContain(std::string_view service_id, std::string_view report_id) const {
  const Probe p = Locate(service_id, report_id);
  const std::atomic<uint64_t>* w = &words_[p.block * 8];
  for (int i = 0; i < kProbes; ++i) {
    if ((w[i].load(std::memory_order_relaxed) & p.bits[i]) == 0) return false;
  }
  return true;
}

}  // namespace carewatch::ledger
