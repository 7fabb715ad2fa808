// A pipeline ring inside this process: ranks 1..N-1 are threads running the same StageWorker,
// rendezvous and link shaping as jarvis-worker, joined by in-process links instead of UCX
// (`jarvis-serve --ranks N --transport inproc`). It separates what the transport costs from
// what the pipeline does, and tests the data path without sockets.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/link.h"
#include "transport/link_spec.h"

namespace jarvis {

struct InprocRingOptions {
  std::string model_path;
  LoadOptions load;             // every worker rank's model load
  std::vector<ShardSpec> plan;  // one per rank, rank 0 first
  int kv_blocks = 0;
  int page_size = 16;
  int worker_threads = 1;       // compute threads per worker rank
  transport::LinkShapes shapes;  // each worker shapes the link it sends on (rank 0's is the caller's)
  std::chrono::milliseconds timeout{60000};  // rendezvous
  // devices[r]: rank r's (missing or cpu: the CPU); a GPU rank reserves exactly kv_blocks blocks.
  std::vector<DeviceSpec> devices;
  GpuDType gpu_dtype = GpuDType::kF16;
  double gpu_memory_fraction = 0.9;
};

class InprocRing {
 public:
  // Loads every worker's shard, starts the worker threads and runs rank 0's side of the
  // rendezvous. Throws (and stops the threads) when a shard does not load or the rendezvous fails.
  explicit InprocRing(const InprocRingOptions& options);
  ~InprocRing();
  InprocRing(const InprocRing&) = delete;
  InprocRing& operator=(const InprocRing&) = delete;

  std::unique_ptr<transport::Link> take_to_next() { return std::move(to_next_); }
  std::unique_ptr<transport::Link> take_from_last() { return std::move(from_last_); }
  // "" while every worker thread runs; else which rank ended and why (reported once).
  std::string check_workers();
  // Call after rank 0's links are closed (the workers then end one after another): waits up to
  // `grace`, then asks the remaining workers to stop and joins every thread. Idempotent.
  void stop(std::chrono::milliseconds grace);

 private:
  struct Rank {
    int rank = 0;
    std::unique_ptr<Model> model;
    std::unique_ptr<ShardForward> gpu;  // the GPU shard the worker runs on, if any
    std::unique_ptr<StageWorker> worker;
    std::unique_ptr<transport::Link> in, out;
    std::thread thread;
    std::atomic<bool> done{false};
    bool reported = false;
    std::mutex mu;
    std::string reason;  // under mu, once done
  };
  void serve(Rank& r);  // a worker thread's life: rendezvous, StageWorker::run, close its links

  const InprocRingOptions options_;
  std::string hash_;  // the model's fingerprint, every rank's hello

  std::vector<std::unique_ptr<Rank>> ranks_;  // ranks 1..N-1
  std::unique_ptr<transport::Link> to_next_, from_last_;
};

}  // namespace jarvis
