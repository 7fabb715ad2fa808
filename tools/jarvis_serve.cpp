// jarvis-serve: the OpenAI-compatible HTTP server over the continuous-batching engine.
// With no arguments it serves the default model on 127.0.0.1:8000. SIGTERM/SIGINT: stop
// accepting, let in-flight requests finish for --shutdown-grace-seconds, exit 0.
// --ranks N splits the model over N local processes: this one (rank 0: embedding, its layers,
// head, scheduler, HTTP) and N-1 jarvis-worker children joined in a pipeline ring
// (engine/pipeline/README.md). Up to --micro-batches steps are in the ring at once, so ranks work
// on different micro-batches at the same time. --tail last: the last rank runs the final norm and
// lm_head and sends logits back (rank 0 loads no head and still samples). --cluster FILE: the ranks run
// on the hosts a cluster file lists (each started there as `jarvis-worker --cluster FILE`); this
// process is rank 0. --link-delay/--link-jitter/--link-bandwidth shape every hop of the ring.
// --device: rank 0's device, or with --ranks N a comma list of N (rank 0 first, e.g.
// cuda:0,cpu,cuda:0: a mixed ring); with --cluster each node's "device", rank 0's overridable here.
// Every GPU rank's device is checked before any weight loads (exit 2 naming the rank).
// --device-sampling on|off: a GPU rank 0 holding the head samples there (one rank or a ring whose
// tail is rank 0's), so only tokens and logprobs cross to the host; off sends logits to the host sampler.
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/tokenizer/tokenizer.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/placement.h"
#include "engine/cluster/rank_devices.h"
#include "engine/cluster/rank_setup.h"
#include "engine/engine.h"
#include "engine/engine_config.h"
#include "engine/pipeline/pipeline_launch.h"
#include "engine/step_runner.h"
#include "metrics/pipeline_metrics.h"
#include "metrics/serving_metrics.h"
#include "server/api_server.h"
#include "tools/model_flags.h"
#include "transport/link_spec.h"

namespace {

struct Options {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string served_model_name;
  double shutdown_grace_s = 10.0;
  jarvis::EngineConfig engine;
  jarvis::server::ServerConfig server;
  int ranks = 1;
  std::string split;                  // "a,b,c"; empty: even (plan_split)
  std::string worker_bin;             // empty: jarvis-worker next to this executable
  int worker_threads = 1;
  std::string device = "cpu";         // rank 0's, or one per rank (comma list) with --ranks N
  std::vector<jarvis::DeviceSpec> devices;  // resolved: one per rank (cluster: rank 0's only)
  std::string gpu_dtype = "f16";
  double gpu_memory_fraction = 0.9;
  std::string cuda_graphs = "on";
  std::string device_sampling = "on";  // a GPU rank 0 with the head samples there; off: on the host
  int micro_batches = 0;              // steps in the ring at once; 0: one per rank
  std::vector<jarvis::ShardSpec> plan;  // one per rank when ranks > 1 (checked before loading)
  jarvis::ModelConfig model_config;     // header only, when ranks > 1
  std::string link_delay, link_jitter, link_bandwidth;  // transport/link_spec.h specs
  std::string cluster_file;
  std::optional<jarvis::RankSetup> cluster;  // rank 0's part of the cluster file
  std::string tail = "rank0";                // --ranks N: "rank0" or "last" (final norm + lm_head there)
  std::string transport = "ucx";             // --ranks N: "ucx" (worker processes) or "inproc" (threads)
  double connect_timeout_s = 60;             // workers starting, connecting and the rendezvous
  jarvis::LoadOptions load;                  // rank 0's, and every local worker's
};

// jarvis-worker in the directory of this executable.
std::string default_worker_bin() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "jarvis-worker";
  std::string self(buf, static_cast<size_t>(n));
  const size_t slash = self.find_last_of('/');
  return (slash == std::string::npos ? std::string() : self.substr(0, slash + 1)) + "jarvis-worker";
}

