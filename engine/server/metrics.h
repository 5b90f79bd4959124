#ifndef CAREWATCH_ENGINE_SERVER_METRICS_H_
#define CAREWATCH_ENGINE_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace carewatch::server {

// Counters and latency histograms, rendered in the Prometheus text format.
class Metrics {
 public:
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    5};
  void ObserveRpc(const std::string& method, const std::string& code, double seconds);
  void CountFlag(const std::string& rule_id);
  void CountReports(uint64_t n) { reports_ += n; }
  void CountSweepError() { sweep_errors_ += 1; }
  // An EvaluateStream report evaluated on its stream's own thread, or
  // handed to the shared workers.
  void CountStreamReport(bool on_stream) { (on_stream ? stream_inline_ : stream_workers_) += 1; }
  // A categorical value outside the documented vocabulary, by field (one of
  // a fixed few names).
  void CountUnknownValue(const std::string& field);
  // Gauges set by the server before rendering.
  struct Gauges {
    uint64_t ledger_size = 0, open = 0, met = 0, discharged = 0, breached = 0, findings_open = 0;
    uint64_t ledger_write_retries = 0;
    uint64_t ledger_commits = 0;  // transactions the ledger wrote (Ledger::commits)
    // Idempotency lookups answered by the filter of indexed ids and by the
    // index; whether the filter is complete (ledger.h: lookup_stats).
    uint64_t lookups_filtered = 0, lookups_read = 0;
    bool lookup_filter_ready = false;
    uint64_t wal_restarts_deferred = 0;  // ledger.h: wal_restarts_deferred
    // Bytes of requests waiting to be answered: unary calls, streams.
    int64_t waiting_unary_bytes = 0, waiting_stream_bytes = 0;
    // Unary calls waiting for the ledger, and streams open.
    int64_t waiting_calls = 0, open_streams = 0;
    // Commands replicas queued and the writer has not yet sequenced
    // (PostgreSQL ledgers); -1: no queue, or it could not be read.
    int64_t queue_depth = -1;
    std::string ruleset_version;
    bool last_reload_ok = true;
    int64_t last_reload_time = 0;
  };
  std::string Render(const Gauges& g) const;

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, uint64_t> flags_;
  std::map<std::string, uint64_t> unknown_values_;
  std::atomic<uint64_t> reports_{0};
  std::atomic<uint64_t> sweep_errors_{0};
  std::atomic<uint64_t> stream_inline_{0}, stream_workers_{0};
};

// "INVALID_ARGUMENT" for 3, and so on ("code N" beyond the known ones).
std::string GrpcCodeName(int code);

// One structured JSON log line on stderr: {"time":..,"level":..,"msg":..,...}.
void Log(const char* level, const std::string& msg,
         std::initializer_list<std::pair<const char*, std::string>> fields = {});

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_METRICS_H_
