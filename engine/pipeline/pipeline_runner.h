// Rank 0's end of the pipeline ring: embeds a scheduled step, runs its own layers, sends the
// hidden state to rank 1, and when the record comes back from the last rank computes logits for
// the rows that want them (or, when the last rank holds the tail, returns the logits it sent).
// Rank 0's compute goes through a ShardForward, so rank 0 may be on the CPU or a GPU while the
// workers are on either (hidden states cross the links in host memory, except on the hop to
// rank 1 when both are GPUs NCCL can join: rank0_device_hop.h). submit() and collect()
// are split so up to max_in_flight steps (micro-batches) can be in the ring at once: while rank 1 works on step m, rank 0 already runs
// step m+1. The ring keeps order, so collect() always returns the oldest outstanding step.
//
// Ring statistics: about every stats_interval a kStats record goes round with the steps (sent by
// submit() just before a step, consumed by collect() like a kFree echo); every worker appends its
// counters. While no step is in the ring the runner's own thread sends it (and consumes any kFree
// echoes before it), so the numbers stay fresh without traffic. Each round ends in
// options.on_stats and last_ring_stats().
//
// One thread (the scheduler loop) calls submit / collect / free_sequences / drain; the public
// methods take an internal lock only so the idle statistics thread can slip in between.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <memory>

#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "csrc/sampling/sample_request.h"
#include "engine/pipeline/rank0_device_hop.h"
#include "engine/pipeline/ring_stats.h"
#include "engine/pipeline/stage_message.h"
#include "engine/scheduler.h"
#include "kernels/cpu/thread_pool.h"
#include "transport/link.h"

namespace jarvis {

// The ring failed: a worker reported an error (its text is in what()), a link broke or timed out,
// or a record came back that was not the one expected. The runner is unusable afterwards.
class PipelineError : public Error {
 public:
  using Error::Error;
};

struct PipelineOptions {
  int max_in_flight = 1;                                // steps between submit and collect
  std::chrono::milliseconds recv_timeout{30000};        // one step's round trip at most
  // How often a kStats record goes round the ring (0: never). It is small (112 bytes per rank).
  std::chrono::milliseconds stats_interval{1000};
  // Called with every completed round (from the scheduler thread or the idle thread, with the
  // runner's lock held: keep it short, and do not call back into the runner).
  std::function<void(const RingStats&)> on_stats;
  // ---- Sampling on rank 0's device (collect side) ----
  // With false, a shard that samples on its device is not asked to: logits come to the host and
  // the engine's sampler reads them (`jarvis-serve --device-sampling off`, for debugging).
  bool device_sampling = true;
};

struct PipelineResult {
  uint64_t step_id = 0;
  uint32_t micro_batch = 0;
  int n_rows = 0;
  std::vector<float> logits;  // [n_rows, vocab], rows in the order given to submit()
  // After submit_sampled(): one per request, in request order. Its rows are not filled in
  // `logits`, which is empty when every row was sampled.
  std::vector<SampleResult> samples;
};

class PipelineRunner {
 public:
  // Rank 0's shard runs through `shard` (csrc/model/shard_forward.h: the CPU's CpuShard or a GPU's
  // make_cuda_shard), which must hold the embedding and layers [0, end) for some end. With the head
  // too (has_head) rank 0 computes logits; without it the last rank must hold the tail and send the
  // logits back (checked by handshake()); sampling stays with the caller (the engine's sampler), or
  // with submit_sampled() on rank 0's device when it holds the head. The shard's
  // num_blocks and page_size must equal the workers' (block ids from rank 0's block manager index
  // every rank's cache). Links are borrowed: to_next goes to rank 1, from_last comes from the last rank.
  PipelineRunner(std::unique_ptr<ShardForward> shard, transport::Link& to_next, transport::Link& from_last,
                 PipelineOptions options = {});
  // On the CPU: `model` (which must outlive the runner) in a CpuShard with a KV cache of num_blocks
  // pages of page_size tokens, on `threads` compute threads.
  PipelineRunner(const Model& model, int num_blocks, int page_size, int threads, transport::Link& to_next,
                 transport::Link& from_last, PipelineOptions options = {});
  // Stops the idle statistics thread (waits for a round it has in flight).
  ~PipelineRunner();
  PipelineRunner(const PipelineRunner&) = delete;
  PipelineRunner& operator=(const PipelineRunner&) = delete;

  // Sends a kHello round the ring before the first step: every rank checks that it fits (model,
  // KV layout, its layers follow the previous rank's) and the ring must end at the model's last
  // layer. Returns each rank's [first, end) layers in ring order; throws PipelineError naming what
  // does not fit. Call with nothing in flight.
  std::vector<std::pair<int, int>> handshake();

  // Runs embed + own layers for `step` and sends it into the ring; returns its step id. `rows` are
  // indices into the step's tokens (concatenated in step order) whose logits collect() returns.
  // Throws InvalidArgument when max_in_flight steps are already outstanding or a row is outside
  // the step, PipelineError when the ring is broken.
  uint64_t submit(const ScheduledStep& step, std::vector<int> rows, uint32_t micro_batch = 0);

  // ---- Sampling on rank 0's device (collect side) ----
  // Rank 0 holds the head and its shard samples on its device (ShardForward::samples_on_device),
  // unless PipelineOptions::device_sampling is off. False with the tail on the last rank: its
  // logits arrive as host floats, so the host samples them.
  bool samples_on_device() const;
  // As submit(), and when the step comes back the rows named by requests[i].row (indices into
  // `rows`, distinct) are sampled on rank 0's device instead of returned as logits (collect():
  // PipelineResult::samples). The requests travel with the step; with several steps in flight each
  // keeps its own. Throws InvalidArgument when !samples_on_device() or a request names a missing or
  // repeated row (nothing is sent then).
  uint64_t submit_sampled(const ScheduledStep& step, std::vector<int> rows, uint32_t micro_batch,
                          std::vector<SampleRequest> requests);

