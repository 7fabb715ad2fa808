// The cluster file every rank reads (JARVIS's "configuration file listing nodes, network
// connections, and desired layers"). JSON (YAML is not supported: JSON needs no new dependency):
//
//   {
//     "model": "../models/SmolLM2-135M-Instruct.Q4_1.gguf",  // relative to this file's folder
//     "head": "edge0", "tail": "edge0",                        // node name or rank; default rank 0
//     "kv_blocks": 512, "page_size": 16,                       // optional: the KV layout of every rank
//     "nodes": [                                               // rank = position in this list
//       {"name": "edge0", "address": "127.0.0.1:7100", "device": "cpu", "memory": "2GiB", "layers": 10},
//       {"name": "edge1", "address": "10.0.0.2:7100", "device": "cuda:0", "memory": 4294967296,
//        "layers": [10, 20], "model": "/data/smollm2.gguf"},   // per-node model path (optional)
//       ...
//     ],
//     "links": [{"from": "edge0", "to": "edge1", "delay": "2ms", "jitter": "500us", "bandwidth": "100mbit"}]
//   }
//
// "layers" is a count or a [first, end) range; give it on every node or on none (then the layers
// are divided evenly, placement.h). "device" (cpu, cuda or cuda:N; default cpu) is where that rank
// runs its shard: jarvis-worker and jarvis-serve (rank 0) use it unless their --device overrides it.
// "memory" (bytes, or "8GiB"/"512MiB"/"2GB") is optional: the
// budget the placement checks weights + KV cache against. "kv_blocks" (optional) is the number of
// KV blocks every rank reserves; without it every rank derives the same number from the file
// (rank_setup.h cluster_kv_blocks). Unknown fields are errors (a misspelt
// "adress" must not silently fall back to a default). Every error is a ClusterConfigError naming
// the file and the field, e.g. "cluster.json: nodes[1].address: '10.0.0.2' has no port".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/util/error.h"
#include "engine/cluster/placement.h"
#include "transport/link_spec.h"

namespace jarvis {

class ClusterConfigError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

struct NodeConfig {
  std::string name;
  std::string host;  // from "address": host or IPv4, or IPv6 without the brackets
  int port = 0;
  DeviceSpec device;  // "device" (csrc/model/device.h parse_device); the rank runs its shard there
  int64_t memory_bytes = 0;   // 0: no budget given
  std::optional<int> layers;  // count; nullopt when the file divides evenly
  std::string model;          // resolved path; the cluster's model unless the node names one
};

struct LinkConfig {
  int from = 0, to = 0;  // ranks
  transport::LinkShape shape;
};

struct ClusterConfig {
  std::string path;   // where it was read from ("" when parsed from text)
  std::string model;  // resolved
  EndsPlacement ends;
  std::vector<NodeConfig> nodes;
  std::vector<LinkConfig> links;
  int64_t kv_blocks = 0;  // 0: derived (rank_setup.h)
  int page_size = 16;

  int n_ranks() const { return static_cast<int>(nodes.size()); }
  // The per-node counts when the file gives them, for plan_split.
  std::optional<std::vector<int>> split() const;
  std::vector<int64_t> memory_budgets() const;
  // The file's link shapes, overridden link by link by command-line specs (--link-delay,
  // --link-jitter, --link-bandwidth; transport/link_spec.h syntax). Throws LinkSpecError.
  transport::LinkShapes link_shapes(std::string_view delay_spec = {}, std::string_view jitter_spec = {},
                                    std::string_view bandwidth_spec = {}) const;
  // Rank of a node by name; -1 when none has it.
  int rank_of(std::string_view name) const;
};

// Parses JSON text. `path` names it in errors and anchors relative model paths (its folder).
ClusterConfig parse_cluster_config(std::string_view json_text, const std::string& path);
ClusterConfig read_cluster_config(const std::string& path);

// "8GiB", "512MiB", "2GB", "1.5G", "1048576" -> bytes. Binary units (KiB, MiB, GiB, TiB, and the
// bare K/M/G/T) and decimal ones (KB, MB, GB, TB). ClusterConfigError naming `what` otherwise.
int64_t parse_byte_size(std::string_view text, const std::string& what);

}  // namespace jarvis
