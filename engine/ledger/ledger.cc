#include "engine/ledger/ledger.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "engine/common/digest.h"
#include "engine/common/thread_name.h"
#include "engine/common/utf8.h"
#include "engine/ledger/note.h"
#include "engine/ledger/pg_backend.h"
#include "engine/ledger/sqlite_backend.h"

namespace carewatch::ledger {

namespace {

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string SerializeDeterministic(const google::protobuf::Message& m) {
  // Sized first, then written into one allocation of that size: through a
  // StringOutputStream the string grew (and was zero-filled) a step at a
  // time, which cost as much as the writing. The bytes are the same.
  const size_t size = m.ByteSizeLong();
  std::string out(size, '\0');
  google::protobuf::io::ArrayOutputStream array(out.data(), static_cast<int>(size));
  google::protobuf::io::CodedOutputStream coded(&array);
  coded.SetSerializationDeterministic(true);
  m.SerializeWithCachedSizes(&coded);
  return out;
}

std::string PayloadWithSeq(uint64_t seq, std::string_view body) {
  using google::protobuf::internal::WireFormatLite;
  using google::protobuf::io::CodedOutputStream;
  uint8_t head[5 + 10];  // the longest tag and the longest 64-bit varint
  uint8_t* end = CodedOutputStream::WriteTagToArray(
      WireFormatLite::MakeTag(v1::LedgerEvent::kSeqFieldNumber, WireFormatLite::WIRETYPE_VARINT),
      head);
  end = CodedOutputStream::WriteVarint64ToArray(seq, end);
  std::string out;
  out.reserve(static_cast<size_t>(end - head) + body.size());
  out.append(reinterpret_cast<const char*>(head), static_cast<size_t>(end - head));
  out.append(body);
  return out;
}

Status OpenBackend(const std::string& url, bool read_only, std::unique_ptr<LedgerBackend>* out,
                   int busy_timeout_ms, std::shared_ptr<WriterLock> writer_lock) {
  if (url.rfind("sqlite://", 0) == 0) {
    // sqlite:///abs -> /abs ; sqlite://rel -> rel
    return OpenSqliteBackend(url, url.substr(9), read_only, busy_timeout_ms, out);
  }
  if (IsPostgresUrl(url))
    return OpenPostgresBackend(url, read_only, busy_timeout_ms, out, std::move(writer_lock));
  if (url.find("://") != std::string::npos) {
    return Status::InvalidArgument("unknown ledger URL scheme in '" + RedactUrl(url) +
                                   "' (use sqlite:///path/ledger.db or postgresql://...)");
  }
  return OpenSqliteBackend(url, url, read_only, busy_timeout_ms, out);
}

bool IsLedgerInUse(const Status& s) {
  return s.code() == Status::Code::kFailedPrecondition &&
         s.message().find(" is in use by another ") != std::string::npos;
}

std::string LedgerDirectory(const std::string& url) {
  // A database server's ledger has no directory: keys default to the
  // working directory (docs/operations.md says to name them).
  if (IsPostgresUrl(url)) return ".";
  std::string path = url;
  for (const char* prefix : {"sqlite://", "file://"}) {
    if (path.rfind(prefix, 0) == 0) path = path.substr(std::strlen(prefix));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string CheckpointSignedText(uint64_t tree_size, const Hash& root, int64_t time) {
  return "carewatch checkpoint v1\n" + std::to_string(tree_size) + "\n" + HexEncode(root) + "\n" +
         std::to_string(time) + "\n";
}

void Ledger::Ticket::Finish(const Status& s) {
  std::vector<std::function<void(const Status&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu);
    status = s;
    done = true;
    callbacks.swap(then);
  }
  // Outside the lock, so that the woken waiter does not block on it again.
  // The writer's batch holds the ticket until this returns.
  cv.notify_all();
  for (auto& c : callbacks) c(s);
}

void Ledger::Ticket::OnDone(std::function<void(const Status&)> callback) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!done) {
      then.push_back(std::move(callback));
      return;
    }
  }
  callback(status);  // done: status no longer changes
}

