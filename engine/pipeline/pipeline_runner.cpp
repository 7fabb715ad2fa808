#include "engine/pipeline/pipeline_runner.h"

#include <cstring>
#include <exception>
#include <optional>

#include "csrc/model/cpu_shard.h"

namespace jarvis {

using transport::Message;
using transport::MessageType;

PipelineRunner::PipelineRunner(std::unique_ptr<ShardForward> shard, transport::Link& to_next,
                               transport::Link& from_last, PipelineOptions options)
    : PipelineRunner(Rank0Parts{nullptr, std::move(shard)}, to_next, from_last, std::move(options)) {}

namespace {

// The pool first: the CPU shard borrows it.
PipelineRunner::Rank0Parts cpu_parts(const Model& model, int num_blocks, int page_size, int threads) {
  PipelineRunner::Rank0Parts p;
  p.pool = std::make_unique<cpu::ThreadPool>(threads);
  p.shard = std::make_unique<CpuShard>(model, num_blocks, page_size, *p.pool);
  return p;
}

}  // namespace

PipelineRunner::PipelineRunner(const Model& model, int num_blocks, int page_size, int threads,
                               transport::Link& to_next, transport::Link& from_last, PipelineOptions options)
    : PipelineRunner(cpu_parts(model, num_blocks, page_size, threads), to_next, from_last, std::move(options)) {}

PipelineRunner::PipelineRunner(Rank0Parts parts, transport::Link& to_next, transport::Link& from_last,
                               PipelineOptions options)
    : pool_(std::move(parts.pool)),
      shard_(std::move(parts.shard)),
      to_next_(to_next),
      from_last_(from_last),
      options_(std::move(options)) {
  if (!shard_) throw InvalidArgument("PipelineRunner: no shard for rank 0");
  const ShardSpec& s = shard_->shard();
  tail_on_last_ = !s.has_head;
  if (s.first_layer != 0 || !s.has_embedding) {
    throw InvalidArgument("rank 0 of a pipeline needs the embedding (the head) and the first layers");
  }
  if (options_.max_in_flight < 1) throw InvalidArgument("max_in_flight must be at least 1");
  device_hop_ = std::make_unique<Rank0DeviceHop>(*shard_);
  limits_.hidden = shard_->config().hidden;
  if (tail_on_last_) limits_.vocab = shard_->config().vocab_size;  // the last rank sends logits back
  limits_.num_blocks = shard_->num_blocks();
  limits_.page_size = shard_->page_size();
  if (options_.stats_interval.count() > 0) idle_thread_ = std::thread([this] { idle_stats_loop(); });
}

PipelineRunner::~PipelineRunner() {
  {
    std::lock_guard<std::mutex> lk(idle_mu_);
    stop_idle_ = true;
  }
  idle_cv_.notify_all();
  if (idle_thread_.joinable()) idle_thread_.join();
}

bool PipelineRunner::stats_due() const {
  return options_.stats_interval.count() > 0 && ring_size_ > 0 && !stats_outstanding_ && broken_.empty() &&
         std::chrono::steady_clock::now() - last_stats_sent_ >= options_.stats_interval;
}

void PipelineRunner::send_stats_request() {
  Outstanding o;
  o.kind = StageKind::kStats;
  o.step_id = next_step_id_++;
  send(encode_stage_stats(o.step_id, {}), 0);
  outstanding_.push_back(std::move(o));
  stats_outstanding_ = true;
  last_stats_sent_ = std::chrono::steady_clock::now();
}

void PipelineRunner::finish_stats_round(StageRecord& rec) {
  stats_outstanding_ = false;
  // Every worker appends itself in ring order; anything else is not a round of this ring.
  bool whole = rec.stats.size() + 1 == ring_size_;
  for (size_t i = 0; whole && i < rec.stats.size(); ++i) whole = rec.stats[i].rank == i + 1;
  if (!whole) return;
  RingStats r;
  r.at = std::chrono::steady_clock::now();
  r.ranks.reserve(ring_size_);
  r.ranks.push_back(make_rank_stats(0, shard_->shard().first_layer, shard_->shard().end_layer, steps_, step_tokens_,
                                    busy_, r.at - started_, &from_last_, &to_next_));
  for (StageRankStats& w : rec.stats) r.ranks.push_back(w);
  last_stats_ = r;
  if (options_.on_stats) options_.on_stats(*last_stats_);
}

std::optional<RingStats> PipelineRunner::last_ring_stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return last_stats_;
}

