// One middle (or last) pipeline rank: receives stage records on its input link, runs its shard's
// layers over each step's hidden state in its own KV cache, and passes the record on. A last rank
// whose shard holds the head weights (has_head: the tail, `--tail last`) also computes the logits
// of the record's rows and sends those back in the logits form; sampling stays on rank 0.
//
// The worker keeps no per-sequence state: block tables come from rank 0's block manager with
// every step, so its KvCache must have rank 0's num_blocks and page_size; a block id reused for a
// new sequence is simply overwritten (attention never reads a slot before its step writes it).
// kFree records are therefore only counted and forwarded; a kStats record gets this rank's
// counters appended (busy = compute_seconds, wall = time since run() began, its links' counters
// when they are transport::make_measured_link links); a kHello that does not fit this rank
// (model shape, KV layout, layers not following the previous rank's) is a failure. Records are
// handled strictly in arrival order, which is what lets rank 0 keep several micro-batches in the
// ring: a step's K/V writes on this rank always precede the next step's reads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "engine/pipeline/stage_message.h"
#include "kernels/cpu/thread_pool.h"
#include "transport/link.h"

namespace jarvis {

struct StageWorkerStats {
  uint64_t steps = 0;
  uint64_t tokens = 0;
  uint64_t frees = 0;
  double compute_seconds = 0;  // inside forward_layers
};

struct StageWorkerResult {
  bool ok = true;      // false: this worker failed (error says why) or the downstream link broke
  std::string reason;  // why the loop ended ("upstream closed: ...", or the error)
  StageWorkerStats stats;
};

class StageWorker {
 public:
  // `model` holds layers [first, end) and is used by this worker only while run() runs.
  StageWorker(const Model& model, int num_blocks, int page_size, int threads);
  // The same over any backend (a GPU shard from make_cuda_shard), which holds the KV cache: its
  // num_blocks and page_size must be rank 0's. `shard` must outlive the worker.
  explicit StageWorker(ShardForward& shard);

  // Handles records until the input link closes or breaks (a clean end: the ring is shutting
  // down), stop() is called, or something fails. On a failure it sends a kError record downstream
  // (best effort) so rank 0 learns the cause, then returns; it never throws for link or record
  // problems. The caller destroys `out` afterwards, which tells the next rank to stop.
  StageWorkerResult run(transport::Link& in, transport::Link& out);

  // Asks run() to return within about `poll` (thread-safe).
  void stop() { stop_.store(true); }

  const StageLimits& limits() const { return limits_; }

 private:
  void check_hello(const StageHello& hello) const;  // throws InvalidArgument saying what differs
  void check_tail() const;  // no embedding; the tail only on the last rank (InvalidArgument)

  std::unique_ptr<cpu::ThreadPool> pool_;  // the CPU shard's (first constructor)
  std::unique_ptr<ShardForward> owned_;    // likewise
  ShardForward& shard_;
  StageLimits limits_;
  bool is_last_;                 // holds the model's last layer: trims steps to their rows
  bool is_tail_;                 // holds final norm + lm_head (last rank only): sends logits back
  std::vector<float> selected_;  // the trimmed rows
  std::vector<float> logits_;    // their logits, when is_tail_
  std::atomic<bool> stop_{false};
  std::chrono::milliseconds poll_{100};
};

}  // namespace jarvis
