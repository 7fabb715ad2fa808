#include "engine/pipeline/pipeline_launch.h"

#include <cstdio>

#include "engine/cluster/model_identity.h"
#include "engine/cluster/placement.h"
#include "engine/pipeline/ring_connect.h"
#include "transport/link_spec.h"
#include "transport/measured_link.h"
#include "transport/shaper.h"

namespace jarvis {
namespace {

// Rank 0's jitter seed; rank r's is r + 1 (jarvis-worker), so no two links draw alike.
constexpr uint64_t kRank0ShaperSeed = 1;

std::string address(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

PipelineLaunch::PipelineLaunch(const PipelineLaunchOptions& o, const Model& model,
                               std::unique_ptr<ShardForward> rank0_shard) {
  if (rank0_shard && (rank0_shard->num_blocks() != o.kv_blocks || rank0_shard->page_size() != o.page_size)) {
    throw InvalidArgument("rank 0's shard has " + std::to_string(rank0_shard->num_blocks()) + " KV blocks of " +
                          std::to_string(rank0_shard->page_size()) + " tokens, the ring " +
                          std::to_string(o.kv_blocks) + " of " + std::to_string(o.page_size));
  }
  auto device_of = [&o](size_t r) { return r < o.devices.size() ? o.devices[r] : DeviceSpec{}; };
  auto on_device = [&](size_t r) { return device_of(r).is_cuda() ? " on " + device_of(r).str() : std::string(); };
  std::unique_ptr<transport::Link> to_next, from_last;
  transport::LinkShape shape;
  if (o.cluster) {
    const RankSetup& c = *o.cluster;
    const transport::UcxOptions uo = ring_ucx_options(c.all_loopback, o.timeout);
    transport::UcxListener listener(c.listen_host, static_cast<uint16_t>(c.listen_port), uo);
    RankHello mine = RankHello::make(0, c.world_size, c.shard, model_fingerprint(c.model_path));
    mine.kv_blocks = o.kv_blocks;
    mine.page_size = o.page_size;
    RingLinks links = connect_ring_rank0(listener, c.next_host, static_cast<uint16_t>(c.next_port), uo, mine, c.plan,
                                         o.timeout);
    to_next = std::move(links.to_next);
    from_last = std::move(links.from_prev);
    shape = c.send_shape;
    description_.push_back("rank 0: listening on " + address(c.listen_host, c.listen_port) + ", next rank at " +
                           address(c.next_host, c.next_port) + (c.all_loopback ? "" : " (UCX over TCP)"));
  } else if (o.transport == PipelineLaunchOptions::Transport::kInproc) {
    InprocRingOptions io;
    io.model_path = o.model_path;
    io.load = o.load;
    io.plan = o.plan;
    io.kv_blocks = o.kv_blocks;
    io.page_size = o.page_size;
    io.worker_threads = o.worker_threads;
    io.shapes = transport::parse_link_shapes(o.link_delay, o.link_jitter, o.link_bandwidth);
    io.timeout = o.timeout;
    io.devices = o.devices;
    io.gpu_dtype = o.gpu_dtype;
    io.gpu_memory_fraction = o.gpu_memory_fraction;
    shape = io.shapes.get(0, 1);
    inproc_ = std::make_unique<InprocRing>(io);
    to_next = inproc_->take_to_next();
    from_last = inproc_->take_from_last();
    for (size_t r = 1; r < o.plan.size(); ++r) {
      description_.push_back(describe_shard(static_cast<int>(r), o.plan[r]) + " in a thread (in-process links)" +
                             on_device(r));
    }
  } else {
    LocalRingOptions ro;
    ro.worker_bin = o.worker_bin;
    ro.model_path = o.model_path;
    ro.load = o.load;
    ro.plan = o.plan;
    ro.kv_blocks = o.kv_blocks;
    ro.page_size = o.page_size;
    ro.worker_threads = o.worker_threads;
    ro.timeout = o.timeout;
    ro.link_delay = o.link_delay;
    ro.link_jitter = o.link_jitter;
    ro.link_bandwidth = o.link_bandwidth;
    ro.devices = o.devices;
    ro.gpu_dtype = o.gpu_dtype;
    ro.gpu_memory_fraction = o.gpu_memory_fraction;
    // Bad specs fail here, before any worker starts.
    shape = transport::parse_link_shapes(o.link_delay, o.link_jitter, o.link_bandwidth).get(0, 1);
    local_ = std::make_unique<LocalRing>(ro);
    to_next = local_->take_to_next();
    from_last = local_->take_from_last();
    for (size_t r = 1; r < o.plan.size(); ++r) {
      description_.push_back(describe_shard(static_cast<int>(r), o.plan[r]) + " in jarvis-worker pid " +
                             std::to_string(local_->pids()[r - 1]) + on_device(r));
    }
  }
  if (shape.shaped()) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "rank 0 -> 1: shaped (delay %.3f ms, jitter %.3f ms, %.0f bit/s)",
                  static_cast<double>(shape.delay.count()) / 1e6, static_cast<double>(shape.jitter.count()) / 1e6,
                  shape.bits_per_second);
    description_.push_back(buf);
  }
  to_next = transport::shape_if_needed(std::move(to_next), shape, kRank0ShaperSeed);
  // Measured after the rendezvous (its messages are read raw): bytes, messages, ping round trips
  // for the per-link metrics (transport/measured_link.h, ring_stats.h).
  to_next = transport::make_measured_link(std::move(to_next));
  from_last = transport::make_measured_link(std::move(from_last));
  if (rank0_shard) {
    executor_ = std::make_unique<PipelineExecutor>(std::move(rank0_shard), std::move(to_next), std::move(from_last),
                                                   o.pipeline);
  } else {
    executor_ = std::make_unique<PipelineExecutor>(model, o.kv_blocks, o.page_size, o.threads, std::move(to_next),
                                                   std::move(from_last), o.pipeline);
  }
  executor_->handshake();
}

PipelineLaunch::~PipelineLaunch() {
  executor_.reset();
  stop(std::chrono::milliseconds(0));
}

}  // namespace jarvis