// While the scheduler has no step in the ring, the statistics would go stale: this thread sends
// the round itself. It never waits for the lock, so the scheduler is delayed by at most one
// round trip of a small record, and only when it submits just as a round starts.
void PipelineRunner::idle_stats_loop() {
  std::unique_lock<std::mutex> idle(idle_mu_);
  const auto tick = std::min<std::chrono::milliseconds>(options_.stats_interval, std::chrono::milliseconds(250));
  while (!idle_cv_.wait_for(idle, tick, [this] { return stop_idle_; })) {
    std::unique_lock<std::mutex> lk(mu_, std::try_to_lock);
    // No step in the ring (kFree echoes may be: they are consumed here on the way).
    if (!lk.owns_lock() || in_flight_ != 0 || !stats_due()) continue;
    try {
      send_stats_request();
      drain_locked();
    } catch (const std::exception&) {
      // broken_ is set: the scheduler's next call reports it (PipelineError).
    }
  }
}

std::vector<int> PipelineRunner::sample_rows(const ScheduledStep& step) {
  std::vector<int> rows;
  int at = 0;
  for (const ScheduledSeq& s : step.seqs) {
    at += static_cast<int>(s.tokens.size());
    if (s.sample) rows.push_back(at - 1);
  }
  return rows;
}

void PipelineRunner::broken(const std::string& why) {
  if (broken_.empty()) broken_ = why;
  throw PipelineError("pipeline ring: " + why);
}

void PipelineRunner::send(const std::vector<uint8_t>& record, uint32_t tag) {
  if (!broken_.empty()) broken(broken_);
  try {
    to_next_.send(MessageType::kData, tag, record.data(), record.size());
  } catch (const std::exception& e) {
    broken(std::string("sending to the next rank: ") + e.what());
  }
}

void PipelineRunner::send_device_step(const std::vector<uint8_t>& record, uint32_t tag, int n_tokens) {
  send(record, tag);
  // Returns once rank 1 has taken the rows (its ncclRecv), bounded by the device timeout.
  try {
    device_hop_->send_rows(shard_->device_hidden(n_tokens),
                           static_cast<size_t>(n_tokens) * static_cast<size_t>(limits_.hidden) * sizeof(float));
  } catch (const std::exception& e) {
    broken(std::string("sending the hidden rows to rank 1 over NCCL: ") + e.what());
  }
}

