// libFuzzer target: the statistics pages of the evidence report, built from
// what a carewatchd answers to GetStats (`carewatch report --server`). The
// server is the party held to account, so its counts, percentages, period
// keys and service names may be anything; the page must still render.
//
// Byte 0 picks the period (month, quarter, year) and whether the report
// covers a range; bytes 1..8, when it does, are the range's start (seconds,
// little-endian; its end is open). The rest is one GetStatsResponse, in the
// protobuf JSON mapping when it starts with '{' (the seeds), else in the
// binary encoding (as it comes over the wire): its `services` are the services listed (at most 8,
// to keep runs fast), and each gets its `periods`, read through
// ledger::FromProto as the command reads every page. The checkpoint on the
// cover is empty: the evidence side of the page is fuzz_evidence_bundle's.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "carewatch/v1/service.pb.h"
#include "engine/ledger/audit.h"
#include "engine/report/report.h"
#include "engine/rules/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace carewatch;
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 is a parse failure
    return true;
  }();
  (void)quiet;
  if (size < 1) return 0;
  static const char* const kPeriods[] = {"month", "quarter", "year"};
  const std::string period = kPeriods[(data[0] & 3) % 3];
  const bool ranged = data[0] & 4;
  size_t offset = 1;
  int64_t from = INT64_MIN;
  if (ranged) {
    if (size < 9) return 0;
    std::memcpy(&from, data + 1, sizeof(from));
    offset = 9;
  }
  const std::string_view input(reinterpret_cast<const char*>(data + offset), size - offset);
  v1::GetStatsResponse resp;
  if (!input.empty() && input.front() == '{') {
    if (!google::protobuf::util::JsonStringToMessage(std::string(input), &resp).ok()) return 0;
  } else if (!resp.ParseFromArray(input.data(), static_cast<int>(input.size()))) {
    return 0;
  }

  report::ReportData page;
  page.cover.source = "carewatchd fuzz";
  page.cover.period = period;
  page.cover.from = from;
  page.cover.generated_at = 1796083200;  // 2026-12-01
  std::string first_shown;
  if (from != INT64_MIN) first_shown = ledger::PeriodOf(rules::FormatDate(from), period);
  int listed = 0;
  for (const std::string& service : resp.services()) {
    if (++listed > 8) break;
    report::ServiceTrend t;
    t.service_id = service;
    t.first_shown = first_shown;
    for (const auto& p : resp.periods()) t.periods.push_back(ledger::FromProto(p));
    page.trends.push_back(std::move(t));
  }
  if (report::RenderHtml(page).empty()) __builtin_trap();
  return 0;
}
