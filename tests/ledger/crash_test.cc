// Kills a process appending to the ledger with SIGKILL, many times, and
// checks that every acknowledged event is present and the log verifies.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "engine/ledger/ledger.h"
#include "engine/ledger/verify.h"
#include "tests/test_ledger.h"

namespace carewatch::ledger {
namespace {

TEST(LedgerCrash, AcknowledgedEventsSurviveSigkill) {
  std::string dir = ::testing::TempDir() + "/cw-crash-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string url = carewatch::testing::FreshLedgerUrl(dir);
  std::string key = dir + "/ledger.key";
  std::map<uint64_t, std::string> acked;
  std::mt19937 rng(42);
  constexpr int kRounds = 12;
  for (int round = 0; round < kRounds; ++round) {
    int pipefd[2];
    ASSERT_EQ(pipe(pipefd), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(pipefd[1], STDOUT_FILENO);
      close(pipefd[0]);
      std::string tag = "round" + std::to_string(round);
      execl(CRASH_CHILD_PATH, CRASH_CHILD_PATH, url.c_str(), tag.c_str(), key.c_str(), nullptr);
      _exit(127);
    }
    close(pipefd[1]);
    // Once it has acknowledged its first append (however long opening the
    // ledger took), let it run, then kill it at an arbitrary moment.
    std::string out;
    char buf[4096];
    ssize_t n;
    for (int waited = 0; out.find('\n') == std::string::npos && waited < 200; ++waited) {
      pollfd p{pipefd[0], POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        n = read(pipefd[0], buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 250));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child must still have been running";
    // Read every acknowledgement it printed before dying.
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(pipefd[0]);
    size_t pos = 0;
    int lines = 0;
    while ((pos = out.find("ack ", pos)) != std::string::npos) {
      size_t end = out.find('\n', pos);
      if (end == std::string::npos) break;  // a torn last line was never acknowledged
      unsigned long long seq = 0;
      char id[128] = {0};
      if (std::sscanf(out.c_str() + pos, "ack %llu %127s", &seq, id) == 2) {
        acked[seq] = id;
        ++lines;
      }
      pos = end + 1;
    }
    EXPECT_GT(lines, 0) << "round " << round << " acknowledged nothing";
  }
  std::unique_ptr<LedgerBackend> backend;
  ASSERT_TRUE(OpenBackend(url, true, &backend).ok());
  std::vector<StoredEvent> rows;
  ASSERT_TRUE(backend->ReadEvents(1, 10000000, &rows).ok());
  std::map<uint64_t, std::string> stored;
  for (const auto& row : rows) {
    v1::LedgerEvent e;
    ASSERT_TRUE(e.ParseFromString(row.payload));
    stored[row.seq] = e.action_recorded().report_id();
  }
  for (const auto& [seq, id] : acked) {
    auto it = stored.find(seq);
    ASSERT_NE(it, stored.end()) << "acknowledged event " << seq << " was lost";
    EXPECT_EQ(it->second, id) << "event " << seq << " holds something else";
  }
  VerifyReport r = VerifyLedger(*backend, "");
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GE(rows.size(), acked.size());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::ledger
