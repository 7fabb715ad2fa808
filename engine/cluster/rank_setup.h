// What one rank of a cluster-file deployment does, derived from the file alone. Every host reads
// the same file and runs the same functions, so the ranks agree on the split, the KV layout and the
// link shapes without talking; the rendezvous (rendezvous.h) then proves that they do.
//
//   rank r listens on nodes[r].address, connects to nodes[(r + 1) % N].address (the ring closes
//   back to rank 0), holds plan[r], reserves cluster_kv_blocks() blocks of page_size tokens, and
//   shapes what it sends with the link r-(r+1)%N of the file's "links" (overridden by command-line
//   specs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/cluster/cluster_config.h"
#include "engine/cluster/cluster_plan.h"
#include "transport/link_spec.h"

namespace jarvis {

struct RankSetup {
  int rank = 0;
  int world_size = 1;
  std::string model_path;       // this node's model file
  std::vector<ShardSpec> plan;  // every rank's shard, rank 0 first
  ShardSpec shard;              // plan[rank]
  std::string listen_host;      // this node's address
  int listen_port = 0;
  std::string next_host;        // the next rank's address
  int next_port = 0;
  int64_t kv_blocks = 0;
  int page_size = 16;
  DeviceSpec device;            // this node's "device" (the tools' --device overrides it)
  transport::LinkShape send_shape;  // the link to the next rank
  // Every node's address is loopback: the ranks share one host and its network namespace, so UCX
  // may pick shared memory and loopback. Otherwise links are UCX over TCP only (see
  // ring_ucx_options in engine/pipeline/ring_connect.h).
  bool all_loopback = false;
};

// The KV blocks every rank reserves: the file's "kv_blocks"; else the most that fits every
// memory budget, capped at what EngineConfig's default max_num_seqs full-context sequences use;
// else (no budgets) kDefaultClusterKvSequences full-context sequences. Pure function of the file
// and the model header, so each host computes the same number.
inline constexpr int kDefaultClusterKvSequences = 4;
int64_t cluster_kv_blocks(const ClusterConfig& cluster, const ClusterPlan& plan);

// Throws ClusterConfigError / InvalidArgument (plan) / ModelFileError (header).
RankSetup rank_setup(const ClusterConfig& cluster, int rank, const transport::LinkShapes& shapes);

// "127.0.0.1", "127.1.2.3", "::1", "localhost".
bool is_loopback_host(const std::string& host);

}  // namespace jarvis
