#ifndef CAREWATCH_ENGINE_SIGNALS_SIGNALS_H_
#define CAREWATCH_ENGINE_SIGNALS_SIGNALS_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "carewatch/v1/ledger.pb.h"
#include "carewatch/v1/report.pb.h"
#include "engine/common/status.h"
#include "engine/duty/duty_engine.h"
#include "engine/ledger/ledger.h"
#include "engine/signals/oprf.h"

namespace carewatch::signals {

struct SignalOptions {
  // The deployment's OPRF key is derived (RFC 9497 DeriveKeyPair, info
  // "carewatch signals v1") from the 32-byte seed in this file, created
  // mode 0600 when missing. A new file is a new token space (rotation).
  std::string key_path = "data/signals.key";
  // Tokens of different services meet when recorded within this long of
  // each other (server time).
  int64_t window_seconds = 30 * 86400;
  // An alert is raised only when at least this many services hold a token
  // (never fewer than 2).
  int min_services = 2;
  // Tokens are deleted this long after they were recorded.
  int64_t retention_seconds = 180 * 86400;
  // Blinded elements each service may have evaluated per UTC day.
  int64_t daily_quota = 10000;
  // Services that opted in to being named to each other in alerts; a name
  // is shown only when both the alerted and the named service are listed.
  std::vector<std::string> name_sharing;
  // Key for alert ids (the ledger's HMAC key).
  std::string hmac_key;
  // Server clock, unix seconds (unset: the wall clock).
  std::function<int64_t()> now;
};

// Turns identifiers into tokens with the deployment's OPRF key: what a
// replica that is not the writer needs to queue a report's linked
// identifiers as tokens (never the identifiers).
class TokenKey {
 public:
  TokenKey() = default;
  explicit TokenKey(const Scalar& key) : key_(key) {}
  // Loads (or creates) the seed at `path` and derives the key.
  Status Load(const std::string& path);
  Status TokenOf(const std::string& kind, const std::string& value, std::string* token) const;
  // The (kind, token) pairs of a flagged report's linked_identifiers and of
  // the identifiers its rules extracted (an extracted value that is not a
  // valid identifier of its kind is skipped); none for a report that
  // matched nothing.
  Status Linked(const v1::ContentReport& report, const v1::Verdict& verdict,
                const std::vector<std::pair<std::string, std::string>>& extracted,
                std::vector<std::pair<std::string, std::string>>* out) const;

 private:
  Scalar key_{};
};

// One token a platform submits.
struct SignalInput {
  std::string kind;      // email | phone | handle | profile_url
  std::string token;     // 64-byte OPRF output
  std::string category;  // a duty id
};

// Cross-platform signals (docs/signals.md): tokens of identifiers that reveal
// nothing, linkage across services, alerts, and the review duty they open.
// Every change is a ledger event (or, for tokens, a row written in the same
// transaction); a review obligation is an ordinary obligation on the report
// id "linkage:<alert id>", opened through the duty engine by the rule packs'
// rules on reason `linkage_alert`.
//
// Thread-safe. Identifiers are never stored or logged; error messages never
// repeat one.
class SignalEngine {
 public:
  SignalEngine(ledger::Ledger* ledger, duty::DutyEngine* duties, SignalOptions options);
  SignalEngine(const SignalEngine&) = delete;
  SignalEngine& operator=(const SignalEngine&) = delete;

  // Loads (or creates) the key, and opens review obligations that a crash
  // left unopened for alerts still open.
  Status Open();

  // Evaluates blinded elements for `service_id`; records the call (a
  // SIGNAL_EVALUATION event) before answering. ResourceExhausted past the
  // daily quota; InvalidArgument naming the first element that is not a
  // valid ristretto255 element.
  Status BlindEvaluate(const std::string& service_id, const std::string& principal,
                       const std::vector<std::string>& blinded, std::vector<std::string>* evaluated,
                       int64_t* remaining);

  // The token of an identifier the server sees anyway (canonicalised, then
  // evaluated directly): the same as the blinded path gives.
  Status TokenOf(const std::string& kind, const std::string& value, std::string* token) const;

