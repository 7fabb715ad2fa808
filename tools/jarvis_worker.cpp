// jarvis-worker: one middle or last rank of a pipeline ring. Loads layers [first, end) of a model
// (no embedding; the last rank with --tail also the final norm and lm_head), listens for the previous rank, connects to the next one, and then
// passes every stage record through its layers (engine/pipeline/stage_worker.h) until the
// previous rank closes the ring. Startup order, the same on every rank so any start order works:
// listen, connect downstream (retrying until --connect-timeout), accept upstream. Then the
// rendezvous (engine/cluster/rendezvous.h) goes round the ring: every rank proves it runs this
// engine version on the same model file before any step is run. --device cuda:N runs the layers
// on a GPU (csrc/cuda/); hidden states still cross the links in host memory, so CPU and GPU ranks
// mix in one ring. An unusable device exits 2 before the model loads.
// --cluster FILE: everything else (model, layers, addresses, KV blocks, link shapes, the node's
// "device" unless --device is given) comes from the cluster file (engine/cluster/rank_setup.h); the rank from --rank, --node, the launcher's
// environment (mpirun/srun) or the host name (engine/cluster/role.h).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/util/error.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/rank_setup.h"
#include "engine/cluster/role.h"
#include "engine/cluster/rendezvous.h"
#include "engine/pipeline/ring_connect.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/link_spec.h"
#include "tools/model_flags.h"
#include "transport/measured_link.h"
#include "transport/shaper.h"
#include "transport/ucx/ucx_link.h"

