// jarvis-plan: check a pipeline split before launching anything. Reads only the model's header.
//   jarvis-plan --model M --ranks 3 [--split 10,10,10] [--head-rank 0] [--tail-rank 0]
//               [--rank-memory 0:2GiB,1:1GiB] [--page-size 16] [--kv-blocks N]
//   jarvis-plan --cluster cluster.json [--rank R] [--link-delay 0-1:2ms ...]
// Prints one line per rank (or --json), the model fingerprint with --fingerprint sampled|full.
// Exit 1 with "jarvis-plan: error: ..." when the split or a memory budget is wrong.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/cluster/cluster_plan.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/rank_setup.h"
#include "engine/cluster/role.h"
#include "tools/model_flags.h"

namespace {

struct Options {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string cluster;
  int ranks = 1;
  std::string split;
  int head_rank = 0, tail_rank = 0;
  std::string rank_memory;
  int page_size = 0;  // 0: the cluster file's, else 16
  int64_t kv_blocks = 0;
  std::optional<int> rank;
  std::string link_delay, link_jitter, link_bandwidth;
  std::string fingerprint;  // "", "sampled", "full"
  bool json = false;
  jarvis::LoadOptions load;  // the ranks' --weights: how their weights are counted
};

int run(const Options& o) {
  using namespace jarvis;
  PlanRequest req;
  std::optional<ClusterConfig> cluster;
  if (!o.cluster.empty()) {
    cluster = read_cluster_config(o.cluster);
    req = plan_request(*cluster);
  } else {
    req.model_path = o.model;
    req.n_ranks = o.ranks;
    if (!o.split.empty()) req.split = parse_split(o.split);
    req.ends = EndsPlacement{o.head_rank, o.tail_rank};
    req.budgets = parse_rank_memory(o.rank_memory, o.ranks);
  }
  // A cluster file's page size and KV blocks stand unless the flags say otherwise.
  if (!cluster || o.page_size > 0) req.page_size = o.page_size > 0 ? o.page_size : 16;
  if (!cluster || o.kv_blocks > 0) req.kv_blocks = o.kv_blocks;
  req.weights = o.load.weights;
  ClusterPlan plan = make_plan(req);
  if (cluster && req.kv_blocks == 0) {
    // What every rank will reserve (rank_setup.h), not just what the budgets allow.
    ClusterConfig c = *cluster;
    c.page_size = req.page_size;
    req.kv_blocks = cluster_kv_blocks(c, plan);
    plan = make_plan(req);
  }

  nlohmann::json j;
  j["model"] = req.model_path;
  j["layers"] = plan.model.n_layers;
  j["kv_blocks"] = plan.kv_blocks;
  j["page_size"] = req.page_size;
  for (size_t r = 0; r < plan.shards.size(); ++r) {
    const ShardSpec& s = plan.shards[r];
    const ShardMemory& m = plan.memory[r];
    j["ranks"].push_back({{"rank", r},
                          {"first_layer", s.first_layer},
                          {"end_layer", s.end_layer},
                          {"embedding", s.has_embedding},
                          {"head", s.has_head},
                          {"weight_bytes", m.layer_weights + m.end_weights},
                          {"kv_bytes", m.kv_cache},
                          {"budget_bytes", req.budgets.empty() ? 0 : req.budgets[r]}});
  }
  std::string text = describe_plan(plan, req.budgets);
  text += "KV cache: " + std::to_string(plan.kv_blocks) + " blocks of " + std::to_string(req.page_size) + " tokens" +
          (plan.kv_blocks == 0 ? " (no budget given: sized by the engine at start-up)" : "") + "\n";
  if (cluster) {
    const transport::LinkShapes shapes = cluster->link_shapes(o.link_delay, o.link_jitter, o.link_bandwidth);
    const int n = cluster->n_ranks();
    for (int r = 0; r < n && n > 1; ++r) {
      const int next = (r + 1) % n;
      if (n == 2 && r == 1) break;
      const transport::LinkShape s = shapes.get(r, next);
      text += "link " + std::to_string(r) + "-" + std::to_string(next) + ": delay " +
              std::to_string(s.delay.count() / 1000) + " us, jitter " + std::to_string(s.jitter.count() / 1000) +
              " us, bandwidth " + (s.bits_per_second > 0 ? std::to_string(s.bits_per_second / 1e6) + " Mbit/s" : "-") +
              "\n";
    }
    if (o.rank || !o.json) {
      try {
        const Role role = discover_role(*cluster, o.rank);
        text += "this process: rank " + std::to_string(role.rank) + " (from " + role.source + ")\n";
        j["this_rank"] = role.rank;
      } catch (const ClusterConfigError& e) {
        if (o.rank) throw;
        text += std::string("this process: ") + e.what() + "\n";
      }
    }
  }
  if (!o.fingerprint.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string h =
        model_fingerprint(req.model_path, o.fingerprint == "full" ? FingerprintMode::kFull : FingerprintMode::kSampled);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    j["fingerprint"] = h;
    j["fingerprint_mode"] = o.fingerprint;
    j["fingerprint_ms"] = ms;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", ms);
    text += "model fingerprint (" + o.fingerprint + "): " + h + " in " + buf + " ms\n";
  }
  std::cout << (o.json ? j.dump(2) + "\n" : text);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jarvis-plan: check a pipeline split and memory budgets without loading weights"};
  Options o;
  app.add_option("--model", o.model, "GGUF file or Hugging Face directory");
  jarvis::tools::add_load_flags(app, o.load);
  app.add_option("--cluster", o.cluster, "cluster file (JSON); replaces --model/--ranks/--split/--rank-memory");
  app.add_option("--ranks", o.ranks, "number of ranks")->check(CLI::PositiveNumber);
  app.add_option("--split", o.split, "layers per rank, e.g. 10,10,10 (default: even)");
  app.add_option("--head-rank", o.head_rank, "rank holding the embedding");
  app.add_option("--tail-rank", o.tail_rank, "rank holding final norm + lm_head");
  app.add_option("--rank-memory", o.rank_memory, "memory budget: 2GiB for every rank, or 0:2GiB,1:1GiB");
  app.add_option("--page-size", o.page_size, "tokens per KV block (default: the cluster file's, else 16)");
  app.add_option("--kv-blocks", o.kv_blocks, "KV blocks every rank reserves (default: what the budgets allow)");
  app.add_option("--rank", o.rank, "this process's rank (default: launcher environment or hostname)");
  app.add_option("--link-delay", o.link_delay, "e.g. 0-1:2ms,1-2:10ms (overrides the cluster file)");
  app.add_option("--link-jitter", o.link_jitter, "e.g. 0-1:500us");
  app.add_option("--link-bandwidth", o.link_bandwidth, "e.g. 0-1:100mbit");
  app.add_option("--fingerprint", o.fingerprint, "also hash the model: sampled or full")
      ->check(CLI::IsMember({"sampled", "full"}));
  app.add_flag("--json", o.json, "machine-readable output");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jarvis-plan: error: %s\n", e.what());
    return 1;
  }
}