uint64_t PipelineRunner::submit(const ScheduledStep& step, std::vector<int> rows, uint32_t micro_batch) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!broken_.empty()) broken(broken_);
  if (in_flight_ >= options_.max_in_flight) {
    throw InvalidArgument("pipeline: " + std::to_string(in_flight_) + " steps already in flight (the limit)");
  }
  const int n = step.total_tokens();
  if (n <= 0) throw InvalidArgument("pipeline: empty step");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= n || (i > 0 && rows[i] <= rows[i - 1])) {
      throw InvalidArgument("pipeline: logits rows must be ascending indices into the step's tokens");
    }
  }
  const size_t hidden = static_cast<size_t>(limits_.hidden);
  tokens_.clear();
  for (const ScheduledSeq& s : step.seqs) tokens_.insert(tokens_.end(), s.tokens.begin(), s.tokens.end());
  hidden_.resize(static_cast<size_t>(n) * hidden);
  const BatchView batch = step.batch_view();
  const auto t0 = std::chrono::steady_clock::now();
  // ---- send path: the hop to rank 1 (NCCL: the hidden state stays in the shard's device buffer) ----
  const bool device_rows = device_hop_->nccl();
  if (device_rows) {
    shard_->embed_device(tokens_.data(), n);
    shard_->forward_layers_device(batch);
  } else {
    shard_->embed(tokens_.data(), n, hidden_.data());
    shard_->forward_layers(batch, hidden_.data());
  }
  // ---- end send path ----
  busy_ += std::chrono::steady_clock::now() - t0;
  ++steps_;
  step_tokens_ += static_cast<uint64_t>(n);
  if (stats_due()) send_stats_request();  // before the step: collect() consumes it on the way

  Outstanding o;
  o.kind = StageKind::kStep;
  o.step_id = next_step_id_++;
  o.micro_batch = micro_batch;
  o.n_tokens = n;
  o.rows = std::move(rows);
  if (device_rows) {
    send_device_step(encode_stage_step_device(o.step_id, micro_batch, batch, static_cast<int>(hidden),
                                              limits_.page_size, o.rows),
                     micro_batch, n);
  } else {
    send(encode_stage_step(o.step_id, micro_batch, batch, hidden_.data(), static_cast<int>(hidden),
                           limits_.page_size, o.rows),
         micro_batch);
  }
  const uint64_t id = o.step_id;
  outstanding_.push_back(std::move(o));
  ++in_flight_;
  return id;
}

std::vector<std::pair<int, int>> PipelineRunner::handshake() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!outstanding_.empty()) throw InvalidArgument("pipeline: handshake() with records in flight");
  StageHello h;
  h.n_layers = shard_->config().n_layers;
  h.hidden = limits_.hidden;
  h.num_blocks = limits_.num_blocks;
  h.page_size = limits_.page_size;
  if (!tail_on_last_) h.tail_rank = 0;
  h.ranges.emplace_back(shard_->shard().first_layer, shard_->shard().end_layer);
  h.devices.push_back(device_hop_->device());  // rank 1 answers it when it could take NCCL
  Outstanding o;
  o.kind = StageKind::kHello;
  o.step_id = next_step_id_++;
  send(encode_stage_hello(o.step_id, h), 0);
  try {
    device_hop_->setup(to_next_, from_last_, limits_);  // rank 1's answer, then NCCL where agreed
  } catch (const std::exception& e) {
    broken(std::string("setting up the hop to rank 1: ") + e.what());
  }
  const StageRecord rec = receive(o);
  const auto& ranges = rec.hello.ranges;
  if (ranges.empty() || ranges.front() != h.ranges.front() || ranges.back().second != h.n_layers) {
    broken("the ring does not cover the model's layers [0, " + std::to_string(h.n_layers) + ")" +
           (ranges.empty() ? std::string() : ": it ends at layer " + std::to_string(ranges.back().second)));
  }
  // Exactly one rank holds the tail: rank 0, or (tail_on_last_) the last rank. A worker before the
  // last refuses the hello itself; what is left is a tail on neither end, or on both.
  const int last = static_cast<int>(ranges.size()) - 1;
  const int want_tail = tail_on_last_ ? last : 0;
  if (rec.hello.tail_rank != want_tail) {
    const std::string where = rec.hello.tail_rank < 0 ? std::string("no rank holds it")
                                                      : "ring position " + std::to_string(rec.hello.tail_rank) + " holds it";
    broken(std::string("the tail (final norm + lm_head) must be on ") +
           (tail_on_last_ ? "the last rank (" + std::to_string(last) + "), as rank 0 does not hold it"
                          : std::string("rank 0, which holds it (no worker may)")) +
           ", but " + where);
  }
  ring_size_ = ranges.size();
  return ranges;
}

void PipelineRunner::free_sequences(const std::vector<int64_t>& seq_ids) {
  std::lock_guard<std::mutex> lk(mu_);
  Outstanding o;
  o.kind = StageKind::kFree;
  o.step_id = next_step_id_++;
  send(encode_stage_free(o.step_id, seq_ids), 0);
  outstanding_.push_back(std::move(o));
}

