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
//
// Between two GPU ranks on different GPUs (worker to worker, and rank 0 to rank 1) the hidden
// state of a kStep goes device to device over NCCL (device_hop.h): the record still goes on the
// ring link, in the device form, and the rows follow on an NCCL link set up over that same link
// when the kHello passes. Every other hop (back to rank 0, GPU<->CPU, two shards on one GPU,
// JARVIS_NCCL=0) keeps the rows in the record.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "engine/pipeline/device_hop.h"
#include "engine/pipeline/stage_message.h"
#include "kernels/cpu/thread_pool.h"
#include "transport/link.h"
#include "transport/nccl/device_link.h"

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

  // This rank's device as the hello will announce it. set_nccl(false) (before run()) forces the
  // host path on both of this rank's hops, as JARVIS_NCCL=0 does; it is on by default where the
  // shard keeps its hidden state on a GPU and the build has NCCL.
  const StageDevice& device() const { return device_; }
  void set_nccl(bool enabled) {
    nccl_wanted_ = enabled;
    device_.nccl = enabled && device_.cuda && device_links_available_;
  }
  // Replaces how device links are made (default transport::make_nccl_device_link, available in
  // a CUDA build only): for tests that run the device path without GPUs.
  using DeviceLinkFactory = std::function<std::unique_ptr<transport::DeviceLink>(
      transport::Link& control, int rank, int device, std::chrono::nanoseconds timeout)>;
  void set_device_link_factory(DeviceLinkFactory factory) {
    make_device_link_ = std::move(factory);
    device_links_available_ = true;
    set_nccl(nccl_wanted_);
  }
  // Whether the last hello set up NCCL on the input / output hop.
  bool nccl_in() const { return nccl_in_ != nullptr; }
  bool nccl_out() const { return nccl_out_ != nullptr; }
  // Bounds the hello's device exchange and NCCL setup, and every NCCL transfer (a dead peer).
  void set_device_timeout(std::chrono::milliseconds t) { device_timeout_ = t; }

 private:
  void check_hello(const StageHello& hello) const;  // throws InvalidArgument saying what differs
  void check_tail() const;  // no embedding; the tail only on the last rank (InvalidArgument)
  void init_device();
  // The hello's device exchange: the input hop when it arrives, the output hop once forwarded.
  void setup_input_hop(transport::Link& in, const StageHello& hello);
  void setup_output_hop(transport::Link& out, int position);
  // One kStep: runs the layers wherever the hidden state is and fills m's payload for the next
  // hop; returns true when the rows must follow on nccl_out_ after the record.
  bool run_step(StageRecord& rec, transport::Message& m, StageWorkerResult& res);

  std::unique_ptr<cpu::ThreadPool> pool_;  // the CPU shard's (first constructor)
  std::unique_ptr<ShardForward> owned_;    // likewise
  ShardForward& shard_;
  StageLimits limits_;
  bool is_last_;                 // holds the model's last layer: trims steps to their rows
  bool is_tail_;                 // holds final norm + lm_head (last rank only): sends logits back
  std::vector<float> selected_;  // the trimmed rows
  std::vector<float> logits_;    // their logits, when is_tail_
  StageDevice device_;
  bool nccl_wanted_ = true;
  bool device_links_available_ = transport::nccl_device_link_built();
  DeviceLinkFactory make_device_link_ = transport::make_nccl_device_link;
  std::unique_ptr<transport::DeviceLink> nccl_in_, nccl_out_;
  std::chrono::milliseconds device_timeout_{30000};
  std::atomic<bool> stop_{false};
  std::chrono::milliseconds poll_{100};
};

}  // namespace jarvis