namespace {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

HostPort parse_host_port(const std::string& s, const char* flag) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 == s.size()) {
    throw jarvis::InvalidArgument(std::string(flag) + " wants HOST:PORT, got '" + s + "'");
  }
  size_t used = 0;
  const unsigned long port = std::stoul(s.substr(colon + 1), &used);
  if (used != s.size() - colon - 1 || port > 65535) {
    throw jarvis::InvalidArgument(std::string(flag) + ": bad port in '" + s + "'");
  }
  return {s.substr(0, colon), static_cast<uint16_t>(port)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jarvis-worker: one pipeline rank (its layers between a previous and a next rank)"};
  std::string model_path, listen, next, port_file, cluster_file, node;
  int first_layer = 0, end_layer = -1, threads = 1, kv_blocks = 0, page_size = 16;
  double connect_timeout_s = 60;
  int rank = -1, ranks = 0;
  bool tail = false;
  std::string link_delay, link_jitter, link_bandwidth;
  std::string device_name = "cpu", gpu_dtype = "f16";
  double gpu_memory_fraction = 0.9;
  std::string cuda_graphs = "on";
  jarvis::LoadOptions load;
  app.add_option("--cluster", cluster_file,
                 "cluster file: model, layers, addresses, KV blocks and link shapes come from it");
  app.add_option("--node", node, "with --cluster: this rank's node name (instead of --rank)");
  app.add_option("--model", model_path, "GGUF file or HF directory");
  jarvis::tools::add_load_flags(app, load);
  app.add_option("--first-layer", first_layer, "first layer of this rank");
  app.add_option("--end-layer", end_layer, "one past the last layer of this rank");
  app.add_option("--listen", listen, "HOST:PORT the previous rank connects to (port 0: any)");
  app.add_option("--next", next, "HOST:PORT of the next rank");
  app.add_option("--threads", threads, "compute threads")->check(CLI::PositiveNumber);
  app.add_option("--kv-blocks", kv_blocks, "KV blocks: must equal rank 0's")->check(CLI::PositiveNumber);
  app.add_option("--page-size", page_size, "tokens per KV block: must equal rank 0's")->check(CLI::PositiveNumber);
  app.add_option("--connect-timeout", connect_timeout_s, "seconds to wait for each neighbour");
  app.add_option("--port-file", port_file, "write the listening port here once listening (for scripts)");
  app.add_option("--rank", rank, "this rank's index in the ring (1..ranks-1)");
  app.add_flag("--tail", tail,
               "the last rank also loads the final norm and lm_head and sends logits back to rank 0 "
               "(jarvis-serve --tail last)");
  app.add_option("--ranks", ranks, "ranks in the ring, rank 0 included");
  app.add_option("--link-delay", link_delay,
                 "one-way delay per link, e.g. '1-2:2ms,*:1ms' or '1ms' (shapes what this rank sends)");
  app.add_option("--link-jitter", link_jitter, "jitter per link, e.g. '1-2:500us'");
  app.add_option("--link-bandwidth", link_bandwidth, "bandwidth cap per link, e.g. '1-2:100mbit'");
  app.add_option("--device", device_name, "cpu, cuda or cuda:N (with --cluster: overrides the node's \"device\")")
      ->capture_default_str();
  app.add_option("--gpu-dtype", gpu_dtype, "weights and activations on the GPU: f16, bf16 or f32")
      ->capture_default_str();
  app.add_option("--gpu-memory-fraction", gpu_memory_fraction,
                 "most of the GPU's free memory (after weights) the KV cache may take")
      ->capture_default_str();
  app.add_option("--cuda-graphs", cuda_graphs, "decode steps replay CUDA graphs: on or off")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    jarvis::RankSetup setup;
    if (!cluster_file.empty()) {
      for (const char* flag : {"--model", "--first-layer", "--end-layer", "--next", "--kv-blocks", "--ranks",
                               "--page-size", "--tail"}) {
        if (app.count(flag)) throw jarvis::InvalidArgument(std::string(flag) + " comes from the cluster file with --cluster");
      }
      if (app.count("--rank") && !node.empty()) throw jarvis::InvalidArgument("give --rank or --node, not both");
      const jarvis::ClusterConfig cluster = jarvis::read_cluster_config(cluster_file);
      std::optional<int> explicit_rank;
      if (app.count("--rank")) explicit_rank = rank;
      if (!node.empty()) {
        explicit_rank = cluster.rank_of(node);
        if (*explicit_rank < 0) throw jarvis::ClusterConfigError(cluster_file + ": no node is named '" + node + "'");
      }
      jarvis::Role role = jarvis::discover_role(cluster, explicit_rank);
      if (!node.empty()) role.source = "--node " + node;
      if (role.rank == 0) {
        throw jarvis::InvalidArgument(cluster_file + ": rank 0 (from " + role.source +
                                      ") is jarvis-serve's: run `jarvis-serve --cluster " + cluster_file + "` there");
      }
      setup = jarvis::rank_setup(cluster, role.rank, cluster.link_shapes(link_delay, link_jitter, link_bandwidth));
      std::fprintf(stderr, "jarvis-worker: rank %d of %d (from %s), %s\n", setup.rank, setup.world_size,
                   role.source.c_str(), jarvis::describe_shard(setup.rank, setup.shard).c_str());
      if (!listen.empty()) {  // e.g. 0.0.0.0 behind NAT; the others still dial the file's address
        const HostPort l = parse_host_port(listen, "--listen");
        setup.listen_host = l.host;
        setup.listen_port = l.port;
      }
    } else {
      for (const char* flag : {"--model", "--first-layer", "--end-layer", "--listen", "--next", "--kv-blocks",
                               "--rank", "--ranks"}) {
        if (!app.count(flag)) throw jarvis::InvalidArgument(std::string(flag) + " is required (or give --cluster)");
      }
      if (rank < 1 || ranks < 2 || rank >= ranks) throw jarvis::InvalidArgument("--rank must be in 1..ranks-1");
      const HostPort in_addr = parse_host_port(listen, "--listen");
      const HostPort out_addr = parse_host_port(next, "--next");
      setup.rank = rank;
      setup.world_size = ranks;
      setup.model_path = model_path;
      setup.shard.first_layer = first_layer;
      setup.shard.end_layer = end_layer;
      setup.shard.has_embedding = false;
      setup.shard.has_head = tail;
      setup.listen_host = in_addr.host;
      setup.listen_port = in_addr.port;
      setup.next_host = out_addr.host;
      setup.next_port = out_addr.port;
      setup.kv_blocks = kv_blocks;
      setup.page_size = page_size;
      setup.all_loopback = true;  // UCX picks its transports as before
      if (!link_delay.empty() || !link_jitter.empty() || !link_bandwidth.empty()) {
        setup.send_shape =
            jarvis::transport::parse_link_shapes(link_delay, link_jitter, link_bandwidth).get(rank, (rank + 1) % ranks);
      }
    }
    // The head (embedding) stays on rank 0; the tail may be on the last rank only.
    if (setup.shard.has_embedding) {
      throw jarvis::InvalidArgument("jarvis-worker cannot hold the head (embedding): it stays on rank 0");
    }
    if (setup.shard.has_head && setup.rank != setup.world_size - 1) {
      throw jarvis::InvalidArgument("the tail (final norm + lm_head) may only be on the last rank (" +
                                    std::to_string(setup.world_size - 1) + "), not rank " +
                                    std::to_string(setup.rank));
    }
    // The cluster file's node "device" unless --device overrides it.
    const jarvis::DeviceSpec device =
        cluster_file.empty() || app.count("--device") ? jarvis::parse_device(device_name) : setup.device;
    const jarvis::GpuDType dtype = jarvis::parse_gpu_dtype(gpu_dtype);
    if (device.is_cuda()) {
      try {
        jarvis::check_cuda_device(device.index);  // before the (slow) model load
      } catch (const std::exception& e) {
        // Exit 2 (unusable configuration), as jarvis-serve's refusal of a bad --device.
        std::fprintf(stderr, "jarvis-worker: error: rank %d: %s\n", setup.rank, e.what());
        return 2;
      }
    }
    std::unique_ptr<jarvis::Model> model = jarvis::load_model(setup.model_path, setup.shard, load);
    std::unique_ptr<jarvis::ShardForward> gpu;
    std::unique_ptr<jarvis::StageWorker> worker_ptr;
    if (device.is_cuda()) {
      jarvis::CudaShardOptions co;
      co.device = device.index;
      co.dtype = dtype;
      co.gpu_memory_fraction = gpu_memory_fraction;
      co.page_size = setup.page_size;
      co.num_blocks = static_cast<int>(setup.kv_blocks);  // rank 0's block ids index this cache directly
      co.cuda_graphs = cuda_graphs == "on";
      gpu = jarvis::make_cuda_shard(*model, co);
      std::fprintf(stderr, "jarvis-worker: layers on %s\n", gpu->device_name().c_str());
      worker_ptr = std::make_unique<jarvis::StageWorker>(*gpu);
    } else {
      worker_ptr = std::make_unique<jarvis::StageWorker>(*model, static_cast<int>(setup.kv_blocks), setup.page_size,
                                                         threads);
    }
    jarvis::StageWorker& worker = *worker_ptr;

    const jarvis::transport::UcxOptions opts = jarvis::ring_ucx_options(
        setup.all_loopback, std::chrono::milliseconds(static_cast<int64_t>(connect_timeout_s * 1000)));
    jarvis::transport::UcxListener listener(setup.listen_host, static_cast<uint16_t>(setup.listen_port), opts);
    std::fprintf(stderr, "jarvis-worker: layers [%d, %d) listening on %s:%u\n", model->shard().first_layer,
                 model->shard().end_layer, setup.listen_host.c_str(), listener.port());
    std::fflush(stderr);
    if (!port_file.empty()) {
      // Written to a temporary name and renamed, so a reader never sees a half-written port.
      const std::string tmp = port_file + ".tmp";
      { std::ofstream(tmp) << listener.port() << "\n"; }
      if (std::rename(tmp.c_str(), port_file.c_str()) != 0) throw jarvis::Error("cannot write " + port_file);
    }
    // Each rank shapes what it sends, so every hop of the ring is shaped once.
    if (setup.send_shape.shaped()) {
      std::fprintf(stderr, "jarvis-worker: rank %d -> %d: shaped (delay %.3f ms, jitter %.3f ms, %.0f bit/s)\n",
                   setup.rank, (setup.rank + 1) % setup.world_size,
                   static_cast<double>(setup.send_shape.delay.count()) / 1e6,
                   static_cast<double>(setup.send_shape.jitter.count()) / 1e6, setup.send_shape.bits_per_second);
    }
    std::unique_ptr<jarvis::transport::Link> out = jarvis::transport::shape_if_needed(
        jarvis::transport::ucx_connect(setup.next_host, static_cast<uint16_t>(setup.next_port), opts),
        setup.send_shape, static_cast<uint64_t>(setup.rank + 1));
    std::unique_ptr<jarvis::transport::Link> in = listener.accept(opts.connect_timeout);
    std::fprintf(stderr, "jarvis-worker: connected (%s -> %s)\n", in->describe().c_str(), out->describe().c_str());
    jarvis::RankHello hello = jarvis::RankHello::make(setup.rank, setup.world_size, model->shard(),
                                                      jarvis::model_fingerprint(setup.model_path));
    hello.kv_blocks = setup.kv_blocks;
    hello.page_size = setup.page_size;
    jarvis::rendezvous_ring(hello, in.get(), out.get(), setup.plan, opts.connect_timeout);
    // Measured only now: the upstream rank's pings follow its last rendezvous message.
    in = jarvis::transport::make_measured_link(std::move(in));
    out = jarvis::transport::make_measured_link(std::move(out));
    std::fprintf(stderr, "jarvis-worker: rendezvous ok, serving\n");
    std::fflush(stderr);

    const jarvis::StageWorkerResult r = worker.run(*in, *out);
    std::fprintf(stderr, "jarvis-worker: %s; %llu steps, %llu tokens, %.3f s in layers\n", r.reason.c_str(),
                 static_cast<unsigned long long>(r.stats.steps), static_cast<unsigned long long>(r.stats.tokens),
                 r.stats.compute_seconds);
    return r.ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jarvis-worker: %s\n", e.what());
    return 1;
  }
}
