// How rank 0 (jarvis-serve) brings up its pipeline ring and gets the engine's executor:
//   - local: ranks 1..N-1 are jarvis-worker children of this process (LocalRing, --ranks N), or
//     threads of this process over in-process links (InprocRing, --transport inproc);
//   - cluster: the other ranks run on the hosts of a cluster file (each started there with
//     `jarvis-worker --cluster FILE`); rank 0 listens on its node's address, connects to rank 1's,
//     and the ring rendezvous checks that everyone agrees (engine/cluster/rank_setup.h).
// Either way rank 0 shapes what it sends to rank 1 (transport/shaper.h) and every worker shapes
// what it sends, so each hop of the ring carries its link's delay/jitter/bandwidth once.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "engine/cluster/rank_setup.h"
#include "engine/pipeline/inproc_ring.h"
#include "engine/pipeline/local_ring.h"
#include "engine/pipeline/pipeline_executor.h"

namespace jarvis {

struct PipelineLaunchOptions {
  std::string model_path;
  LoadOptions load;             // every rank this process starts loads with these (--weights)
  std::vector<ShardSpec> plan;  // one per rank, rank 0 first
  int kv_blocks = 0;            // every rank's
  int page_size = 16;
  int threads = 1;              // rank 0's compute threads
  PipelineOptions pipeline;
  std::chrono::milliseconds timeout{60000};  // worker start-up, connecting, rendezvous
  // Local ranks (cluster unset): processes over UCX or threads; the worker executable and its
  // threads; link specs (transport/link_spec.h) for every rank.
  enum class Transport { kUcx, kInproc };
  Transport transport = Transport::kUcx;
  std::string worker_bin;
  int worker_threads = 1;
  std::string link_delay, link_jitter, link_bandwidth;
  // Local ranks: every rank's device, rank 0 first (empty: all on the CPU). Rank 0's own shard is
  // the caller's (the constructor's rank0_shard); a GPU worker reserves exactly kv_blocks blocks
  // (DeviceOutOfMemory when they do not fit) with these GPU settings.
  std::vector<DeviceSpec> devices;
  GpuDType gpu_dtype = GpuDType::kF16;
  double gpu_memory_fraction = 0.9;
  // Cluster file: rank 0's setup (its shapes already merged with the command line's specs).
  std::optional<RankSetup> cluster;
};

class PipelineLaunch {
 public:
  // Starts or joins the ring and runs the rendezvous and the KV handshake; throws Error naming
  // what failed (a worker that did not start, a rank that did not connect, a mismatch). Rank 0
  // computes with rank0_shard when given (a GPU shard: its num_blocks and page_size must be
  // options.kv_blocks and page_size), else on the CPU with rank0_model and options.threads.
  PipelineLaunch(const PipelineLaunchOptions& options, const Model& rank0_model,
                 std::unique_ptr<ShardForward> rank0_shard = nullptr);
  ~PipelineLaunch();
  PipelineLaunch(const PipelineLaunch&) = delete;
  PipelineLaunch& operator=(const PipelineLaunch&) = delete;

  std::unique_ptr<StepExecutor> take_executor() { return std::move(executor_); }
  // Local workers: "" while all run, else which one exited (LocalRing::check_workers). Remote
  // ranks are watched by the links themselves (bootstrap socket, heartbeats).
  std::string check_workers() { return local_ ? local_->check_workers() : inproc_ ? inproc_->check_workers() : ""; }
  // After the executor is destroyed (that closes the ring): reaps local workers (LocalRing::stop).
  void stop(std::chrono::milliseconds grace) {
    if (local_) local_->stop(grace);
    if (inproc_) inproc_->stop(grace);
  }
  // One line per rank for the log.
  const std::vector<std::string>& description() const { return description_; }

 private:
  std::unique_ptr<LocalRing> local_;
  std::unique_ptr<InprocRing> inproc_;
  std::unique_ptr<PipelineExecutor> executor_;
  std::vector<std::string> description_;
};

}  // namespace jarvis
