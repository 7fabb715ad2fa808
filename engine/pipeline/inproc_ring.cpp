#include "engine/pipeline/inproc_ring.h"

#include "csrc/util/error.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/rendezvous.h"
#include "transport/inproc_link.h"
#include "transport/measured_link.h"
#include "transport/shaper.h"

namespace jarvis {

using Clock = std::chrono::steady_clock;

InprocRing::InprocRing(const InprocRingOptions& options) : options_(options) {
  const InprocRingOptions& o = options_;
  const int n = static_cast<int>(o.plan.size());
  if (n < 2) throw InvalidArgument("InprocRing: needs at least 2 ranks");
  // hops[k] carries rank k's records to rank k + 1 (mod n): first end sends, second receives.
  std::vector<std::pair<std::unique_ptr<transport::Link>, std::unique_ptr<transport::Link>>> hops;
  for (int k = 0; k < n; ++k) hops.push_back(transport::make_inproc_link_pair());
  to_next_ = std::move(hops[0].first);
  from_last_ = std::move(hops[static_cast<size_t>(n - 1)].second);
  try {
    hash_ = model_fingerprint(o.model_path);
    for (int r = 1; r < n; ++r) {
      auto rank = std::make_unique<Rank>();
      rank->rank = r;
      const DeviceSpec device = static_cast<size_t>(r) < o.devices.size() ? o.devices[static_cast<size_t>(r)]
                                                                          : DeviceSpec{};
      if (device.is_cuda()) {
        try {
          check_cuda_device(device.index);  // before the load
        } catch (const std::exception& e) {
          throw Error("rank " + std::to_string(r) + ": " + e.what());
        }
      }
      rank->model = load_model(o.model_path, o.plan[static_cast<size_t>(r)], o.load);
      if (device.is_cuda()) {
        CudaShardOptions co;
        co.device = device.index;
        co.dtype = o.gpu_dtype;
        co.gpu_memory_fraction = o.gpu_memory_fraction;
        co.page_size = o.page_size;
        co.num_blocks = o.kv_blocks;  // rank 0's block ids index this cache directly
        rank->gpu = make_cuda_shard(*rank->model, co);
        rank->worker = std::make_unique<StageWorker>(*rank->gpu);
      } else {
        rank->worker = std::make_unique<StageWorker>(*rank->model, o.kv_blocks, o.page_size, o.worker_threads);
      }
      rank->in = std::move(hops[static_cast<size_t>(r - 1)].second);
      // Seeds as jarvis-worker's (rank + 1), so a shaped run draws the same jitter either way.
      rank->out = transport::shape_if_needed(std::move(hops[static_cast<size_t>(r)].first),
                                             o.shapes.get(r, (r + 1) % n), static_cast<uint64_t>(r + 1));
      ranks_.push_back(std::move(rank));
    }
    for (auto& rank : ranks_) {
      Rank* r = rank.get();
      r->thread = std::thread([this, r] { serve(*r); });
    }
    RankHello mine = RankHello::make(0, n, o.plan[0], hash_);
    mine.kv_blocks = o.kv_blocks;
    mine.page_size = o.page_size;
    rendezvous_ring(mine, from_last_.get(), to_next_.get(), o.plan, o.timeout);
  } catch (...) {
    to_next_.reset();  // the first worker sees its input close, and so on down the ring
    from_last_.reset();
    stop(std::chrono::milliseconds(0));
    throw;
  }
}

void InprocRing::serve(Rank& r) {
  const InprocRingOptions& o = options_;
  std::string reason;
  try {
    RankHello hello = RankHello::make(r.rank, static_cast<int>(o.plan.size()), r.model->shard(), hash_);
    hello.kv_blocks = o.kv_blocks;
    hello.page_size = o.page_size;
    rendezvous_ring(hello, r.in.get(), r.out.get(), {}, o.timeout);
    // As jarvis-worker: measured after the rendezvous, for the per-link metrics.
    r.in = transport::make_measured_link(std::move(r.in));
    r.out = transport::make_measured_link(std::move(r.out));
    const StageWorkerResult result = r.worker->run(*r.in, *r.out);
    reason = result.reason;
  } catch (const std::exception& e) {
    reason = e.what();
  }
  r.out.reset();  // tells the next rank to stop, as a worker process exiting would
  r.in.reset();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    r.reason = reason;
  }
  r.done.store(true);
}

std::string InprocRing::check_workers() {
  for (auto& r : ranks_) {
    if (!r->done.load() || r->reported) continue;
    r->reported = true;
    std::lock_guard<std::mutex> lock(r->mu);
    return "pipeline rank " + std::to_string(r->rank) + " (thread) ended: " + r->reason;
  }
  return "";
}

InprocRing::~InprocRing() {
  to_next_.reset();
  from_last_.reset();
  stop(std::chrono::milliseconds(0));
}

void InprocRing::stop(std::chrono::milliseconds grace) {
  const auto deadline = Clock::now() + grace;
  for (auto& r : ranks_) {
    while (!r->done.load() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!r->done.load()) r->worker->stop();
  }
  for (auto& r : ranks_) {
    if (r->thread.joinable()) r->thread.join();
  }
}

}  // namespace jarvis
