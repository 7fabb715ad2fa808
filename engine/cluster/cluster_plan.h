// From command-line flags (--ranks, --split, --rank-memory) or a cluster file to a checked plan:
// which layers each rank holds and how many KV blocks every rank reserves. Only the model's
// header is read, so a wrong split or a plan that does not fit is an error before anything loads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/model/config.h"
#include "engine/cluster/cluster_config.h"
#include "engine/cluster/placement.h"

namespace jarvis {

struct PlanRequest {
  std::string model_path;
  int n_ranks = 1;
  std::optional<std::vector<int>> split;  // nullopt: divide evenly
  EndsPlacement ends;
  std::vector<int64_t> budgets;  // per rank, <= 0 = no limit; empty = no limits at all
  int page_size = 16;
  // KV blocks every rank reserves (rank 0's block manager hands them out; each rank stores them
  // for its own layers). 0: as many as the tightest budget allows.
  int64_t kv_blocks = 0;
  WeightFormat weights = WeightFormat::kNative;  // how the ranks hold weights (--weights)
};

struct ClusterPlan {
  ModelConfig model;
  std::vector<ShardSpec> shards;
  std::vector<ShardMemory> memory;  // estimate per rank, with kv_blocks
  // Requested, or the most that fits every budget; 0 when none was requested and no rank has a
  // budget (the engine's own KV sizing then decides, engine_config.h kv_cache_blocks).
  int64_t kv_blocks = 0;
};

// Throws InvalidArgument (split, budgets: names the rank, its need and its budget) or
// ModelFileError (the model header).
ClusterPlan make_plan(const PlanRequest& request);

// The request a cluster file describes (model, ranks, split, head/tail, memory budgets).
PlanRequest plan_request(const ClusterConfig& cluster);

// --rank-memory: "2GiB" for every rank, or "0:2GiB,2:1GiB" per rank (others unlimited).
// InvalidArgument naming the item.
std::vector<int64_t> parse_rank_memory(std::string_view spec, int n_ranks);

// One line per rank: "rank 1: layers [10, 20) -- weights 135.05 MiB, KV 7.03 MiB (budget 1.00 GiB)".
std::string describe_plan(const ClusterPlan& plan, const std::vector<int64_t>& budgets = {});

}  // namespace jarvis