// Starts (or joins) the ring; the executor for rank 0's engine is launch->take_executor(). The
// ring's statistics (per rank, per link) go to `pm` about every second.
std::unique_ptr<jarvis::PipelineLaunch> start_pipeline(const Options& o, const jarvis::Model& model,
                                                       jarvis::metrics::PipelineMetrics& pm,
                                                       std::unique_ptr<jarvis::ShardForward> rank0_gpu) {
  jarvis::PipelineLaunchOptions po;
  po.model_path = o.model;
  po.load = o.load;
  po.plan = o.plan;
  po.kv_blocks = o.engine.kv_blocks;
  po.page_size = o.engine.page_size;
  po.threads = o.engine.threads;
  po.worker_bin = o.worker_bin.empty() ? default_worker_bin() : o.worker_bin;
  po.worker_threads = o.worker_threads;
  po.link_delay = o.link_delay;
  po.link_jitter = o.link_jitter;
  po.link_bandwidth = o.link_bandwidth;
  po.cluster = o.cluster;
  po.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.connect_timeout_s * 1000));
  po.pipeline.max_in_flight = o.micro_batches > 0 ? o.micro_batches : static_cast<int>(o.plan.size());
  po.pipeline.on_stats = [&pm](const jarvis::RingStats& s) { pm.update(jarvis::metric_samples(s)); };
  po.pipeline.device_sampling = o.device_sampling == "on";
  po.transport = o.transport == "inproc" ? jarvis::PipelineLaunchOptions::Transport::kInproc
                                         : jarvis::PipelineLaunchOptions::Transport::kUcx;
  po.devices = o.devices;
  po.gpu_dtype = jarvis::parse_gpu_dtype(o.gpu_dtype);
  po.gpu_memory_fraction = o.gpu_memory_fraction;
  auto launch = std::make_unique<jarvis::PipelineLaunch>(po, model, std::move(rank0_gpu));
  for (const std::string& line : launch->description()) std::fprintf(stderr, "jarvis-serve: %s\n", line.c_str());
  std::fprintf(stderr,
               "jarvis-serve: pipeline of %zu ranks ready (rank 0: layers [0, %d), %d KV blocks each, "
               "up to %d micro-batches in flight)\n",
               o.plan.size(), o.plan[0].end_layer, o.engine.kv_blocks, po.pipeline.max_in_flight);
  return launch;
}

// Rank 0's shard (the whole model with one rank) on its GPU: weights uploaded, KV pages on the
// device. Sets o.engine.kv_blocks to the pages the device cache holds (a nonzero kv_blocks asks
// for exactly that many: --kv-blocks, the cluster file's, or a ring's host budget).
std::unique_ptr<jarvis::ShardForward> rank0_gpu_shard(Options& o, const jarvis::Model& model) {
  jarvis::CudaShardOptions co;
  co.device = o.devices.at(0).index;
  co.dtype = jarvis::parse_gpu_dtype(o.gpu_dtype);
  co.gpu_memory_fraction = o.gpu_memory_fraction;
  co.page_size = o.engine.page_size;
  co.num_blocks = o.engine.kv_blocks;
  co.max_step_tokens = o.engine.max_batched_tokens;
  co.cuda_graphs = o.cuda_graphs == "on";
  std::unique_ptr<jarvis::ShardForward> shard = jarvis::make_cuda_shard(model, co);
  o.engine.kv_blocks = shard->num_blocks();
  std::fprintf(stderr, "jarvis-serve: %s on %s (%s), %d KV blocks on the device\n",
               o.plan.size() > 1 ? "rank 0" : "model", shard->device_name().c_str(), jarvis::gpu_dtype_name(co.dtype),
               o.engine.kv_blocks);
  return shard;
}

// "models/SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct.Q4_1"
std::string default_model_name(const std::string& path) {
  std::string name = path;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  const size_t slash = name.find_last_of('/');
  if (slash != std::string::npos) name = name.substr(slash + 1);
  const std::string ext = ".gguf";
  if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) {
    name.resize(name.size() - ext.size());
  }
  return name;
}

