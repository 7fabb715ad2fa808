#include "engine/cluster/rank_setup.h"

#include <algorithm>

#include "engine/engine.h"

namespace jarvis {

int64_t cluster_kv_blocks(const ClusterConfig& c, const ClusterPlan& plan) {
  if (c.kv_blocks > 0) return c.kv_blocks;
  const int64_t context = plan.model.context_length > 0 ? plan.model.context_length : 4096;
  const int64_t per_sequence = (context + c.page_size - 1) / c.page_size;
  // plan.kv_blocks is what fits the tightest budget (make_plan); 0 when no node has a budget.
  if (plan.kv_blocks > 0) return std::min<int64_t>(plan.kv_blocks, EngineConfig{}.max_num_seqs * per_sequence);
  return kDefaultClusterKvSequences * per_sequence;
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

RankSetup rank_setup(const ClusterConfig& c, int rank, const transport::LinkShapes& shapes) {
  if (rank < 0 || rank >= c.n_ranks()) {
    throw ClusterConfigError((c.path.empty() ? "cluster file" : c.path) + ": rank " + std::to_string(rank) +
                             " is not one of its " + std::to_string(c.n_ranks()) + " nodes");
  }
  const ClusterPlan plan = make_plan(plan_request(c));
  RankSetup s;
  s.rank = rank;
  s.world_size = c.n_ranks();
  const NodeConfig& me = c.nodes[static_cast<size_t>(rank)];
  const NodeConfig& next = c.nodes[static_cast<size_t>((rank + 1) % c.n_ranks())];
  s.model_path = me.model.empty() ? c.model : me.model;
  s.plan = plan.shards;
  s.shard = plan.shards[static_cast<size_t>(rank)];
  s.listen_host = me.host;
  s.listen_port = me.port;
  s.next_host = next.host;
  s.next_port = next.port;
  s.page_size = c.page_size;
  s.device = me.device;
  s.kv_blocks = cluster_kv_blocks(c, plan);
  // The derived number must fit the budgets too (make_plan checked only the one it computed).
  check_memory(plan.model, plan.shards, c.memory_budgets(), s.kv_blocks, c.page_size);
  s.send_shape = c.n_ranks() > 1 ? shapes.get(rank, (rank + 1) % c.n_ranks()) : transport::LinkShape{};
  s.all_loopback = std::all_of(c.nodes.begin(), c.nodes.end(), [](const NodeConfig& n) { return is_loopback_host(n.host); });
  return s;
}

}  // namespace jarvis
