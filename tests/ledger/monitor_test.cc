#include "engine/ledger/monitor.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/ledger/keys.h"
#include "engine/ledger/merkle.h"
#include "engine/ledger/note.h"

namespace carewatch::ledger {
namespace {

constexpr char kOrigin[] = "example.org/monitored";

// A log the test signs checkpoints of, as the server (which holds the key)
// would: the monitor must catch what contradicts what it accepted before.
class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(SigningKey::FromRawSeed(std::string(32, '\x22'), &key_).ok());
    ASSERT_TRUE(
        TrustedKey::FromVerifierKey(VerifierKeyString(kOrigin, key_->PublicRaw()), &trusted_).ok());
    for (int i = 0; i < 40; ++i) tree_.Append(LeafHash("event " + std::to_string(i)));
  }

  v1::Checkpoint Signed(uint64_t size, const Hash& root) {
    v1::Checkpoint c;
    c.set_tree_size(size);
    c.set_root_hash(root);
    std::string note;
    EXPECT_TRUE(SignNote(CheckpointBody(kOrigin, size, root, 1), kOrigin, *key_, &note).ok());
    c.set_note(note);
    return c;
  }
  v1::Checkpoint At(uint64_t size) { return Signed(size, tree_.Root(size)); }

  // Answers with the true proof, and counts the calls.
  ConsistencyFetch Honest() {
    return [this](uint64_t first, uint64_t second, std::vector<Hash>* proof) {
      ++fetches_;
      *proof = tree_.ConsistencyProof(first, second);
      return Status::Ok();
    };
  }
  ConsistencyFetch Answering(std::vector<Hash> given) {
    return [given](uint64_t, uint64_t, std::vector<Hash>* proof) {
      *proof = given;
      return Status::Ok();
    };
  }

  std::unique_ptr<SigningKey> key_;
  std::unique_ptr<TrustedKey> trusted_;
  MerkleTree tree_;
  int fetches_ = 0;
};

TEST_F(MonitorTest, AcceptsALogThatGrowsAndRemembersTheLastCheckpoint) {
  MonitorState state;
  ASSERT_TRUE(MonitorCheck(*trusted_, At(10), Honest(), &state).ok());
  EXPECT_EQ(fetches_, 0) << "a first check has nothing to be consistent with";
  EXPECT_EQ(state.size, 10u);
  EXPECT_EQ(state.root, tree_.Root(10));
  ASSERT_TRUE(MonitorCheck(*trusted_, At(10), Honest(), &state).ok());
  EXPECT_EQ(fetches_, 0) << "the same checkpoint again needs no proof";
  Status s = MonitorCheck(*trusted_, At(33), Honest(), &state);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(fetches_, 1);
  EXPECT_EQ(state.size, 33u);
  EXPECT_EQ(state.root, tree_.Root(33));
}

