// Queueing replicas and the writer's sequencer on a PostgreSQL ledger,
// without gRPC: many threads queue reports and actions the way queueing
// replicas do, and one sequencer records them (also run under
// ThreadSanitizer by `make tsan-test`).
#include "engine/server/replica.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "engine/ledger/ledger.h"
#include "engine/ledger/pg_backend.h"
#include "engine/rules/loader.h"
#include "tests/test_ledger.h"
#include "tests/testing.h"

namespace carewatch::server {
namespace {

int64_t WallSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::shared_ptr<const eval::Evaluator> Evaluator() {
  const std::string pack =
      "pack: t\nversion: \"1\"\nduties:\n"
      "  - {id: d, deadline: 1h, actions: [remove_content, report_to_nca]}\n"
      "rules:\n"
      "  - {id: r, duty: d, severity: high, when: {field: text, phrases: [signal]}}\n";
  rules::LoadResult loaded =
      rules::LoadRuleSetFromSources({{"pack.yaml", pack}}, testing::FakeFiles{}.Reader());
  EXPECT_TRUE(loaded.ruleset) << testing::Describe(loaded.diagnostics);
  std::unique_ptr<eval::Evaluator> e;
  EXPECT_TRUE(eval::Evaluator::Create(loaded.ruleset, {}, &e).ok());
  return std::shared_ptr<const eval::Evaluator>(std::move(e));
}

v1::ContentReport Report(const std::string& id, const std::string& text) {
  v1::ContentReport r;
  r.set_report_id(id);
  r.set_service_id("svc");
  r.mutable_received_at()->set_seconds(WallSeconds());
  r.set_text(text);
  return r;
}

// A fresh ledger in a new directory `*dir` named after `name`.
ledger::LedgerOptions FreshLedger(const std::string& name, std::string* dir) {
  *dir = ::testing::TempDir() + "/cw-" + name + "-" + std::to_string(::getpid());
  std::filesystem::create_directories(*dir);
  ledger::LedgerOptions lo;
  lo.url = carewatch::testing::FreshLedgerUrl(*dir);
  lo.signing_key_path = *dir + "/ledger.key";
  return lo;
}

TEST(ReplicaQueue, CommandsQueuedFromManyThreadsAreRecordedOnceAndAnswered) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  std::string dir;
  const ledger::LedgerOptions lo = FreshLedger("replica", &dir);
  std::unique_ptr<ledger::Ledger> ledger;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &ledger).ok());
  duty::DutyEngineOptions options;
  options.hmac_key = "k";
  options.now = WallSeconds;
  duty::DutyEngine engine(ledger.get(), options);
  ASSERT_TRUE(engine.Recover().ok());
  auto evaluator = Evaluator();
  ASSERT_TRUE(engine.Activate(evaluator).ok());

  // The writer's side.
  std::unique_ptr<ledger::CommandQueue> writer_queue;
  ASSERT_TRUE(ledger::OpenCommandQueue(lo.url, 1000, &writer_queue).ok());
  std::atomic<int> errors{0};
  auto sequencer = std::make_unique<Sequencer>(
      writer_queue.get(),
      [&](const std::vector<ledger::QueuedRow>& rows, std::vector<ledger::QueueAnswer>* out) {
        return SequenceCommands(engine, nullptr, QueueKey("k"), rows, out);
      },
      WallSeconds, [&](const Status& s) { errors += s.ok() ? 0 : 1; });

  // A queueing replica's side.
  QueueingReplica rep;
  ASSERT_TRUE(ledger::OpenCommandQueue(lo.url, 1000, &rep.queue).ok());
  rep.answers = std::make_unique<AnswerWaiter>(rep.queue.get());
  rep.name = "test:1";
  rep.hmac_key = "k";
  ASSERT_TRUE(rep.tokens.Load(dir + "/signals.key").ok());
  rep.now = WallSeconds;
  rep.evaluator = evaluator;

  // Threads t and t + 4 submit the same reports at once (retries to two
  // replicas); every third report matches nothing; every flagged one gets
  // an action.
  constexpr int kThreads = 8, kReports = 30;
  std::mutex mu;
  std::map<std::string, std::vector<uint64_t>> seqs;
  std::atomic<int> actions{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kReports; ++i) {
        const std::string id = "r" + std::to_string(t % 4) + "-" + std::to_string(i);
        v1::ContentReport r = Report(id, i % 3 == 0 ? "nothing here" : "a signal here");
        r.mutable_received_at()->set_seconds(1767607200 + i);
        int64_t qid = 0;
        v1::QueuedResult res;
        Status s;
        if (t % 2 == 1) {
          // Half the threads wait as the replica's unary calls do, without a
          // thread (the answer comes on the waiter's thread); two of them
          // (1 and 3, each beside a thread that pushes and waits for the
          // commit) also push so, the commit on the queue's thread.
          std::promise<std::pair<Status, v1::QueuedResult>> answered;
          auto await = [&rep, &answered](const Status& pushed, int64_t id) {
            if (!pushed.ok()) return answered.set_value({pushed, {}});
            rep.AwaitAsync(id, [&answered](const Status& st, v1::QueuedResult got) {
              answered.set_value({st, std::move(got)});
            });
          };
          if (t < 4) {
            rep.PushReportAsync(r, await);
          } else {
            s = rep.PushReport(r, &qid);
            await(s, qid);
          }
          std::tie(s, res) = answered.get_future().get();
        } else {
          s = rep.PushReport(r, &qid);
          if (s.ok()) s = rep.Await(qid, &res);
        }
        if (!s.ok()) {
          ++failures;
          ADD_FAILURE() << id << ": " << s.message();
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          seqs[id].push_back(res.verdict().ledger_seq());
        }
        if (t < 4 && i % 3 != 0) {
          v1::RecordActionRequest a;
          a.set_service_id("svc");
          a.set_report_id(id);
          a.set_action("remove_content");
          a.mutable_taken_at()->set_seconds(1767607200 + i + 1);
          a.set_actor("mod");
          if (t % 2 == 1) {
            std::promise<std::pair<Status, v1::QueuedResult>> answered;
            rep.PushActionAsync(a, [&rep, &answered](const Status& pushed, int64_t id) {
              if (!pushed.ok()) return answered.set_value({pushed, {}});
              rep.AwaitAsync(id, [&answered](const Status& st, v1::QueuedResult got) {
                answered.set_value({st, std::move(got)});
              });
            });
            std::tie(s, res) = answered.get_future().get();
          } else {
            s = rep.PushAction(a, &qid);
            if (s.ok()) s = rep.Await(qid, &res);
          }
          if (s.ok() && res.ledger_seq() > 0 && res.obligations_size() == 1) {
            ++actions;
          } else {
            ADD_FAILURE() << "action on " << id << ": " << s.message();
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(actions.load(), 4 * (kReports - kReports / 3));
  for (const auto& [id, got] : seqs) {
    ASSERT_EQ(got.size(), 2u) << id;
    EXPECT_EQ(got[0], got[1]) << id << ": both submissions get the one record";
  }

  // A malformed command is answered with a precise error, and recorded not.
  int64_t bad = 0;
  ASSERT_TRUE(rep.queue
                  ->Push("svc", "", "", SealCommand(QueueKey("k"), std::string("\xff\xff\xff", 3)),
                         0, &bad, nullptr)
                  .ok());
  v1::QueuedResult res;
  Status s = rep.Await(bad, &res);
  EXPECT_EQ(s.code(), Status::Code::kDataLoss) << s.message();
  EXPECT_NE(s.message().find("is malformed"), std::string::npos) << s.message();
  // A well-formed command that no carewatchd of this deployment sealed (a
  // row inserted with the database's credentials), unsealed or sealed
  // under another key, is refused, and recorded not (the count of actions
  // below).
  v1::QueuedCommand forged;
  v1::RecordActionRequest* a = forged.mutable_action();
  a->set_service_id("svc");
  a->set_report_id("r0-1");
  a->set_action("report_to_nca");
  a->mutable_taken_at()->set_seconds(1767607300);
  a->set_actor("mod");
  const std::string body = ledger::SerializeDeterministic(forged);
  for (const std::string& queued : {body, SealCommand(QueueKey("other"), body)}) {
    ASSERT_TRUE(rep.queue->Push("svc", "", "", queued, 0, &bad, nullptr).ok());
    s = rep.Await(bad, &res);
    EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.message();
    EXPECT_NE(s.message().find("is not sealed by a carewatchd of this deployment"),
              std::string::npos)
        << s.message();
  }
  EXPECT_TRUE(SealedUnder(QueueKey("k"), SealCommand(QueueKey("k"), body)));
  // A writer of an older carewatchd reads a sealed command as before.
  v1::QueuedCommand read;
  ASSERT_TRUE(read.ParseFromString(SealCommand(QueueKey("k"), body)));
  EXPECT_EQ(read.action().report_id(), "r0-1");
  EXPECT_EQ(read.mac().size(), 32u);

  sequencer.reset();
  int64_t depth = -1;
  ASSERT_TRUE(rep.queue->Depth(&depth).ok());
  EXPECT_EQ(depth, 0);
  EXPECT_EQ(errors.load(), 0);
  // The log: each flagged report once, each action once.
  std::map<std::string, int> flagged;
  int recorded_actions = 0;
  for (uint64_t from = 1;;) {
    std::vector<ledger::StoredEvent> rows;
    ASSERT_TRUE(ledger->backend().ReadEvents(from, 1000, &rows).ok());
    if (rows.empty()) break;
    for (const auto& row : rows) {
      v1::LedgerEvent e;
      ASSERT_TRUE(e.ParseFromString(row.payload));
      if (e.type() == v1::REPORT_FLAGGED) ++flagged[e.report_flagged().report_id()];
      if (e.type() == v1::ACTION_RECORDED) ++recorded_actions;
    }
    from = rows.back().seq + 1;
  }
  EXPECT_EQ(flagged.size(), static_cast<size_t>(4 * (kReports - kReports / 3)));
  for (const auto& [id, n] : flagged) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(recorded_actions, actions.load());
  std::filesystem::remove_all(dir);
}

// A push without a thread is committed like any other, and refused once
// the queue stops pushing. A wait without a thread ends as Wait does: not
// answered within its time (a retry is safe), or at once when the waits are
// aborted, and so does every later one; each callback is called once.
TEST(ReplicaQueue, PushesAndWaitsWithoutAThread) {
  if (!carewatch::testing::OnPostgres()) GTEST_SKIP() << "PostgreSQL only: the replicas' queue";
  std::string dir;
  const ledger::LedgerOptions lo = FreshLedger("replica-async", &dir);
  std::unique_ptr<ledger::Ledger> ledger;
  ASSERT_TRUE(ledger::Ledger::Open(lo, &ledger).ok());
  std::unique_ptr<ledger::CommandQueue> queue;
  ASSERT_TRUE(ledger::OpenCommandQueue(lo.url, 1000, &queue).ok());
  AnswerWaiter answers(queue.get());
  int64_t id = 0;  // no sequencer: nobody answers it
  ASSERT_TRUE(queue->Push("svc", "", "", SealCommand(QueueKey("k"), "x"), 0, &id, nullptr).ok());
  // An asynchronous push is committed and numbered after it.
  std::promise<std::pair<Status, int64_t>> pushed;
  queue->PushAsync("svc", "", "", SealCommand(QueueKey("k"), "y"), 0,
                   [&pushed](const Status& s, int64_t got, const std::string&) {
                     pushed.set_value({s, got});
                   });
  auto [push_status, next] = pushed.get_future().get();
  ASSERT_TRUE(push_status.ok()) << push_status.message();
  EXPECT_GT(next, id);
  int64_t depth = 0;
  ASSERT_TRUE(queue->Depth(&depth).ok());
  EXPECT_EQ(depth, 2);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Status> ended;
  auto wait = [&](int timeout_ms) {
    answers.WaitAsync(id, timeout_ms, [&](const Status& s, v1::QueuedResult) {
      std::lock_guard<std::mutex> lock(mu);
      ended.push_back(s);
      cv.notify_all();
    });
  };
  auto await_ended = [&](size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return ended.size() >= n; });
  };
  wait(200);
  wait(60000);
  ASSERT_TRUE(await_ended(1));
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(ended.size(), 1u) << "the longer wait goes on";
    EXPECT_EQ(ended[0].code(), Status::Code::kUnavailable);
    EXPECT_NE(ended[0].message().find("did not answer within 200 ms"), std::string::npos)
        << ended[0].message();
    EXPECT_NE(ended[0].message().find("a retry is safe"), std::string::npos);
  }
  answers.Abort("this replica is stopping");
  ASSERT_TRUE(await_ended(2));
  wait(60000);  // after the abort: ended at once
  ASSERT_TRUE(await_ended(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(ended.size(), 3u) << "each callback once";
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(ended[i].code(), Status::Code::kUnavailable);
    EXPECT_NE(ended[i].message().find("not answered: this replica is stopping"), std::string::npos)
        << ended[i].message();
  }
  // A queue that stopped pushing refuses the next at once, storing nothing.
  queue->StopPushes();
  Status refused;
  queue->PushAsync("svc", "", "", SealCommand(QueueKey("k"), "z"), 0,
                   [&refused](const Status& s, int64_t, const std::string&) { refused = s; });
  EXPECT_EQ(refused.code(), Status::Code::kUnavailable) << refused.message();
  ASSERT_TRUE(queue->Depth(&depth).ok());
  EXPECT_EQ(depth, 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace carewatch::server