Status Ledger::Ticket::Wait() {
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [this] { return done; });
  return status;
}

namespace {

// Computes and stores every complete subtree of the first `size` events,
// reading them a page at a time; leaves `tree` at their edge.
Status StoreSubtrees(LedgerBackend& backend, uint64_t size, CompactTree* tree) {
  CompactTree t;
  std::vector<TreeNode> nodes;
  for (uint64_t next = 1; next <= size;) {
    std::vector<StoredEvent> page;
    Status s = backend.ReadEvents(next, 10000, &page);
    if (!s.ok()) return s;
    if (page.empty()) break;
    for (const StoredEvent& e : page) {
      if (e.seq != next || e.leaf_hash.size() != 32) {
        return Status::DataLoss("ledger event " + std::to_string(next) +
                                " is missing or its leaf hash is malformed; run `carewatch "
                                "verify` on it");
      }
      t.Append(e.leaf_hash, &nodes);
      ++next;
    }
    s = backend.WriteNodes(nodes);
    if (!s.ok()) return s;
    nodes.clear();
  }
  if (t.size() != size) {
    return Status::DataLoss("the ledger holds " + std::to_string(t.size()) + " events of " +
                            std::to_string(size) + "; run `carewatch verify` on it");
  }
  *tree = std::move(t);
  return Status::Ok();
}

}  // namespace

Status ReadKeyRotations(LedgerBackend& backend, size_t limit,
                        std::vector<v1::KeyRotationEntry>* out) {
  out->clear();
  if (limit == 0) return Status::Ok();
  std::vector<uint64_t> seqs;
  Status s = backend.EventsOfType(v1::KEY_ROTATED, INT64_MAX, &seqs);
  if (!s.ok()) return s;
  if (seqs.size() > limit) seqs.erase(seqs.begin(), seqs.end() - static_cast<ptrdiff_t>(limit));
  for (uint64_t seq : seqs) {
    std::vector<StoredEvent> rows;
    s = backend.ReadEvents(seq, 1, &rows);
    if (!s.ok()) return s;
    v1::LedgerEvent e;
    if (rows.empty() || rows[0].seq != seq || !e.ParseFromString(rows[0].payload) ||
        e.type() != v1::KEY_ROTATED) {
      return Status::DataLoss("the KEY_ROTATED event " + std::to_string(seq) +
                              " is missing or malformed; run `carewatch verify` on the ledger");
    }
    v1::KeyRotationEntry* entry = &out->emplace_back();
    entry->set_seq(seq);
    *entry->mutable_rotated() = e.key_rotated();
    *entry->mutable_recorded_at() = e.recorded_at();
  }
  return Status::Ok();
}