StageRecord PipelineRunner::receive(const Outstanding& expect) {
  std::optional<Message> m;
  do {
    try {
      m = from_last_.try_recv(options_.recv_timeout);
    } catch (const std::exception& e) {
      broken(std::string("receiving from the last rank: ") + e.what());
    }
    if (!m) broken("no record back from the last rank within the receive timeout");
  } while (m->type != MessageType::kData);  // pings and the like are not ours
  StageRecord rec;
  try {
    rec = decode_stage_record(m->payload, limits_);
  } catch (const std::exception& e) {
    broken(std::string("record from the last rank: ") + e.what());
  }
  if (rec.kind == StageKind::kError) broken("a rank failed: " + rec.error);
  if (rec.kind != expect.kind || rec.step_id != expect.step_id) {
    broken("record " + std::to_string(rec.step_id) + " came back while " + std::to_string(expect.step_id) +
           " was expected");
  }
  const size_t want_rows = rec.trimmed ? expect.rows.size() : static_cast<size_t>(expect.n_tokens);
  if (rec.kind == StageKind::kStep && (rec.micro_batch != expect.micro_batch || rec.rows != expect.rows ||
                                       rec.has_logits != tail_on_last_ ||
                                       (!rec.has_logits &&
                                        rec.hidden.size() != want_rows * static_cast<size_t>(limits_.hidden)))) {
    broken("step " + std::to_string(rec.step_id) + " came back changed" +
           (rec.has_logits != tail_on_last_ ? (tail_on_last_ ? " (hidden rows, logits expected from the tail)"
                                                             : " (logits, but rank 0 holds the tail)")
                                            : ""));
  }
  return rec;
}

PipelineResult PipelineRunner::collect() {
  std::lock_guard<std::mutex> lk(mu_);
  return collect_locked();
}

PipelineResult PipelineRunner::collect_locked() {
  if (!broken_.empty()) broken(broken_);
  if (in_flight_ == 0) throw InvalidArgument("pipeline: collect() with no step in flight");
  for (;;) {
    Outstanding o = std::move(outstanding_.front());
    outstanding_.pop_front();
    if (o.kind == StageKind::kStep) --in_flight_;
    StageRecord rec = receive(o);
    if (o.kind == StageKind::kStats) finish_stats_round(rec);
    if (o.kind != StageKind::kStep) continue;

    PipelineResult r;
    r.step_id = o.step_id;
    r.micro_batch = o.micro_batch;
    r.n_rows = static_cast<int>(o.rows.size());
    if (o.rows.empty()) return r;
    if (rec.has_logits) {
      // The last rank holds the tail: its logits are the result (receive() checked rows and vocab).
      r.logits = std::move(rec.logits);
      return r;
    }
    if (!o.requests.empty()) {
      finish_sampled(o, rec, r);
      return r;
    }
    const size_t hidden = static_cast<size_t>(limits_.hidden);
    selected_.resize(o.rows.size() * hidden);
    for (size_t i = 0; i < o.rows.size(); ++i) {
      // The last rank normally sent only these rows (trimmed); a full record is accepted too.
      const size_t src = rec.trimmed ? i : static_cast<size_t>(o.rows[i]);
      std::memcpy(selected_.data() + i * hidden, rec.hidden.data() + src * hidden, hidden * sizeof(float));
    }
    r.logits.resize(o.rows.size() * static_cast<size_t>(vocab()));
    const auto t0 = std::chrono::steady_clock::now();
    shard_->compute_logits(selected_.data(), r.n_rows, r.logits.data());
    busy_ += std::chrono::steady_clock::now() - t0;
    return r;
  }
}

// ---- Sampling on rank 0's device (collect side) ----

bool PipelineRunner::samples_on_device() const {
  return options_.device_sampling && !tail_on_last_ && shard_->samples_on_device();
}

