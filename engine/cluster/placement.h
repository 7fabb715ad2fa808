// Which layers each rank holds, and whether that fits each rank's memory.
//
// Ranks hold contiguous layer ranges in rank order (rank 0 the first layers, rank N-1 the last):
// a hidden state walks the ranks in order. The head (embedding) and the tail (final norm, lm_head,
// sampling) are placed separately; by default both sit on rank 0, so the ring closes back to the
// rank that serves requests and prompts and tokens never leave it (JARVIS). Everything here is
// checked before a single weight is loaded: a wrong split is an InvalidArgument naming the problem.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/model/load_options.h"

namespace jarvis {

struct EndsPlacement {
  int head_rank = 0;  // holds the embedding
  int tail_rank = 0;  // holds final norm + lm_head and samples
};

// "10,10,10" -> {10, 10, 10}. InvalidArgument on anything but comma-separated integers >= 0.
std::vector<int> parse_split(std::string_view text);

// One ShardSpec per rank (end_layer resolved). Without `split`, layers are divided evenly; when they
// do not divide, the LAST n_layers % n_ranks ranks get one more, so rank 0 (which by default also
// embeds and runs the lm_head, together worth several layers) gets the fewest. A rank may hold zero
// layers only if it holds the head or the tail (JARVIS's user device: embedding and head, layers
// elsewhere); a rank with nothing to do would only add a hop. Throws InvalidArgument for: n_ranks
// < 1, split size != n_ranks, sum != n_layers, a negative count, an idle rank, head/tail rank out
// of range, fewer layers than ranks without a split.
std::vector<ShardSpec> plan_split(int n_layers, int n_ranks,
                                  const std::optional<std::vector<int>>& split = std::nullopt, EndsPlacement ends = {});

// "rank 0: layers [0, 10) + embedding + head" -- for logs and error messages.
std::string describe_shard(int rank, const ShardSpec& shard);

// Bytes a rank needs, from the model header alone (no weights read). Weights are counted as the
// rank will hold them (`weights`, the ranks' --weights): natively, the bytes the file's tensor
// headers give (ModelConfig::native_bytes; a config that records none, e.g. a synthetic one, is
// counted at 4 bytes per element); under WeightFormat::kF32, 4 bytes per element.
struct ShardMemory {
  int64_t layer_weights = 0;  // the shard's transformer blocks
  int64_t end_weights = 0;    // embedding and/or final norm + lm_head (a tied head needs the embedding)
  int64_t kv_cache = 0;       // KV blocks for the shard's layers
  int64_t total() const { return layer_weights + end_weights + kv_cache; }
};

// Weight elements of one transformer block / of the embedding matrix / of norm + untied lm_head.
// Mirrors the tensors csrc/model/weight_assembly.cpp loads (rope_freqs, a few hundred floats, is
// left out).
int64_t layer_weight_elements(const ModelConfig& c);
int64_t embedding_elements(const ModelConfig& c);
int64_t head_elements(const ModelConfig& c);  // output_norm + lm_head (0 for the matrix when tied)

// The bytes those hold in `weights` format: layer `layer` / the embedding / norm + untied lm_head.
int64_t layer_weight_bytes(const ModelConfig& c, int layer, WeightFormat weights);
int64_t embedding_bytes(const ModelConfig& c, WeightFormat weights);
int64_t head_bytes(const ModelConfig& c, WeightFormat weights);

// `kv_blocks` blocks of `page_size` tokens: every rank holds the same blocks (the block tables
// come from rank 0), each for its own layers only.
ShardMemory estimate_shard_memory(const ModelConfig& c, const ShardSpec& shard, int64_t kv_blocks, int page_size,
                                  WeightFormat weights = WeightFormat::kNative);

// Throws InvalidArgument naming the first rank whose estimate exceeds its budget:
// "rank 2 needs 1.31 GiB (weights 1.20 GiB for layers [20, 30) + head, KV cache 112 MiB) but its
// memory budget is 1.00 GiB". budgets[r] <= 0 means no limit for that rank.
void check_memory(const ModelConfig& c, const std::vector<ShardSpec>& shards, const std::vector<int64_t>& budgets,
                  int64_t kv_blocks, int page_size, WeightFormat weights = WeightFormat::kNative);

// Most KV blocks every rank can hold next to its weights (ranks without a budget do not limit it);
// -1 when no rank has a budget. Throws InvalidArgument naming a rank whose weights alone exceed
// its budget.
int64_t max_kv_blocks(const ModelConfig& c, const std::vector<ShardSpec>& shards, const std::vector<int64_t>& budgets,
                      int page_size, WeightFormat weights = WeightFormat::kNative);

// 1536 -> "1.50 KiB"; for messages.
std::string format_bytes(int64_t bytes);

}  // namespace jarvis