Status Ledger::Open(const LedgerOptions& options, std::unique_ptr<Ledger>* out) {
  std::unique_ptr<Ledger> l(new Ledger());
  l->options_ = options;
  if (!l->options_.now) l->options_.now = [] { return WallMillis(); };
  Status s =
      OpenBackend(options.url, false, &l->backend_, options.busy_timeout_ms, options.writer_lock);
  if (!s.ok()) return s;
  std::string key_path = options.signing_key_path.empty()
                             ? LedgerDirectory(options.url) + "/ledger.key"
                             : options.signing_key_path;
  s = SigningKey::LoadOrCreate(key_path, &l->key_);
  if (!s.ok()) return s;
  // A ledger belongs to one deployment: its key signs every checkpoint.
  std::string stored_key;
  bool found = false;
  s = l->backend_->GetMeta("public_key", &stored_key, &found);
  if (!s.ok()) return s;
  if (!found) {
    s = l->backend_->PutMeta("public_key", l->key_->PublicPem());
    if (!s.ok()) return s;
  } else if (stored_key != l->key_->PublicPem()) {
    // A key rotated out of this ledger is named as such.
    std::vector<v1::KeyRotationEntry> rotations;
    std::string handed_to;
    if (ReadKeyRotations(*l->backend_, 1000, &rotations).ok()) {
      for (const v1::KeyRotationEntry& r : rotations) {
        std::unique_ptr<TrustedKey> from;
        if (TrustedKey::FromVerifierKey(r.rotated().previous_verifier_key(), &from).ok() &&
            from->key().PublicRaw() == l->key_->PublicRaw()) {
          handed_to = " it was rotated out at event " + std::to_string(r.seq()) +
                      " (KEY_ROTATED) to " + r.rotated().verifier_key() +
                      "; configure signing_key to that key";
        }
      }
    }
    return Status::FailedPrecondition(
        "ledger " + options.url + " was signed by another deployment's key; signing key " +
        key_path + " (public " + l->key_->PublicHex().substr(0, 16) + "...) does not match" +
        (handed_to.empty() ? "" : ":" + handed_to));
  }
  // The origin names the log in every checkpoint; it never changes.
  std::string stored_origin;
  s = l->backend_->GetMeta("origin", &stored_origin, &found);
  if (!s.ok()) return s;
  if (found) {
    if (!options.origin.empty() && options.origin != stored_origin) {
      return Status::FailedPrecondition("ledger " + options.url + " has origin '" + stored_origin +
                                        "'; the configured origin '" + options.origin +
                                        "' would name another log");
    }
    l->origin_ = stored_origin;
  } else {
    l->origin_ =
        options.origin.empty() ? "carewatch/" + l->key_->PublicHex().substr(0, 16) : options.origin;
    if (!ValidNoteKeyName(l->origin_)) {
      return Status::InvalidArgument("origin '" + l->origin_ +
                                     "': must be non-empty, without spaces or '+'");
    }
    s = l->backend_->PutMeta("origin", l->origin_);
    if (!s.ok()) return s;
  }
  // Only the tree's right edge is held in memory: O(log n) reads to start,
  // however long the log.
  uint64_t size = 0;
  s = l->backend_->ReadTreeSize(&size);
  if (!s.ok()) return s;
  const NodeReader read =
      StoredNodeReader([b = l->backend_.get()](int level, uint64_t index, Hash* out) {
        return b->ReadNode(level, index, out);
      });
  s = CompactTree::Load(size, read, &l->tree_);
  if (s.code() == Status::Code::kNotFound) {
    // A ledger written before subtrees were stored: store them once.
    s = StoreSubtrees(*l->backend_, size, &l->tree_);
  }
  if (!s.ok()) return s;
  l->durable_size_ = size;
  l->next_seq_ = size + 1;
  bool have_checkpoint = false;
  s = l->backend_->ReadCheckpoint(0, &l->latest_checkpoint_, &have_checkpoint);
  if (!s.ok()) return s;
  if (have_checkpoint) l->last_checkpoint_size_ = l->latest_checkpoint_.tree_size();
  l->last_checkpoint_ms_ = l->options_.now();
  // Counts the last run wrote but did not roll up go into the next rollup.
  std::vector<StatsRow> pending;
  s = l->backend_->ReadStatsPending(&pending);
  if (!s.ok()) return s;
  for (const StatsRow& r : pending) {
    auto& c = l->unrolled_[{r.service_id, r.day, r.surface, r.reason}];
    c.first += r.reports;
    c.second += r.flagged;
  }
  l->last_rollup_ms_ = l->options_.now();
  l->finisher_ = std::thread(&Ledger::FinisherLoop, l.get());
  l->writer_ = std::thread(&Ledger::WriterLoop, l.get());
  *out = std::move(l);
  return Status::Ok();
}

Ledger::~Ledger() {
  if (!writer_.joinable()) return;  // Open failed before the writer started
  // A failed flush has already made the ledger unhealthy; nothing after the
  // last durable event was acknowledged, so there is nothing more to do.
  (void)Flush();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> lock(finish_mu_);
    finish_stop_ = true;
  }
  finish_cv_.notify_all();
  finisher_.join();  // after the writer: it finishes every batch handed to it
}