  // Waits for the oldest outstanding step to come back and returns its logits.
  // Throws InvalidArgument when none is outstanding, PipelineError for a ring failure.
  PipelineResult collect();

  // submit + collect, for a caller with one step at a time.
  PipelineResult run(const ScheduledStep& step, std::vector<int> rows) {
    submit(step, std::move(rows));
    return collect();
  }

  // Tells every rank these sequences finished. Sent in order with the steps; its echo is consumed
  // by a later collect() (or drain()).
  void free_sequences(const std::vector<int64_t>& seq_ids);
  // Waits until every record sent has come back (steps are dropped: call collect() first to keep them).
  void drain();

  // The latest completed kStats round (rank 0's own entry first), if any.
  std::optional<RingStats> last_ring_stats() const;

  int in_flight() const { return in_flight_; }
  int vocab() const { return shard_->config().vocab_size; }
  const ShardForward& shard() const { return *shard_; }

  // Rows of the last token of every slice that wants logits: what sampling reads.
  static std::vector<int> sample_rows(const ScheduledStep& step);

  // ---- Rank 0's hop to rank 1 over NCCL (rank0_device_hop.h); call these before handshake() ----
  // On where rank 0's shard keeps hidden state on a GPU and the build has NCCL; set_nccl(false)
  // forces the host path (as JARVIS_NCCL=0). The factory and timeout are for tests.
  void set_nccl(bool enabled) { device_hop_->set_nccl(enabled); }
  void set_device_link_factory(Rank0DeviceHop::DeviceLinkFactory factory) {
    device_hop_->set_device_link_factory(std::move(factory));
  }
  void set_device_timeout(std::chrono::milliseconds t) { device_hop_->set_timeout(t); }
  const StageDevice& device() const { return device_hop_->device(); }
  // Whether the last handshake() set NCCL up on the hop to rank 1.
  bool nccl_out() const { return device_hop_->nccl(); }
  // ---- end NCCL hop ----

  // What rank 0 computes with: the shard, and the thread pool a CPU shard borrows (else null).
  struct Rank0Parts {
    std::unique_ptr<cpu::ThreadPool> pool;
    std::unique_ptr<ShardForward> shard;
  };

 private:
  PipelineRunner(Rank0Parts parts, transport::Link& to_next, transport::Link& from_last, PipelineOptions options);

  struct Outstanding {
    StageKind kind = StageKind::kStep;
    uint64_t step_id = 0;
    uint32_t micro_batch = 0;
    int n_tokens = 0;
    std::vector<int> rows;
    std::vector<SampleRequest> requests;  // submit_sampled(): rows sampled on rank 0's device
  };
  void send(const std::vector<uint8_t>& record, uint32_t tag);
  bool stats_due() const;
  void send_stats_request();                 // appends a kStats entry to outstanding_
  void finish_stats_round(StageRecord& rec);  // rank 0's entry + the workers' -> last_stats_, on_stats
  void idle_stats_loop();
  PipelineResult collect_locked();
  void drain_locked();
  // Receives the next record, checks it is `expect`'s echo, returns it decoded.
  StageRecord receive(const Outstanding& expect);
  [[noreturn]] void broken(const std::string& why);
  // Send path of a step whose hop to rank 1 is NCCL: the header in device form on to_next_, then
  // the rows from the shard's device buffer (PipelineError on failure).
  void send_device_step(const std::vector<uint8_t>& record, uint32_t tag, int n_tokens);
  // collect_locked()'s head for a step with sample requests: host rows' logits, the rest sampled.
  void finish_sampled(const Outstanding& o, const StageRecord& rec, PipelineResult& r);

  std::unique_ptr<cpu::ThreadPool> pool_;  // the CPU shard's threads; null for other devices
  std::unique_ptr<ShardForward> shard_;
  std::unique_ptr<Rank0DeviceHop> device_hop_;  // the hop to rank 1: host path or NCCL
  transport::Link& to_next_;
  transport::Link& from_last_;
  PipelineOptions options_;
  bool tail_on_last_ = false;  // rank 0 lacks the head: the last rank computes logits
  StageLimits limits_;
  std::deque<Outstanding> outstanding_;  // in send order: the order records come back
  int in_flight_ = 0;                    // kStep entries in outstanding_
  uint64_t next_step_id_ = 1;
  std::string broken_;                   // set once the ring failed
  std::vector<int32_t> tokens_;
  std::vector<float> hidden_, selected_;
  std::vector<float> host_logits_;  // finish_sampled(): [rows read on the host, vocab]

  // Ring statistics. mu_ guards everything above and below while a public method runs.
  mutable std::mutex mu_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::nanoseconds busy_{0};  // embed + own layers (+ head when rank 0 holds the tail)
  uint64_t steps_ = 0, step_tokens_ = 0;
  size_t ring_size_ = 0;  // ranks, from handshake(); 0 before it
  bool stats_outstanding_ = false;
  std::chrono::steady_clock::time_point last_stats_sent_{};
  std::optional<RingStats> last_stats_;
  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  bool stop_idle_ = false;
  std::thread idle_thread_;  // last: starts once everything above exists
};

}  // namespace jarvis