  // Records tokens of one of `service_id`'s reports, raises and updates
  // alerts, and opens review obligations for new ones; returns once durable.
  // `own_alerts` receives the caller's alerts this submission raised or
  // changed.
  Status Submit(const std::string& service_id, const std::string& report_id,
                const std::vector<SignalInput>& signals, std::vector<v1::LinkageAlert>* own_alerts);

  // Turns a flagged report's linked_identifiers, and the identifiers its
  // rules' `extract:` leaves found (`extracted`: (kind, value)), into tokens
  // (categories: the flags' duties) and submits them. Identifiers of a
  // report that matched nothing are discarded; an extracted value that is
  // not a valid identifier of its kind is skipped.
  Status SubmitLinked(const v1::ContentReport& report, const v1::Verdict& verdict,
                      const std::vector<std::pair<std::string, std::string>>& extracted = {});
  // The same with the tokens already made (TokenKey::Linked, by the
  // replica that queued the report).
  Status SubmitLinkedTokens(const std::string& service_id, const std::string& report_id,
                            const v1::Verdict& verdict,
                            const std::vector<std::pair<std::string, std::string>>& tokens);

  // A service's alerts after `q.after_seq` (q.service_id required).
  Status ListAlerts(const ledger::AlertQuery& q, std::vector<v1::LinkageAlert>* out);

  // Records `service_id`'s opinion of its alert and the review action on its
  // review obligation. NotFound when the alert is not the caller's.
  Status Feedback(const std::string& service_id, const std::string& alert_id,
                  const std::string& opinion, const std::string& actor, int64_t taken_at,
                  v1::LinkageAlert* alert, std::vector<v1::Obligation>* obligations);

  // Deletes the signals of one of `service_id`'s reports; alerts that no
  // longer stand (the caller's own, and others' that fall below the minimum
  // of services) are withdrawn and their review obligations discharged.
  Status Withdraw(const std::string& service_id, const std::string& report_id,
                  const std::string& actor, int* signals, int* alerts_withdrawn);

  // Deletes tokens past retention (the sweeper calls it).
  Status Prune();

  // Blocks until an alert event after `seq` may exist, or `timeout_ms`
  // passed; returns the latest cursor written.
  uint64_t WaitForAlerts(uint64_t seq, int timeout_ms);

  const SignalOptions& options() const { return options_; }

 private:
  struct Pending {
    std::vector<ledger::SignalRow> signals;
    std::vector<ledger::AlertTokenRow> alert_tokens;
  };
  int64_t Now() const;
  std::string AlertId(const std::string& service_id, const std::string& kind,
                      const std::string& token, int64_t first_seen) const;
  // Opens the review obligation of a delivered alert (idempotent). With
  // `pending`, returns once it is queued: pending->Wait() says when durable.
  Status OpenReview(const v1::LinkageAlert& alert, int64_t delivered_at,
                    duty::DutyEngine::Pending* pending = nullptr);
  // Commits events and extras, waiting with mu_ released; `pending` rows
  // are visible to linkage meanwhile.
  Status Commit(std::vector<v1::LedgerEvent>* events, ledger::BatchExtras extras,
                std::unique_lock<std::mutex>& lock);
  v1::LedgerEvent NewEvent(v1::EventType type) const;

  ledger::Ledger* ledger_;
  duty::DutyEngine* duties_;
  SignalOptions options_;
  Scalar key_{};
  std::set<std::string> sharing_;
  std::mutex mu_;
  std::multimap<std::pair<std::string, std::string>, ledger::SignalRow> pending_signals_;
  std::vector<ledger::AlertTokenRow> pending_alerts_;
  // Alerts delivered by calls not yet durable, as delivered (with how many
  // calls hold them): what a concurrent call compares its view against.
  std::map<std::string, std::pair<int, v1::LinkageAlert>> pending_bodies_;
  std::map<std::pair<std::string, std::string>, int64_t> pending_quota_;  // (service, day)
  std::condition_variable alerts_cv_;
  uint64_t alert_cursor_ = 0;
};

}  // namespace carewatch::signals

#endif  // CAREWATCH_ENGINE_SIGNALS_SIGNALS_H_