void Ledger::FinisherLoop() {
  NameThisThread("cw-ledger-done");
  for (;;) {
    std::deque<std::pair<std::deque<std::shared_ptr<Ticket>>, Status>> done;
    {
      std::unique_lock<std::mutex> lock(finish_mu_);
      finish_cv_.wait(lock, [this] { return finish_stop_ || !to_finish_.empty(); });
      if (to_finish_.empty()) return;  // stopping, and nothing left
      done.swap(to_finish_);
    }
    for (const auto& [batch, status] : done) {
      for (const auto& t : batch) t->Finish(status);
    }
  }
}

std::string LedgerBackend::WindowHoursCountersSql() {
  return std::string(
             "SELECT (SELECT coalesce(sum(value), 0) FROM counters WHERE name IN ('met', "
             "'discharged', 'breached')), (SELECT coalesce(max(value), 0) FROM counters WHERE "
             "name = '") +
         kWindowHoursCounter + "')";
}

std::string LedgerBackend::CountWindowHoursSql() {
  return std::string(
             "DELETE FROM window_hours; INSERT INTO window_hours (hour, service_id, duty_id, "
             "decided) SELECT ") +
         kWindowHourSql +
         ", service_id, duty_id, count(*) FROM obligations WHERE decided_seq > 0 GROUP BY 1, 2, "
         "3; INSERT INTO counters (name, value) SELECT '" +
         kWindowHoursCounter +
         "', coalesce(sum(value), 0) FROM counters WHERE name IN ('met', 'discharged', "
         "'breached') ON CONFLICT (name) DO UPDATE SET value = excluded.value;";
}

Status LedgerBackend::ReadOpenObligations(std::vector<ObligationRow>* out) {
  std::unordered_map<std::string, size_t> at;  // where each row went in `out`
  return EachOpenObligation(
      [&](ObligationRow& row) {
        at.emplace(row.obligation_id, out->size());
        out->push_back(std::move(row));
        return Status::Ok();
      },
      [&](std::string_view id, ObligationActionRow&& a) {
        auto it = at.find(std::string(id));
        if (it != at.end()) (*out)[it->second].actions.push_back(std::move(a));
      });
}

std::shared_ptr<Ledger::Ticket> Ledger::Enqueue(std::vector<v1::LedgerEvent>* events,
                                                BatchExtras extras) {
  auto ticket = std::make_shared<Ticket>();
  ticket->extras = std::move(extras);
  return EnqueueTicket(std::move(ticket), events);
}

std::shared_ptr<Ledger::Ticket> Ledger::EnqueueTicket(std::shared_ptr<Ticket> ticket,
                                                      std::vector<v1::LedgerEvent>* events) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_.ok()) {
    ticket->done = true;
    ticket->status = error_;
    return ticket;
  }
  for (v1::LedgerEvent& e : *events) e.set_seq(next_seq_++);
  ticket->events = *events;
  queue_.push_back(ticket);
  cv_.notify_one();
  return ticket;
}

Status Ledger::Append(std::vector<v1::LedgerEvent>* events) {
  if (events->empty()) return health();
  // Serialised here, without a seq, so that the writer thread (which every
  // caller waits for) does not: it puts the seq in front.
  auto ticket = std::make_shared<Ticket>();
  ticket->bodies.reserve(events->size());
  for (v1::LedgerEvent& e : *events) {
    e.clear_seq();
    ticket->bodies.push_back(SerializeDeterministic(e));
  }
  return EnqueueTicket(std::move(ticket), events)->Wait();
}