TEST_F(MonitorTest, ASplitViewIsAnAlertAndLeavesTheStateAsItWas) {
  MonitorState state;
  ASSERT_TRUE(MonitorCheck(*trusted_, At(20), Honest(), &state).ok());
  const MonitorState before = state;
  auto expect_alert = [&](const v1::Checkpoint& c, const ConsistencyFetch& fetch,
                          const std::string& why) {
    Status s = MonitorCheck(*trusted_, c, fetch, &state);
    EXPECT_EQ(s.code(), Status::Code::kDataLoss) << why << ": " << s.message();
    EXPECT_EQ(state.size, before.size) << why;
    EXPECT_EQ(state.root, before.root) << why;
    return s.message();
  };
  EXPECT_NE(expect_alert(At(12), Honest(), "rolled back").find("the log shrank from 20 to 12"),
            std::string::npos);
  EXPECT_NE(expect_alert(Signed(20, LeafHash("other")), Honest(), "another root, same size")
                .find("two different roots for size 20"),
            std::string::npos);
  // A larger tree that does not extend the one accepted: another history.
  MerkleTree other;
  for (int i = 0; i < 30; ++i) other.Append(LeafHash("rewritten " + std::to_string(i)));
  EXPECT_NE(expect_alert(Signed(30, other.Root(30)), Answering(other.ConsistencyProof(20, 30)),
                         "rewritten history")
                .find("not consistent with the one at size 20"),
            std::string::npos);
  // The true checkpoint with a proof that is not one.
  std::vector<Hash> proof = tree_.ConsistencyProof(20, 30);
  std::vector<Hash> bent = proof;
  bent.back()[0] ^= 1;
  expect_alert(At(30), Answering(bent), "altered proof");
  std::vector<Hash> short_hash = proof;
  short_hash[0].pop_back();
  EXPECT_NE(expect_alert(At(30), Answering(short_hash), "31-byte hash").find("31 bytes"),
            std::string::npos);
  EXPECT_NE(expect_alert(At(30), Answering(std::vector<Hash>(100000, proof[0])), "endless proof")
                .find("holds 100000 hashes"),
            std::string::npos);
  // Not the key's word, or not about the tree it says.
  std::unique_ptr<SigningKey> stranger;
  ASSERT_TRUE(SigningKey::FromRawSeed(std::string(32, '\x33'), &stranger).ok());
  v1::Checkpoint forged = At(30);
  std::string note;
  ASSERT_TRUE(
      SignNote(CheckpointBody(kOrigin, 30, tree_.Root(30), 1), kOrigin, *stranger, &note).ok());
  forged.set_note(note);
  EXPECT_NE(expect_alert(forged, Honest(), "another key").find("not signed by the published key"),
            std::string::npos);
  v1::Checkpoint relabelled = At(30);
  relabelled.set_tree_size(40);
  relabelled.set_root_hash(tree_.Root(40));
  EXPECT_NE(expect_alert(relabelled, Honest(), "fields that are not the note's")
                .find("the signed note names another tree"),
            std::string::npos);
  // The honest next checkpoint is still accepted after all of that.
  ASSERT_TRUE(MonitorCheck(*trusted_, At(30), Honest(), &state).ok());
  EXPECT_EQ(state.size, 30u);
}

TEST_F(MonitorTest, AServerThatCannotAnswerIsNotAnAlert) {
  MonitorState state;
  ASSERT_TRUE(MonitorCheck(*trusted_, At(5), Honest(), &state).ok());
  auto down = [](uint64_t, uint64_t, std::vector<Hash>*) {
    return Status::Unavailable("GetConsistencyProof: connection refused");
  };
  Status s = MonitorCheck(*trusted_, At(9), down, &state);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.message();
  EXPECT_EQ(state.size, 5u);
}

TEST(MonitorState, ItsFileRoundTripsAndAnythingElseIsAnError) {
  MonitorState state{UINT64_MAX, LeafHash("root")};
  const std::string text = FormatMonitorState(state);
  MonitorState back;
  ASSERT_TRUE(ParseMonitorState(text, &back).ok()) << text;
  EXPECT_EQ(back.size, UINT64_MAX);
  EXPECT_EQ(back.root, state.root);
  const std::string hex = text.substr(text.find(' ') + 1, 64);
  EXPECT_NE(ParseMonitorState("", &back).message().find("is empty"), std::string::npos);
  EXPECT_NE(ParseMonitorState("\n \n", &back).message().find("is empty"), std::string::npos);
  for (const std::string& bad : std::vector<std::string>{
           "18446744073709551616 " + hex, "-1 " + hex, "+5 " + hex, "5", "5 " + hex.substr(1),
           "5 " + hex + "00", "5  " + hex, "5 " + std::string(64, 'A'), "5 " + std::string(64, 'g'),
           "garbage here\n"}) {
    Status s = ParseMonitorState(bad, &back);
    EXPECT_NE(s.message().find("expected 'SIZE HEXROOT'"), std::string::npos)
        << "'" << bad << "': " << s.message();
  }
  EXPECT_EQ(back.size, UINT64_MAX) << "a refused text leaves the state as it was";
}

}  // namespace
}  // namespace carewatch::ledger
