#include "engine/server/metrics.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <utility>

namespace carewatch::server {

namespace {
std::string Escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}
}  // namespace

void Metrics::ObserveRpc(const std::string& method, const std::string& code, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{method, code}];
  Histogram& h = latency_[method];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++h.buckets[i];
  }
  ++h.count;
  h.sum += seconds;
}

void Metrics::CountUnknownValue(const std::string& field) {
  std::lock_guard<std::mutex> lock(mu_);
  ++unknown_values_[field];
}

void Metrics::CountFlag(const std::string& rule_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++flags_[rule_id];
}

std::string Metrics::Render(const Gauges& g) const {
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  // A metric without labels: its HELP and TYPE lines, then its one value.
  auto scalar = [&](const std::string& name, const char* type, const std::string& help,
                    const std::string& value) {
    line("# HELP " + name + " " + help);
    line("# TYPE " + name + " " + type);
    line(name + " " + value);
  };
  // A metric with one label: its HELP and TYPE lines, then a value for each
  // of the label's values.
  auto labelled = [&](const std::string& name, const char* type, const std::string& help,
                      const std::string& label,
                      std::initializer_list<std::pair<const char*, std::string>> values) {
    line("# HELP " + name + " " + help);
    line("# TYPE " + name + " " + type);
    for (const auto& [key, value] : values) line(name + "{" + label + "=\"" + key + "\"} " + value);
  };
  std::lock_guard<std::mutex> lock(mu_);
  line("# HELP carewatch_rpc_requests_total RPCs handled, by method and status code.");
  line("# TYPE carewatch_rpc_requests_total counter");
  for (const auto& [k, v] : requests_) {
    line("carewatch_rpc_requests_total{method=\"" + k.first + "\",code=\"" + k.second + "\"} " +
         std::to_string(v));
  }
  line("# HELP carewatch_rpc_latency_seconds RPC latency, by method.");
  line("# TYPE carewatch_rpc_latency_seconds histogram");
  for (const auto& [m, h] : latency_) {
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      char le[32];
      std::snprintf(le, sizeof le, "%g", kBuckets[i]);
      line("carewatch_rpc_latency_seconds_bucket{method=\"" + m + "\",le=\"" + le + "\"} " +
           std::to_string(h.buckets[i]));
    }
    line("carewatch_rpc_latency_seconds_bucket{method=\"" + m + "\",le=\"+Inf\"} " +
         std::to_string(h.count));
    line("carewatch_rpc_latency_seconds_sum{method=\"" + m + "\"} " + std::to_string(h.sum));
    line("carewatch_rpc_latency_seconds_count{method=\"" + m + "\"} " + std::to_string(h.count));
  }
  scalar("carewatch_reports_evaluated_total", "counter", "Reports evaluated.",
         std::to_string(reports_.load()));
  line("# HELP carewatch_flags_total Flags raised, by rule.");
  line("# TYPE carewatch_flags_total counter");
  for (const auto& [r, v] : flags_)
    line("carewatch_flags_total{rule=\"" + r + "\"} " + std::to_string(v));
  labelled("carewatch_obligations", "gauge", "Obligations by state.", "state",
           {{"open", std::to_string(g.open)},
            {"met", std::to_string(g.met)},
            {"discharged", std::to_string(g.discharged)},
            {"breached", std::to_string(g.breached)}});
  scalar("carewatch_findings_open", "gauge", "Systemic findings open.",
         std::to_string(g.findings_open));
  scalar("carewatch_ledger_events", "gauge", "Events in the ledger.",
         std::to_string(g.ledger_size));
  scalar("carewatch_ledger_write_retries_total", "counter",
         "Ledger writes retried after a transient failure.",
         std::to_string(g.ledger_write_retries));
  scalar("carewatch_ledger_commits_total", "counter",
         "Transactions the ledger wrote: reports acknowledged divided by this is the mean group "
         "commit.",
         std::to_string(g.ledger_commits));
  labelled(
      "carewatch_report_lookups_total", "counter",
      "Idempotency lookups of submitted reports, by what answered: the in-memory filter of "
      "indexed ids (a report never seen) or the index.",
      "answer",
      {{"filter", std::to_string(g.lookups_filtered)}, {"index", std::to_string(g.lookups_read)}});
  scalar("carewatch_ledger_wal_restarts_deferred_total", "counter",
         "SQLite WAL restarts put off because another reader held an old snapshot (the WAL "
         "grows until it lets go; writes go on).",
         std::to_string(g.wal_restarts_deferred));
  scalar("carewatch_report_filter_ready", "gauge",
         "Whether the filter of indexed report ids holds every id and answers lookups (SQLite "
         "ledgers, once its scan at start is done).",
         g.lookup_filter_ready ? "1" : "0");
  labelled("carewatch_waiting_bytes", "gauge",
           "Bytes of the requests read and not yet answered, by kind of call "
           "(max_waiting_bytes).",
           "calls",
           {{"unary", std::to_string(g.waiting_unary_bytes)},
            {"stream", std::to_string(g.waiting_stream_bytes)}});
  scalar("carewatch_waiting_calls", "gauge",
         "Unary calls waiting for the ledger, or on a queueing replica for the writer's answer "
         "(max_waiting_calls).",
         std::to_string(g.waiting_calls));
  scalar("carewatch_open_streams", "gauge",
         "EvaluateStream and Signals.Subscribe streams open (max_streams).",
         std::to_string(g.open_streams));
  if (g.queue_depth >= 0) {
    scalar("carewatch_queue_depth", "gauge",
           "Commands queued by replicas and not yet sequenced by the writer (PostgreSQL ledgers; "
           "max_queued).",
           std::to_string(g.queue_depth));
  }
  line("# HELP carewatch_ruleset_info The rule set serving.");
  line("# TYPE carewatch_ruleset_info gauge");
  line("carewatch_ruleset_info{version=\"" + g.ruleset_version + "\"} 1");
  line("# HELP carewatch_last_reload_success Whether the last reload succeeded.");
  line("# TYPE carewatch_last_reload_success gauge");
  line(std::string("carewatch_last_reload_success ") + (g.last_reload_ok ? "1" : "0"));
  line(
      "# HELP carewatch_last_reload_timestamp_seconds When the rules were last loaded (unix "
      "seconds).");
  line("# TYPE carewatch_last_reload_timestamp_seconds gauge");
  line("carewatch_last_reload_timestamp_seconds " + std::to_string(g.last_reload_time));
  line(
      "# HELP carewatch_unknown_values_total Reports with a categorical value outside the "
      "vocabulary, by field.");
  line("# TYPE carewatch_unknown_values_total counter");
  for (const auto& [f, n] : unknown_values_)
    line("carewatch_unknown_values_total{field=\"" + f + "\"} " + std::to_string(n));
  labelled("carewatch_stream_reports_total", "counter",
           "EvaluateStream reports, by the thread that evaluated them: the stream's own (as many "
           "active streams as CPUs, or more) or the shared workers.",
           "evaluated_on",
           {{"stream", std::to_string(stream_inline_.load())},
            {"workers", std::to_string(stream_workers_.load())}});
  scalar("carewatch_sweep_errors_total", "counter",
         "Deadline sweeps that failed (no deadline enforced).",
         std::to_string(sweep_errors_.load()));
  return out;
}

std::string GrpcCodeName(int code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "code " + std::to_string(code);
}

void Log(const char* level, const std::string& msg,
         std::initializer_list<std::pair<const char*, std::string>> fields) {
  auto now = std::chrono::system_clock::now();
  time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[40];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line = std::string("{\"time\":\"") + ts + "." +
                     (ms < 100 ? (ms < 10 ? "00" : "0") : "") + std::to_string(ms) +
                     "Z\",\"level\":\"" + level + "\",\"msg\":\"" + Escape(msg) + "\"";
  for (const auto& [k, v] : fields) line += std::string(",\"") + k + "\":\"" + Escape(v) + "\"";
  line += "}\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace carewatch::server