Status Ledger::RotateKey(std::unique_ptr<SigningKey> next, const std::string& reason) {
  if (!next) return Status::InvalidArgument("no key to rotate to");
  if (next->PublicRaw() == key_->PublicRaw()) {
    return Status::InvalidArgument("the new key is the ledger's key already");
  }
  if (reason.size() > 1024) return Status::InvalidArgument("reason: longer than 1024 bytes");
  if (!IsValidUtf8(reason) ||
      std::any_of(reason.begin(), reason.end(), [](char c) { return c >= 0 && c < 0x20; }))
    return Status::InvalidArgument("reason: not one line of UTF-8 text");
  // What the old key alone signs ends with a checkpoint of its own.
  Status s = Flush();
  if (!s.ok()) return s;
  v1::LedgerEvent e;
  e.set_type(v1::KEY_ROTATED);
  const int64_t now = options_.now() / 1000;
  e.mutable_time()->set_seconds(now);
  e.mutable_recorded_at()->set_seconds(now);
  e.set_format(2);
  v1::KeyRotated* k = e.mutable_key_rotated();
  k->set_previous_verifier_key(VerifierKeyString(origin_, key_->PublicRaw()));
  k->set_verifier_key(VerifierKeyString(origin_, next->PublicRaw()));
  k->set_reason(reason);
  auto ticket = std::make_shared<Ticket>();
  ticket->flush = true;
  ticket->extras.meta.emplace_back("public_key", next->PublicPem());
  {
    std::lock_guard<std::mutex> lock(tree_mu_);
    next_key_ = std::move(next);
  }
  std::vector<v1::LedgerEvent> events(1, std::move(e));
  s = EnqueueTicket(std::move(ticket), &events)->Wait();
  std::lock_guard<std::mutex> lock(tree_mu_);
  next_key_.reset();  // kept by the writer on success
  return s;
}

Status Ledger::Flush() {
  auto ticket = std::make_shared<Ticket>();
  ticket->flush = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.ok()) return error_;
    if (stop_ || !writer_.joinable()) return Status::Unavailable("ledger is closed");
    QueueRollupLocked();
    queue_.push_back(ticket);
  }
  cv_.notify_one();
  // The rollup may need a batch of its own after the one it was queued
  // behind: wait until both are written.
  Status s = ticket->Wait();
  if (!s.ok()) return s;
  std::shared_ptr<Ticket> after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (unrolled_.empty()) return error_;
    QueueRollupLocked();
    after = std::make_shared<Ticket>();
    after->flush = true;
    queue_.push_back(after);
  }
  cv_.notify_one();
  return after->Wait();
}

Status Ledger::PruneUnflagged(int64_t before, size_t limit, size_t* deleted) {
  auto ticket = std::make_shared<Ticket>();
  ticket->extras.prune_unflagged_before = before;
  ticket->extras.prune_limit = limit;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.ok()) return error_;
    if (stop_ || !writer_.joinable()) return Status::Unavailable("ledger is closed");
    queue_.push_back(ticket);
  }
  cv_.notify_one();
  Status s = ticket->Wait();
  if (s.ok() && deleted) *deleted = ticket->pruned;
  return s;
}

void Ledger::QueueRollupLocked() {
  if (unrolled_.empty() || !error_.ok()) return;
  auto ticket = std::make_shared<Ticket>();
  v1::LedgerEvent e;
  e.set_seq(next_seq_++);
  e.set_type(v1::STATS_ROLLUP);
  int64_t now = options_.now() / 1000;
  e.mutable_time()->set_seconds(now);
  e.mutable_recorded_at()->set_seconds(now);
  e.set_format(2);
  for (const auto& [key, counts] : unrolled_) {
    v1::StatsCount* c = e.mutable_stats_rollup()->add_counts();
    c->set_service_id(std::get<0>(key));
    c->set_day(std::get<1>(key));
    c->set_surface(std::get<2>(key));
    c->set_reason(std::get<3>(key));
    c->set_reports(counts.first);
    c->set_flagged(counts.second);
  }
  unrolled_.clear();
  last_rollup_ms_ = options_.now();
  ticket->events.push_back(std::move(e));
  queue_.push_back(ticket);
}

Status Ledger::health() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (error_.ok() && !degraded_.empty()) return Status::Unavailable(degraded_);
  return error_;
}

uint64_t Ledger::write_retries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return write_retries_;
}

uint64_t Ledger::commits() const {
  std::lock_guard<std::mutex> lock(tree_mu_);
  return commits_;
}

uint64_t Ledger::size() const {
  std::lock_guard<std::mutex> lock(tree_mu_);
  return durable_size_;
}

