#include "engine/ledger/report_filter.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

namespace carewatch::ledger {
namespace {

// Every id added is "maybe" (a "no" would let a retry be recorded twice);
// ids never added are "no" nearly always at the size it is built for.
TEST(ReportFilter, NeverDeniesAnAddedIdAndRarelyClaimsANewOne) {
  ReportFilter f;
  constexpr int kIds = 200000;
  for (int i = 0; i < kIds; ++i) f.Add("svc", "report-" + std::to_string(i));
  EXPECT_EQ(f.added(), static_cast<uint64_t>(kIds));
  for (int i = 0; i < kIds; ++i) ASSERT_TRUE(f.MayContain("svc", "report-" + std::to_string(i)));
  int claimed = 0;
  for (int i = 0; i < kIds; ++i) claimed += f.MayContain("svc", "other-" + std::to_string(i));
  EXPECT_LT(claimed, kIds / 1000);
  // The service is part of the id, and so is where its name ends.
  int moved = 0;
  for (int i = 0; i < 1000; ++i) {
    moved += f.MayContain("sv", "creport-" + std::to_string(i));
    moved += f.MayContain("other", "report-" + std::to_string(i));
  }
  EXPECT_LT(moved, 10);
}

// Far past its capacity it answers "maybe" more often, and still never
// "no" for an id it holds.
TEST(ReportFilter, OverfullItStillNeverDeniesAnAddedId) {
  ReportFilter f(4096);
  for (int i = 0; i < 50000; ++i) f.Add("svc", std::to_string(i));
  for (int i = 0; i < 50000; ++i) ASSERT_TRUE(f.MayContain("svc", std::to_string(i)));
  // Long ids (past the hashing's stack buffer) too.
  const std::string long_id(1000, 'x');
  f.Add("svc", long_id);
  EXPECT_TRUE(f.MayContain("svc", long_id));
}

// A saved filter answers as the one saved (its key and bits, its count);
// bytes that are not a whole saved filter are refused, never half used.
TEST(ReportFilter, ASavedFilterAnswersAsTheOneSavedAndDamagedBytesAreRefused) {
  ReportFilter f(1 << 16);
  for (int i = 0; i < 3000; ++i) f.Add("svc", "report-" + std::to_string(i));
  const std::string bytes = f.Save();
  std::string error;
  std::unique_ptr<ReportFilter> g = ReportFilter::Restore(bytes, &error);
  ASSERT_TRUE(g) << error;
  EXPECT_EQ(g->added(), 3000u);
  EXPECT_FALSE(g->complete()) << "complete only once its owner says so";
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(g->MayContain("svc", "report-" + std::to_string(i)));
  for (int i = 0; i < 3000; ++i) {
    const std::string id = "other-" + std::to_string(i);
    ASSERT_EQ(g->MayContain("svc", id), f.MayContain("svc", id)) << id;
  }
  EXPECT_EQ(g->Save(), bytes);
  for (const std::string& bad :
       {std::string(), bytes.substr(0, 20), bytes.substr(0, bytes.size() - 1), bytes + "x",
        "cwfilt02" + bytes.substr(8)}) {
    error.clear();
    EXPECT_FALSE(ReportFilter::Restore(bad, &error)) << bad.size();
    EXPECT_FALSE(error.empty());
  }
  // Stamped: given back, complete, only for the ledger it was saved from.
  const std::string stamped = f.SaveStamped("cwledger 12:3:40");
  std::unique_ptr<ReportFilter> h = ReportFilter::RestoreStamped(stamped, "cwledger 12:3:40");
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->complete());
  EXPECT_TRUE(h->MayContain("svc", "report-7"));
  EXPECT_FALSE(ReportFilter::RestoreStamped(stamped, "cwledger 13:3:40"));
  EXPECT_FALSE(ReportFilter::RestoreStamped(stamped, "cwledger 12:3:4"));
  EXPECT_FALSE(ReportFilter::RestoreStamped(stamped, ""));
  EXPECT_FALSE(ReportFilter::RestoreStamped(bytes, "cwledger 12:3:40"));
}

// The writer adds while lookups read; every id added before a reader
// checks it is seen.
TEST(ReportFilter, AddsAndLookupsRunTogether) {
  ReportFilter f;
  std::thread writer([&] {
    for (int i = 0; i < 50000; ++i) f.Add("svc", "a" + std::to_string(i));
  });
  for (int i = 0; i < 50000; ++i) (void)f.MayContain("svc", "b" + std::to_string(i));
  writer.join();
  for (int i = 0; i < 50000; ++i) ASSERT_TRUE(f.MayContain("svc", "a" + std::to_string(i)));
  EXPECT_FALSE(f.complete());
  f.MarkComplete();
  EXPECT_TRUE(f.complete());
}

}  // namespace
}  // namespace carewatch::ledger