uint64_t PipelineRunner::submit_sampled(const ScheduledStep& step, std::vector<int> rows, uint32_t micro_batch,
                                        std::vector<SampleRequest> requests) {
  if (!requests.empty() && !samples_on_device()) {
    throw InvalidArgument("pipeline: rank 0 (" + shard_->device_name() + ") does not sample on its device" +
                          (tail_on_last_ ? " (the tail is on the last rank)" : ""));
  }
  std::vector<char> named(rows.size(), 0);
  for (const SampleRequest& q : requests) {
    if (q.row < 0 || q.row >= static_cast<int>(rows.size()) || named[static_cast<size_t>(q.row)]) {
      throw InvalidArgument("pipeline: a sample request names a missing or repeated row");
    }
    named[static_cast<size_t>(q.row)] = 1;
  }
  const uint64_t id = submit(step, std::move(rows), micro_batch);
  // The step is outstanding now; only this (the scheduler's) thread collects it, and the idle
  // statistics thread stays away while a step is in flight, so it is still there to attach to.
  std::lock_guard<std::mutex> lk(mu_);
  for (auto it = outstanding_.rbegin(); it != outstanding_.rend(); ++it) {
    if (it->kind == StageKind::kStep && it->step_id == id) {
      it->requests = std::move(requests);
      break;
    }
  }
  return id;
}

// Rows read on the host (prompt logprobs) are computed as logits into their places in r.logits;
// the requested rows are sampled where the head's weights are, so only tokens and logprobs come
// back from a GPU.
void PipelineRunner::finish_sampled(const Outstanding& o, const StageRecord& rec, PipelineResult& r) {
  const size_t hidden = static_cast<size_t>(limits_.hidden);
  const size_t v = static_cast<size_t>(vocab());
  auto gather = [&](size_t at, size_t i) {
    // The last rank normally sent only the rows (trimmed); a full record is accepted too.
    const size_t src = rec.trimmed ? i : static_cast<size_t>(o.rows[i]);
    std::memcpy(selected_.data() + at * hidden, rec.hidden.data() + src * hidden, hidden * sizeof(float));
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<char> sampled(o.rows.size(), 0);
  for (const SampleRequest& q : o.requests) sampled[static_cast<size_t>(q.row)] = 1;
  const size_t n_host = o.rows.size() - o.requests.size();
  if (n_host > 0) {
    std::vector<size_t> host_index;
    selected_.resize(n_host * hidden);
    for (size_t i = 0; i < o.rows.size(); ++i) {
      if (!sampled[i]) gather(host_index.size(), i), host_index.push_back(i);
    }
    host_logits_.resize(n_host * v);
    shard_->compute_logits(selected_.data(), static_cast<int>(n_host), host_logits_.data());
    r.logits.resize(o.rows.size() * v);
    for (size_t k = 0; k < n_host; ++k) {
      std::memcpy(r.logits.data() + host_index[k] * v, host_logits_.data() + k * v, v * sizeof(float));
    }
  }
  selected_.resize(o.requests.size() * hidden);
  for (size_t k = 0; k < o.requests.size(); ++k) gather(k, static_cast<size_t>(o.requests[k].row));
  r.samples.resize(o.requests.size());
  shard_->sample_logits(selected_.data(), o.requests, r.samples.data());
  busy_ += std::chrono::steady_clock::now() - t0;
}

// ---- end of sampling on rank 0's device ----

void PipelineRunner::drain() {
  std::lock_guard<std::mutex> lk(mu_);
  drain_locked();
}

void PipelineRunner::drain_locked() {
  while (!outstanding_.empty()) {
    if (!broken_.empty()) broken(broken_);
    Outstanding o = std::move(outstanding_.front());
    outstanding_.pop_front();
    if (o.kind == StageKind::kStep) --in_flight_;
    StageRecord rec = receive(o);
    if (o.kind == StageKind::kStats) finish_stats_round(rec);
  }
}

}  // namespace jarvis
