// A pipeline ring on this machine: rank 0 is the calling process, ranks 1..N-1 are jarvis-worker
// child processes. Starts them in the order the pipeline README asks for with port 0 (the last
// worker first, each reporting its port through --port-file), connects rank 0 to both ends of the
// ring, and runs the rendezvous. Used by `jarvis-serve --ranks N`.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/model/device.h"
#include "csrc/model/load_options.h"
#include "transport/link.h"

namespace jarvis {

struct LocalRingOptions {
  std::string worker_bin;          // the jarvis-worker executable
  std::string model_path;
  LoadOptions load;                // passed on as each worker's --weights
  std::vector<ShardSpec> plan;     // one per rank, rank 0 first (plan_split)
  int kv_blocks = 0;               // every rank's, rank 0's block manager included
  int page_size = 16;
  int worker_threads = 1;
  std::chrono::milliseconds timeout{60000};  // per worker start and for connecting
  // Link shapes (transport/link_spec.h specs) for the workers, each shaping what it sends; rank 0
  // shapes its own link to rank 1 (the caller wraps take_to_next()).
  std::string link_delay, link_jitter, link_bandwidth;
  // devices[r]: rank r's (jarvis-worker --device; missing or cpu: the CPU). GPU workers get these
  // settings and reserve exactly kv_blocks blocks.
  std::vector<DeviceSpec> devices;
  GpuDType gpu_dtype = GpuDType::kF16;
  double gpu_memory_fraction = 0.9;
};

class LocalRing {
 public:
  // Launches and connects every worker; throws Error (naming the rank) when one does not come up.
  // Workers started before the failure are killed.
  explicit LocalRing(const LocalRingOptions& options);
  // Kills whatever worker is still running (see stop()).
  ~LocalRing();
  LocalRing(const LocalRing&) = delete;
  LocalRing& operator=(const LocalRing&) = delete;

  // The links rank 0 uses: to rank 1, and from the last rank. Each may be taken once.
  std::unique_ptr<transport::Link> take_to_next() { return std::move(to_next_); }
  std::unique_ptr<transport::Link> take_from_last() { return std::move(from_last_); }

  // Call after rank 0's links are closed (that makes the workers exit): waits up to `grace` for
  // them, then SIGKILLs the ones still running. Idempotent.
  void stop(std::chrono::milliseconds grace);
  // "" while every worker runs; else which rank exited and how (that worker is reaped). For a
  // periodic check from the thread that later calls stop().
  std::string check_workers();
  // Worker process ids, rank 1 first (0 once reaped).
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  std::vector<pid_t> pids_;  // index r - 1 is rank r
  std::string dir_;          // port files
  std::unique_ptr<transport::Link> to_next_, from_last_;
};

}  // namespace jarvis