int run(Options& o) {
  // Signals go to one thread that waits for them; every other thread (engine, HTTP) blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that vanished is an error return, not a death

  const auto t0 = std::chrono::steady_clock::now();
  const bool pipeline = o.plan.size() > 1;
  std::unique_ptr<jarvis::Model> model = jarvis::load_model(o.model, pipeline ? o.plan[0] : jarvis::ShardSpec::full(), o.load);
  const std::string name = o.served_model_name.empty() ? default_model_name(o.model) : o.served_model_name;
  jarvis::metrics::ServingMetrics metrics(name);
  jarvis::metrics::PipelineMetrics pipeline_metrics(metrics.registry(), name);  // outlives the ring's runner
  std::unique_ptr<jarvis::PipelineLaunch> ring;
  std::unique_ptr<jarvis::StepExecutor> executor;
  if (pipeline) {
    // Every rank holds the same blocks; they all share this machine, so the budget is sized for
    // the whole model's layers (as one rank would be). A cluster file sets it for every host.
    // A GPU rank 0 takes its count from its device budget when every rank has a GPU of its own
    // (the workers then reserve exactly as many); otherwise every GPU rank reserves exactly this.
    const bool gpu0 = o.devices.at(0).is_cuda();
    if (o.engine.kv_blocks == 0 && !(gpu0 && jarvis::kv_blocks_from_rank0_gpu(o.devices))) {
      o.engine.kv_blocks = jarvis::kv_cache_blocks(o.model_config, o.model_config.n_layers, o.engine);
    }
    std::unique_ptr<jarvis::ShardForward> rank0_gpu = gpu0 ? rank0_gpu_shard(o, *model) : nullptr;
    ring = start_pipeline(o, *model, pipeline_metrics, std::move(rank0_gpu));
    executor = ring->take_executor();
  } else if (o.devices.at(0).is_cuda()) {
    executor = std::make_unique<jarvis::StepRunner>(rank0_gpu_shard(o, *model), o.device_sampling == "on");
  }
  // Which sampler reads the logits (tests/gpu/mixed_ring_test.py checks this line).
  std::fprintf(stderr, "jarvis-serve: sampling on the %s\n",
               executor && executor->samples_on_device() ? "device (rank 0's GPU)" : "host");
  std::unique_ptr<jarvis::Tokenizer> tok = jarvis::Tokenizer::create(model->tokenizer_data());
  o.server.served_model_name = name;
  o.server.model_aliases = {o.model, default_model_name(o.model)};

  std::unique_ptr<jarvis::Engine> engine_owner =
      executor ? std::make_unique<jarvis::Engine>(*model, *tok, o.engine, &metrics, std::move(executor))
               : std::make_unique<jarvis::Engine>(*model, *tok, o.engine, &metrics);
  jarvis::Engine& engine = *engine_owner;
  jarvis::server::ApiServer server(engine, *model, *tok, &metrics, o.server);
  server.bind(o.host, o.port);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "jarvis-serve: model %s as \"%s\" (context %d tokens), ready in %.2f s\n", o.model.c_str(),
               name.c_str(), engine.context_length(), load_s);
  std::fprintf(stderr, "jarvis-serve: listening on http://%s:%d\n", o.host.c_str(), server.port());
  std::fflush(stderr);

  std::atomic<bool> served{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 200 * 1000 * 1000};
    while (!served) {
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (ring) {  // a worker that died while idle: /health says so before a request finds out
        const std::string gone = ring->check_workers();
        if (!gone.empty()) engine.mark_degraded(gone);
      }
      if (sig != SIGTERM && sig != SIGINT) continue;
      std::fprintf(stderr, "jarvis-serve: %s: draining for up to %.1f s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   o.shutdown_grace_s);
      std::fflush(stderr);
      server.begin_shutdown();
      engine.shutdown(std::chrono::milliseconds(static_cast<int64_t>(o.shutdown_grace_s * 1000)));
      // The engine has ended every request; streams close right after. A connection still open
      // past this point is a client that stopped reading: do not wait on it forever.
      for (int i = 0; i < 50 && !served; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!served) {
        std::fprintf(stderr, "jarvis-serve: connections still open after the grace period; exiting\n");
        std::fflush(stderr);
        std::_Exit(0);
      }
      return;
    }
  });
  server.run();
  served = true;
  signal_thread.join();
  engine.shutdown(std::chrono::milliseconds(0));
  if (ring) {
    engine_owner.reset();  // closes rank 0's links: the workers exit one after another
    ring->stop(std::chrono::seconds(3));
  }
  std::fprintf(stderr, "jarvis-serve: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  jarvis::EngineConfig& e = o.engine;
  jarvis::server::ServerConfig& s = o.server;
  if (const char* key = std::getenv("JARVIS_API_KEY")) s.api_key = key;
  bool no_prefix_caching = false;

  CLI::App app{"OpenAI-compatible HTTP server (completions, chat, streaming) over the Jarvis engine"};
  app.add_option("-m,--model", o.model, "GGUF file or HF model directory")->capture_default_str();
  jarvis::tools::add_load_flags(app, o.load);
  app.add_option("--host", o.host, "address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "port to listen on (0: any free port)")->capture_default_str()->check(
      CLI::Range(0, 65535));
  app.add_option("--api-key", s.api_key, "require 'Authorization: Bearer <key>' (default: $JARVIS_API_KEY)");
  app.add_option("--served-model-name", o.served_model_name, "model id in the API (default: the file name)");
  app.add_option("--threads", e.threads, "CPU threads for the forward pass (0: all)")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  app.add_option("--kv-cache-bytes", e.kv_cache_bytes, "KV cache budget in bytes (0: use --kv-cache-fraction)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kv-cache-fraction", e.kv_cache_fraction, "of the available memory, when --kv-cache-bytes is 0")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--page-size", e.page_size, "tokens per KV block")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--max-num-seqs", e.max_num_seqs, "running sequences at most")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--max-batched-tokens", e.max_batched_tokens, "tokens per engine step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--prefill-chunk", e.prefill_chunk, "prompt tokens of one sequence per step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-waiting", e.max_waiting, "queued requests beyond this get 429")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-prefix-caching", no_prefix_caching, "do not share KV blocks of identical prompt prefixes");
  app.add_option("--max-body-bytes", s.max_body_bytes, "larger request bodies get 413")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--http-threads", s.http.threads, "connections served at once")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--max-pending-connections", s.http.max_pending, "connections waiting for a thread; beyond: 503")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--request-timeout-seconds", s.http.request_timeout_s,
                 "a request's line, headers and body must arrive within this")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--keep-alive-seconds", s.http.keep_alive_s, "idle time between requests on a connection")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--shutdown-grace-seconds", o.shutdown_grace_s, "on SIGTERM, time in-flight requests get to finish")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", o.device,
                 "cpu, cuda or cuda:N: rank 0's device; with --ranks N also a comma list of N devices, rank 0 "
                 "first (cuda:0,cpu,cpu); with --cluster it overrides rank 0's node \"device\"")
      ->capture_default_str();
  app.add_option("--gpu-dtype", o.gpu_dtype, "weights and activations on every GPU rank: f16, bf16 or f32")
      ->capture_default_str();
  app.add_option("--cuda-graphs", o.cuda_graphs, "decode steps replay CUDA graphs: on or off")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  app.add_option("--device-sampling", o.device_sampling,
                 "a GPU rank 0 holding the head samples on the device (only tokens and logprobs come back): "
                 "on, or off (logits to the host sampler, for debugging or comparison)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--gpu-memory-fraction", o.gpu_memory_fraction, "of the GPU's free memory for the KV cache")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1.0));
  app.add_option("--ranks", o.ranks, "pipeline ranks on this machine (rank 0 is this process)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--split", o.split, "layers per rank, e.g. 10,10,10 (default: even)");
  app.add_option("--kv-blocks", e.kv_blocks, "KV blocks on every rank (0: from the KV budget)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--micro-batches", o.micro_batches,
                 "steps (micro-batches) kept in the pipeline ring at once; 1 turns interleaving off "
                 "(0: one per rank)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--worker-bin", o.worker_bin, "jarvis-worker executable (default: next to jarvis-serve)");
  app.add_option("--worker-threads", o.worker_threads, "compute threads of each worker rank")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--link-delay", o.link_delay,
                 "one-way delay per link, e.g. '0-1:5ms,1-2:5ms,2-0:5ms', or '5ms' for every link");
  app.add_option("--link-jitter", o.link_jitter, "jitter per link, e.g. '1-2:500us' or '500us'");
  app.add_option("--link-bandwidth", o.link_bandwidth, "bandwidth cap per link, e.g. '0-1:100mbit' or '1gbit'");
  app.add_option("--tail", o.tail,
                 "with --ranks: where the final norm and lm_head run: rank0, or last (the last rank computes "
                 "the logits and sends them back; rank 0 still samples)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rank0", "last"}));
  app.add_option("--transport", o.transport,
                 "with --ranks: ucx (jarvis-worker processes) or inproc (worker threads in this process)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ucx", "inproc"}));
  app.add_option("--connect-timeout", o.connect_timeout_s,
                 "seconds for the other ranks to start, connect and pass the rendezvous")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--cluster", o.cluster_file,
                 "cluster file (engine/cluster/README.md): this process is its rank 0; the other ranks run "
                 "`jarvis-worker --cluster FILE` on their hosts");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? 0 : 2;
  }
  e.prefix_caching = !no_prefix_caching;

  // Devices are parsed here (a bad name or list length: exit 2 before anything else) and checked
  // once the ranks are known, before any weight loads.
  try {
    jarvis::parse_gpu_dtype(o.gpu_dtype);
    if (o.cluster_file.empty()) {
      o.devices = jarvis::parse_rank_devices(o.device, o.ranks);
    } else if (app.count("--device")) {
      if (o.device.find(',') != std::string::npos) {
        throw jarvis::InvalidArgument("with --cluster, --device is rank 0's only (one device); the other ranks' "
                                      "come from their nodes' \"device\" in the cluster file");
      }
      o.devices = {jarvis::parse_device(o.device)};
    }
  } catch (const std::exception& err) {
    std::fprintf(stderr, "jarvis-serve: error: %s\n", err.what());
    return 2;
  }
  try {
    jarvis::transport::parse_link_shapes(o.link_delay, o.link_jitter, o.link_bandwidth);
  } catch (const std::exception& err) {
    std::fprintf(stderr, "jarvis-serve: error: %s\n", err.what());
    return 2;
  }
  if (!o.cluster_file.empty()) {
    if (app.count("--model") || app.count("--ranks") || app.count("--split") || app.count("--transport") ||
        app.count("--tail")) {
      std::fprintf(stderr, "jarvis-serve: error: --cluster gives the model, ranks, split and tail (over UCX); "
                           "drop --model/--ranks/--split/--transport/--tail\n");
      return 2;
    }
    try {
      const jarvis::ClusterConfig cluster = jarvis::read_cluster_config(o.cluster_file);
      o.cluster = jarvis::rank_setup(cluster, 0, cluster.link_shapes(o.link_delay, o.link_jitter, o.link_bandwidth));
      // The head (embedding) stays on rank 0: prompts never leave it. The tail may be rank 0's or
      // the last rank's (it computes logits, rank 0 samples); anywhere else is refused.
      if (!o.cluster->shard.has_embedding) {
        throw jarvis::InvalidArgument(o.cluster_file +
                                      ": jarvis-serve runs rank 0, which must hold the head (embedding); a head on "
                                      "another rank is not supported (leave \"head\" unset or name rank 0's node)");
      }
      if (cluster.ends.tail_rank != 0 && cluster.ends.tail_rank != static_cast<int>(cluster.nodes.size()) - 1) {
        throw jarvis::InvalidArgument(o.cluster_file + ": \"tail\" must be rank 0's node or the last node (" +
                                      cluster.nodes.back().name + "); the ring returns logits to rank 0 from there");
      }
      o.model = o.cluster->model_path;
      o.plan = o.cluster->plan;
      if (o.devices.empty()) o.devices = {o.cluster->device};  // rank 0's node; the others check their own
      o.model_config = jarvis::read_model_config(o.model);
      // An explicit --kv-blocks/--page-size that disagrees with the file is refused by the rendezvous.
      if (!app.count("--kv-blocks")) e.kv_blocks = static_cast<int>(o.cluster->kv_blocks);
      if (!app.count("--page-size")) e.page_size = o.cluster->page_size;
    } catch (const std::exception& err) {
      std::fprintf(stderr, "jarvis-serve: error: %s\n", err.what());
      return 2;
    }
  }

  // The split is checked against the model's header before any weight is loaded.
  if (o.cluster_file.empty() && (o.ranks > 1 || !o.split.empty() || o.tail != "rank0")) {
    try {
      o.model_config = jarvis::read_model_config(o.model);
    } catch (const std::exception& err) {
      std::fprintf(stderr, "jarvis-serve: error: %s\n", err.what());
      return 1;
    }
    try {
      std::optional<std::vector<int>> split;
      if (!o.split.empty()) split = jarvis::parse_split(o.split);
      jarvis::EndsPlacement ends;
      if (o.tail == "last") ends.tail_rank = o.ranks - 1;  // --ranks 1: rank 0 is the last rank
      o.plan = jarvis::plan_split(o.model_config.n_layers, o.ranks, split, ends);
    } catch (const std::exception& err) {
      std::fprintf(stderr, "jarvis-serve: error: bad --ranks/--split: %s\n", err.what());
      return 2;
    }
  }

  // Every GPU rank this process starts (itself, local workers, inproc threads): before any load, so
  // a missing GPU is a clear exit 2 and not a worker dying while rank 0 waits for it.
  try {
    jarvis::check_rank_devices(o.devices);
  } catch (const std::exception& err) {
    std::fprintf(stderr, "jarvis-serve: error: %s\n", err.what());
    return 2;
  }

  try {
    return run(o);
  } catch (const std::exception& err) {
    std::fprintf(stderr, "jarvis-serve: error: %s\n", err.what());
    return 1;
  }
}