void Ledger::WriterLoop() {
  NameThisThread("cw-ledger-write");
  for (;;) {
    std::deque<std::shared_ptr<Ticket>> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(200),
                   [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stop_) return;
        // Idle: roll report counts up into the log when it is time...
        if (!unrolled_.empty() &&
            options_.now() - last_rollup_ms_ >= options_.stats_rollup_interval_ms) {
          QueueRollupLocked();
          continue;
        }
        // ...and sign a checkpoint if events are waiting for one.
        lock.unlock();
        bool due;
        {
          std::lock_guard<std::mutex> tree_lock(tree_mu_);
          due = durable_size_ > last_checkpoint_size_ &&
                options_.now() - last_checkpoint_ms_ >= options_.checkpoint_interval_ms;
        }
        if (due) {
          std::deque<std::shared_ptr<Ticket>> none;
          // A failure is kept in error_ and reported by health().
          (void)WriteOne(none, true);
        }
        continue;
      }
      if (queue_.size() < kGatherBelow) {
        // A small batch: let the threads that are ready to queue something
        // (on a busy machine, waiting for a CPU behind this one) do so first,
        // so that one commit carries their reports too. On an idle machine
        // the yield returns at once.
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
      }
      batch.swap(queue_);
    }
    bool force = false;
    for (const auto& t : batch) force = force || t->flush;
    std::vector<StatsRow> written;
    Status s = WriteOne(batch, force, &written);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const StatsRow& r : written) {
        auto& c = unrolled_[{r.service_id, r.day, r.surface, r.reason}];
        c.first += r.reports;
        c.second += r.flagged;
      }
      if (options_.now() - last_rollup_ms_ >= options_.stats_rollup_interval_ms) {
        QueueRollupLocked();
      }
    }
    // Waking the batch's callers (a system call each) is left to the
    // finisher, so that the next batch is written meanwhile.
    {
      std::lock_guard<std::mutex> lock(finish_mu_);
      to_finish_.emplace_back(std::move(batch), s);
    }
    finish_cv_.notify_one();
    if (s.ok()) backend_->Maintain();
  }
}

Status Ledger::RetryTransient(uint64_t durable, const std::function<Status()>& attempt) {
  for (int64_t backoff_ms = 10;;) {
    Status s = attempt();
    if (s.ok() || s.code() != Status::Code::kUnavailable) return s;
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) return s;
    degraded_ = "ledger write failed, retrying every " + std::to_string(backoff_ms) +
                " ms (nothing after seq " + std::to_string(durable) +
                " is acknowledged meanwhile): " + s.message();
    ++write_retries_;
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [this] { return stop_; });
    backoff_ms = std::min<int64_t>(1000, backoff_ms * 2);
  }
}

