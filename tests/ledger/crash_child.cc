// Appends events to a ledger in a loop and prints "ack SEQ ID" after each
// append is durable, until killed. Used by the SIGKILL crash test.
//   ledger_crash_child URL TAG [SIGNING_KEY_PATH]
#include <cstdio>
#include <string>

#include "engine/ledger/ledger.h"

int main(int argc, char** argv) {
  using namespace carewatch;
  if (argc < 3) return 2;
  ledger::LedgerOptions options;
  options.url = argv[1];
  if (argc > 3) options.signing_key_path = argv[3];
  options.checkpoint_every = 7;
  options.checkpoint_interval_ms = 20;
  std::unique_ptr<ledger::Ledger> l;
  Status s = ledger::Ledger::Open(options, &l);
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", s.message().c_str());
    return 1;
  }
  std::string tag = argv[2];
  for (int i = 0;; ++i) {
    std::vector<v1::LedgerEvent> events(1 + i % 3);
    for (size_t k = 0; k < events.size(); ++k) {
      events[k].set_type(v1::ACTION_RECORDED);
      events[k].mutable_time()->set_seconds(1767607200 + i);
      events[k].mutable_action_recorded()->set_report_id(tag + "-" + std::to_string(i) + "-" +
                                                         std::to_string(k));
    }
    s = l->Append(&events);
    if (!s.ok()) {
      std::fprintf(stderr, "append: %s\n", s.message().c_str());
      return 1;
    }
    for (const auto& e : events) {
      std::printf("ack %llu %s\n", static_cast<unsigned long long>(e.seq()),
                  e.action_recorded().report_id().c_str());
    }
    std::fflush(stdout);
  }
}
