// ReportFilter: which (service, report) ids the report index may hold, in a
// fixed amount of memory, so that a report seen for the first time (nearly
// every report) is answered without reading the index.
//
// A blocked Bloom filter: each id sets kProbes bits of one 64-byte block,
// chosen by a keyed hash of the id (a platform cannot choose ids that
// collide on purpose; if it could, it would only cost it lookups). "No"
// is exact once the filter is complete: every id of the index was added,
// by the scan at start (ScanComplete) and by the writer for every row it
// indexes since (or by the last writer, whose filter a clean stop saved:
// Save, Restore). "Maybe" is answered by the index itself. Ids deleted from
// the index (retention) stay in the filter as false positives until a
// start that scans; past its capacity more answers are "maybe", never a
// wrong "no". Memory is fixed at construction (kBytes), whatever the
// ledger's length.
//
// Thread-safety: Add (the writer), MayContain (any thread) and
// MarkComplete may run concurrently; bits are set with atomic ORs. An id
// added before a commit is seen by any lookup ordered after that commit
// (the ledger's tickets order them).
#ifndef CAREWATCH_ENGINE_LEDGER_REPORT_FILTER_H_
#define CAREWATCH_ENGINE_LEDGER_REPORT_FILTER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace carewatch::ledger {

class ReportFilter {
 public:
  // 8 MiB: about 1% false positives at 5 million ids.
  static constexpr size_t kBytes = size_t{8} << 20;
  static constexpr int kProbes = 8;

  explicit ReportFilter(size_t bytes = kBytes);
  ReportFilter(const ReportFilter&) = delete;
  ReportFilter& operator=(const ReportFilter&) = delete;

  void Add(std::string_view service_id, std::string_view report_id);
  // False only when the id was never added (and the filter is complete).
  bool MayContain(std::string_view service_id, std::string_view report_id) const;

  // Whether every id of the index has been added: until then MayContain's
  // "no" must not be trusted.
  bool complete() const { return complete_.load(std::memory_order_acquire); }
  void MarkComplete() { complete_.store(true, std::memory_order_release); }

  uint64_t added() const { return added_.load(std::memory_order_relaxed); }

  // The filter as bytes (its size, key, count and bits), which a writer
  // that stops cleanly leaves for the next start instead of a scan of the
  // index. REQUIRES: no Add runs meanwhile.
  std::string Save() const;
  // A filter that Save wrote, not yet complete; nullptr, with `error` set,
  // when `bytes` is not one (another format, another size, cut short).
  static std::unique_ptr<ReportFilter> Restore(std::string_view bytes, std::string* error);
  // Save, after a line naming what the ledger was when it was saved (its
  // stamp, without a newline); RestoreStamped gives the filter back, marked
  // complete, only if the ledger is still what `stamp` names and the bytes
  // are a whole saved filter (else nullptr: scan the index instead).
  std::string SaveStamped(const std::string& stamp) const;
  static std::unique_ptr<ReportFilter> RestoreStamped(std::string_view bytes,
                                                      std::string_view stamp);

 private:
  ReportFilter(size_t blocks, const uint64_t key[2]);
  struct Probe {
    size_t block;
    uint64_t bits[8];
  };
  Probe Locate(std::string_view service_id, std::string_view report_id) const;

  size_t blocks_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;  // blocks_ * 8 words
  uint64_t key_[2];                                 // random per process
  std::atomic<bool> complete_{false};
  std::atomic<uint64_t> added_{0};
};

}  // namespace carewatch::ledger

#endif  // CAREWATCH_ENGINE_LEDGER_REPORT_FILTER_H_