Status Ledger::WriteOne(std::deque<std::shared_ptr<Ticket>>& batch, bool force_checkpoint,
                        std::vector<StatsRow>* written) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.ok()) return error_;
  }
  WriteSet w;
  std::vector<const v1::LedgerEvent*> parsed;
  for (const auto& t : batch) {
    for (size_t i = 0; i < t->events.size(); ++i) {
      const v1::LedgerEvent& e = t->events[i];
      StoredEvent row;
      row.seq = e.seq();
      row.type = e.type();
      row.time = e.time().seconds();
      row.payload =
          i < t->bodies.size() ? PayloadWithSeq(e.seq(), t->bodies[i]) : SerializeDeterministic(e);
      row.leaf_hash = LeafHash(row.payload);
      w.events.push_back(std::move(row));
      parsed.push_back(&e);
    }
  }
  // Statistics deltas of the whole batch, summed per key; index rows as given.
  BatchExtras& extras = w.extras;
  {
    std::map<std::tuple<std::string, std::string, std::string, std::string>,
             std::pair<int64_t, int64_t>>
        counts;
    for (const auto& t : batch) {
      for (const StatsRow& r : t->extras.stats) {
        auto& c = counts[{r.service_id, r.day, r.surface, r.reason}];
        c.first += r.reports;
        c.second += r.flagged;
      }
      extras.reports.insert(extras.reports.end(), t->extras.reports.begin(),
                            t->extras.reports.end());
      const BatchExtras& x = t->extras;
      extras.signals.insert(extras.signals.end(), x.signals.begin(), x.signals.end());
      extras.alert_tokens.insert(extras.alert_tokens.end(), x.alert_tokens.begin(),
                                 x.alert_tokens.end());
      extras.withdraw_signals.insert(extras.withdraw_signals.end(), x.withdraw_signals.begin(),
                                     x.withdraw_signals.end());
      extras.prune_signals_before = std::max(extras.prune_signals_before, x.prune_signals_before);
      extras.dequeue.insert(extras.dequeue.end(), x.dequeue.begin(), x.dequeue.end());
      extras.meta.insert(extras.meta.end(), x.meta.begin(), x.meta.end());
      if (t->extras.prune_unflagged_before) {
        extras.prune_unflagged_before = t->extras.prune_unflagged_before;
        extras.prune_limit = t->extras.prune_limit;
      }
    }
    for (const auto& [key, c] : counts) {
      extras.stats.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key),
                              std::get<3>(key), c.first, c.second});
    }
  }
  // Deriving reads findings from the store: a read that fails for a while
  // (the database restarting) is retried as a write is, below.
  Status s = RetryTransient(durable_size_, [&] {
    w.derived = DerivedBatch{};
    return Derive(
        parsed,
        [this](const std::string& id, v1::Finding* f, bool* found) {
          return backend_->ReadFinding(id, f, found);
        },
        &w.derived);
  });
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = Status::Unavailable("ledger write failed; nothing after seq " +
                                 std::to_string(durable_size_) + " was recorded: " + s.message());
    return error_;
  }
  // Unflagged reports are counted with the flagged ones.
  if (!extras.reports.empty())
    w.derived.counter_deltas["reports"] += static_cast<int64_t>(extras.reports.size());

  size_t pruned = 0;
  w.pruned = &pruned;
  std::unique_lock<std::mutex> tree_lock(tree_mu_);
  const CompactTree before_tree = tree_;
  const uint64_t before = tree_.size();
  for (const StoredEvent& row : w.events) tree_.Append(row.leaf_hash, &w.nodes);
  uint64_t after = tree_.size();
  int64_t now_ms = options_.now();
  v1::Checkpoint checkpoint;
  // A handover (RotateKey): the checkpoint that covers the KEY_ROTATED event
  // is signed now, by the new key and the old.
  bool handover = false;
  for (const v1::LedgerEvent* e : parsed) handover = handover || e->type() == v1::KEY_ROTATED;
  if (handover && !next_key_) {
    // Its seqs are taken: stop, as any failed write does, rather than leave
    // a gap in the log.
    tree_ = before_tree;
    std::lock_guard<std::mutex> lock(mu_);
    error_ = Status::FailedPrecondition("ledger write refused; nothing after seq " +
                                        std::to_string(before) +
                                        " was recorded: a KEY_ROTATED event is written only by "
                                        "RotateKey");
    return error_;
  }
  bool sign =
      after > last_checkpoint_size_ &&
      (force_checkpoint || handover || after - last_checkpoint_size_ >= options_.checkpoint_every ||
       now_ms - last_checkpoint_ms_ >= options_.checkpoint_interval_ms);
  if (sign) {
    checkpoint.set_tree_size(after);
    checkpoint.set_root_hash(tree_.Root());
    checkpoint.mutable_time()->set_seconds(now_ms / 1000);
    std::string note, signature;
    std::vector<const SigningKey*> signers;
    if (handover) signers.push_back(next_key_.get());
    signers.push_back(key_.get());
    s = SignNote(CheckpointBody(origin_, after, checkpoint.root_hash(), now_ms / 1000), origin_,
                 signers, &note, &signature);
    if (!s.ok()) {
      tree_ = before_tree;
      return s;
    }
    checkpoint.set_signature(signature);
    checkpoint.set_note(note);
    w.checkpoint = &checkpoint;
  }
  tree_lock.unlock();
  const bool empty = w.events.empty() && !sign && extras.stats.empty() && extras.reports.empty() &&
                     !extras.prune_unflagged_before && extras.signals.empty() &&
                     extras.alert_tokens.empty() && extras.withdraw_signals.empty() &&
                     !extras.prune_signals_before && extras.dequeue.empty() && extras.meta.empty();
  // A fault that may clear by itself (Unavailable: a lock held elsewhere, a
  // full disk) is retried with the same batch, backing off up to a second,
  // until it is written or the ledger closes. Meanwhile nothing is
  // acknowledged and health() says why, so /readyz fails and new commands
  // are refused; writes and audit reads resume by themselves after.
  s = empty ? Status::Ok() : RetryTransient(before, [&] { return backend_->WriteBatch(w); });
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    degraded_.clear();
  }
  tree_lock.lock();
  if (s.ok() && extras.prune_unflagged_before) {
    for (const auto& t : batch) {
      if (t->extras.prune_unflagged_before) t->pruned = pruned;
    }
  }
  if (!s.ok()) {
    tree_ = before_tree;
    std::lock_guard<std::mutex> lock(mu_);
    error_ = Status::Unavailable("ledger write failed; nothing after seq " +
                                 std::to_string(before) + " was recorded: " + s.message());
    return error_;
  }
  durable_size_ = after;
  ++commits_;
  if (written) *written = std::move(extras.stats);
  if (sign) {
    latest_checkpoint_ = checkpoint;
    last_checkpoint_size_ = after;
    last_checkpoint_ms_ = now_ms;
  }
  if (handover) key_ = std::move(next_key_);
  return Status::Ok();
}

