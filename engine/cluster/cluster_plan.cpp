#include "engine/cluster/cluster_plan.h"

#include <algorithm>

#include "engine/cluster/model_identity.h"

namespace jarvis {

ClusterPlan make_plan(const PlanRequest& req) {
  ClusterPlan plan;
  plan.model = read_model_config(req.model_path);
  plan.shards = plan_split(plan.model.n_layers, req.n_ranks, req.split, req.ends);
  if (req.page_size < 1) throw InvalidArgument("page_size must be >= 1, got " + std::to_string(req.page_size));
  if (req.kv_blocks < 0) throw InvalidArgument("kv_blocks must be >= 0, got " + std::to_string(req.kv_blocks));
  const std::vector<int64_t> budgets = req.budgets.empty() ? std::vector<int64_t>(plan.shards.size(), 0) : req.budgets;
  plan.kv_blocks = req.kv_blocks;
  if (plan.kv_blocks == 0) {
    const int64_t fit = max_kv_blocks(plan.model, plan.shards, budgets, req.page_size, req.weights);
    if (fit == 0) {
      // Name the rank that leaves no room: check_memory with one block says who and by how much.
      check_memory(plan.model, plan.shards, budgets, 1, req.page_size, req.weights);
    }
    plan.kv_blocks = fit < 0 ? 0 : fit;
  }
  check_memory(plan.model, plan.shards, budgets, plan.kv_blocks, req.page_size, req.weights);
  for (const ShardSpec& s : plan.shards) {
    plan.memory.push_back(estimate_shard_memory(plan.model, s, plan.kv_blocks, req.page_size, req.weights));
  }
  return plan;
}

PlanRequest plan_request(const ClusterConfig& c) {
  PlanRequest r;
  r.model_path = c.model;
  r.n_ranks = c.n_ranks();
  r.split = c.split();
  r.ends = c.ends;
  r.budgets = c.memory_budgets();
  return r;
}

std::vector<int64_t> parse_rank_memory(std::string_view spec, int n_ranks) {
  std::vector<int64_t> out(static_cast<size_t>(std::max(n_ranks, 0)), 0);
  const std::string s(spec);
  if (s.empty()) return out;
  if (s.find(':') == std::string::npos) {
    const int64_t all = parse_byte_size(s, "--rank-memory");
    for (int64_t& b : out) b = all;
    return out;
  }
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    const std::string item = s.substr(start, comma - start);
    start = comma + 1;
    const size_t colon = item.find(':');
    const std::string rank_text = item.substr(0, colon == std::string::npos ? 0 : colon);
    bool digits = !rank_text.empty() && rank_text.size() <= 6;
    for (char ch : rank_text) digits = digits && ch >= '0' && ch <= '9';
    if (colon == std::string::npos || !digits) {
      throw InvalidArgument("--rank-memory: item '" + item + "' is not RANK:SIZE (e.g. 0:2GiB,1:1GiB)");
    }
    const int rank = std::stoi(rank_text);
    if (rank >= n_ranks) {
      throw InvalidArgument("--rank-memory: item '" + item + "' names rank " + std::to_string(rank) +
                            " but ranks are 0.." + std::to_string(n_ranks - 1));
    }
    out[static_cast<size_t>(rank)] = parse_byte_size(item.substr(colon + 1), "--rank-memory item '" + item + "'");
  }
  return out;
}

std::string describe_plan(const ClusterPlan& plan, const std::vector<int64_t>& budgets) {
  std::string out;
  for (size_t r = 0; r < plan.shards.size(); ++r) {
    const ShardMemory& m = plan.memory[r];
    out += describe_shard(static_cast<int>(r), plan.shards[r]) + " -- weights " +
           format_bytes(m.layer_weights + m.end_weights) + ", KV " + format_bytes(m.kv_cache);
    if (r < budgets.size() && budgets[r] > 0) out += " (budget " + format_bytes(budgets[r]) + ")";
    out += "\n";
  }
  return out;
}

}  // namespace jarvis