std::string Ledger::PublicKeyPem() const { return key_->PublicPem(); }

std::string Ledger::VerifierKey() const { return VerifierKeyString(origin_, key_->PublicRaw()); }

Status Ledger::CheckpointAt(uint64_t tree_size, v1::Checkpoint* out) const {
  {
    std::lock_guard<std::mutex> lock(tree_mu_);
    if (latest_checkpoint_.tree_size() == tree_size && tree_size > 0) {
      *out = latest_checkpoint_;
      return Status::Ok();
    }
  }
  bool found = false;
  Status s = tree_size == 0 ? Status::Ok() : backend_->ReadCheckpoint(tree_size, out, &found);
  if (!s.ok()) return s;
  if (found) return Status::Ok();
  return Status::NotFound("no checkpoint was signed at tree size " + std::to_string(tree_size));
}

Status Ledger::LatestCheckpoint(v1::Checkpoint* out) const {
  std::lock_guard<std::mutex> lock(tree_mu_);
  if (latest_checkpoint_.tree_size() == 0) return Status::NotFound("no checkpoint signed yet");
  *out = latest_checkpoint_;
  return Status::Ok();
}

NodeReader Ledger::Reader() const {
  return StoredNodeReader([b = backend_.get()](int level, uint64_t index, Hash* out) {
    return b->ReadNode(level, index, out);
  });
}

Status Ledger::InclusionProof(uint64_t seq, uint64_t tree_size, std::vector<Hash>* proof) const {
  if (tree_size > size()) return Status::InvalidArgument("tree_size beyond the log");
  if (seq == 0 || seq > tree_size) return Status::InvalidArgument("seq outside the tree");
  // Every subtree inside a durable size is stored (it was written with the
  // event that completed it) or, below kLowestStoredLevel, computed from its
  // leaves.
  return InclusionProofFromNodes(seq - 1, tree_size, Reader(), proof);
}

Status Ledger::ConsistencyProof(uint64_t size1, uint64_t size2, std::vector<Hash>* proof) const {
  const uint64_t durable = size();
  if (size2 > durable || size1 > size2 || size1 == 0) {
    return Status::InvalidArgument("need 0 < size1 <= size2 <= " + std::to_string(durable));
  }
  return ConsistencyProofFromNodes(size1, size2, Reader(), proof);
}

Status Ledger::RootAt(uint64_t size, Hash* root) const {
  if (size > this->size()) return Status::InvalidArgument("size beyond the log");
  return RootFromNodes(size, Reader(), root);
}

}  // namespace carewatch::ledger
