#include "engine/cluster/placement.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "csrc/model/kv_cache.h"
#include "csrc/util/error.h"

namespace jarvis {

std::vector<int> parse_split(std::string_view text) {
  std::vector<int> out;
  if (text.empty()) throw InvalidArgument("--split is empty: give one layer count per rank, e.g. 10,10,10");
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item(
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    char* end = nullptr;
    errno = 0;
    const long v = item.empty() ? -1 : std::strtol(item.c_str(), &end, 10);
    if (item.empty() || errno != 0 || *end != '\0' || v < 0 || v > std::numeric_limits<int>::max()) {
      throw InvalidArgument("--split '" + std::string(text) + "': '" + item +
                            "' is not a layer count (comma-separated integers >= 0, e.g. 10,10,10)");
    }
    out.push_back(static_cast<int>(v));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<ShardSpec> plan_split(int n_layers, int n_ranks, const std::optional<std::vector<int>>& split,
                                  EndsPlacement ends) {
  if (n_ranks < 1) throw InvalidArgument("the number of ranks must be >= 1, got " + std::to_string(n_ranks));
  if (n_layers < 1) throw InvalidArgument("the model has no layers (" + std::to_string(n_layers) + ")");
  for (const auto& [what, r] :
       {std::pair<const char*, int>{"head (embedding)", ends.head_rank}, {"tail (lm_head)", ends.tail_rank}}) {
    if (r < 0 || r >= n_ranks) {
      throw InvalidArgument(std::string("the ") + what + " is placed on rank " + std::to_string(r) +
                            ", but ranks are 0.." + std::to_string(n_ranks - 1));
    }
  }
  std::vector<int> counts;
  if (split) {
    counts = *split;
    if (static_cast<int>(counts.size()) != n_ranks) {
      throw InvalidArgument("--split names " + std::to_string(counts.size()) + " ranks but there are " +
                            std::to_string(n_ranks) + " (--ranks " + std::to_string(n_ranks) + ")");
    }
    int64_t sum = 0;
    for (int c : counts) {
      if (c < 0) throw InvalidArgument("--split has a negative layer count " + std::to_string(c));
      sum += c;
    }
    if (sum != n_layers) {
      throw InvalidArgument("--split sums to " + std::to_string(sum) + " layers but the model has " +
                            std::to_string(n_layers));
    }
  } else {
    if (n_layers < n_ranks) {
      throw InvalidArgument("cannot divide " + std::to_string(n_layers) + " layers over " + std::to_string(n_ranks) +
                            " ranks with at least one each; give --split (a rank holding the head or tail may have 0)");
    }
    const int base = n_layers / n_ranks, extra = n_layers % n_ranks;
    for (int r = 0; r < n_ranks; ++r) counts.push_back(base + (r >= n_ranks - extra ? 1 : 0));
  }
  std::vector<ShardSpec> shards;
  int first = 0;
  for (int r = 0; r < n_ranks; ++r) {
    ShardSpec s;
    s.first_layer = first;
    s.end_layer = first + counts[r];
    s.has_embedding = r == ends.head_rank;
    s.has_head = r == ends.tail_rank;
    if (counts[r] == 0 && !s.has_embedding && !s.has_head) {
      throw InvalidArgument("rank " + std::to_string(r) +
                            " would hold no layers and neither the head nor the tail: every rank needs >= 1 layer");
    }
    first = s.end_layer;
    shards.push_back(s);
  }
  return shards;
}

namespace {

std::string holdings(const ShardSpec& s) {
  std::string out = "layers [" + std::to_string(s.first_layer) + ", " + std::to_string(s.end_layer) + ")";
  if (s.has_embedding) out += " + embedding";
  if (s.has_head) out += " + head";
  return out;
}

}  // namespace

std::string describe_shard(int rank, const ShardSpec& s) { return "rank " + std::to_string(rank) + ": " + holdings(s); }

int64_t layer_weight_elements(const ModelConfig& c) {
  const int64_t h = c.hidden, q = c.q_dim(), kv = c.kv_dim(), ffn = c.ffn_hidden;
  int64_t n = 2 * h;                // attn_norm, ffn_norm
  n += q * h + 2 * kv * h + h * q;  // wq, wk, wv, wo
  n += 3 * ffn * h;                 // gate, up, down
  if (c.qkv_bias) n += q + 2 * kv;
  return n;
}

int64_t embedding_elements(const ModelConfig& c) { return static_cast<int64_t>(c.vocab_size) * c.hidden; }

int64_t head_elements(const ModelConfig& c) {
  return c.hidden + (c.tied_embeddings ? 0 : static_cast<int64_t>(c.vocab_size) * c.hidden);
}

namespace {

bool knows_native_bytes(const ModelConfig& c, WeightFormat weights) {
  return weights == WeightFormat::kNative && static_cast<int>(c.native_bytes.layer.size()) == c.n_layers;
}

}  // namespace

int64_t layer_weight_bytes(const ModelConfig& c, int layer, WeightFormat weights) {
  if (knows_native_bytes(c, weights) && layer >= 0 && layer < c.n_layers) {
    return c.native_bytes.layer[static_cast<size_t>(layer)];
  }
  return layer_weight_elements(c) * 4;
}

int64_t embedding_bytes(const ModelConfig& c, WeightFormat weights) {
  return knows_native_bytes(c, weights) ? c.native_bytes.embedding : embedding_elements(c) * 4;
}

int64_t head_bytes(const ModelConfig& c, WeightFormat weights) {
  return knows_native_bytes(c, weights) ? c.native_bytes.head : head_elements(c) * 4;
}

ShardMemory estimate_shard_memory(const ModelConfig& c, const ShardSpec& s, int64_t kv_blocks, int page_size,
                                  WeightFormat weights) {
  const int end = s.end_layer < 0 ? c.n_layers : s.end_layer;
  const int layers = end - s.first_layer;
  ShardMemory m;
  for (int l = s.first_layer; l < end; ++l) m.layer_weights += layer_weight_bytes(c, l, weights);
  // A tied head multiplies by the embedding matrix, so the tail rank loads it too.
  if (s.has_embedding || (s.has_head && c.tied_embeddings)) m.end_weights += embedding_bytes(c, weights);
  if (s.has_head) m.end_weights += head_bytes(c, weights);
  m.kv_cache = kv_blocks * static_cast<int64_t>(KvCache::block_bytes(layers, page_size, c.n_kv_heads, c.head_dim));
  return m;
}

std::string format_bytes(int64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (std::abs(v) >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[u]);
  }
  return buf;
}

namespace {

void check_budget_count(const std::vector<ShardSpec>& shards, const std::vector<int64_t>& budgets) {
  if (budgets.size() != shards.size()) {
    throw InvalidArgument("got memory budgets for " + std::to_string(budgets.size()) + " ranks but there are " +
                          std::to_string(shards.size()));
  }
}

std::string shortfall(int rank, const ShardSpec& s, const ShardMemory& m, int64_t budget) {
  return "rank " + std::to_string(rank) + " needs " + format_bytes(m.total()) + " (weights " +
         format_bytes(m.layer_weights + m.end_weights) + " for " + holdings(s) + ", KV cache " +
         format_bytes(m.kv_cache) + ") but its memory budget is " + format_bytes(budget);
}

}  // namespace

void check_memory(const ModelConfig& c, const std::vector<ShardSpec>& shards, const std::vector<int64_t>& budgets,
                  int64_t kv_blocks, int page_size, WeightFormat weights) {
  check_budget_count(shards, budgets);
  for (size_t r = 0; r < shards.size(); ++r) {
    if (budgets[r] <= 0) continue;
    const ShardMemory m = estimate_shard_memory(c, shards[r], kv_blocks, page_size, weights);
    if (m.total() > budgets[r]) throw InvalidArgument(shortfall(static_cast<int>(r), shards[r], m, budgets[r]));
  }
}

int64_t max_kv_blocks(const ModelConfig& c, const std::vector<ShardSpec>& shards, const std::vector<int64_t>& budgets,
                      int page_size, WeightFormat weights) {
  check_budget_count(shards, budgets);
  int64_t best = -1;
  for (size_t r = 0; r < shards.size(); ++r) {
    if (budgets[r] <= 0) continue;
    const ShardMemory m = estimate_shard_memory(c, shards[r], 1, page_size, weights);
    const int64_t weights = m.layer_weights + m.end_weights;
    if (weights > budgets[r]) {
      throw InvalidArgument(
          shortfall(static_cast<int>(r), shards[r], ShardMemory{m.layer_weights, m.end_weights, 0}, budgets[r]));
    }
    if (m.kv_cache == 0) continue;  // no layers: holds no KV
    const int64_t fit = (budgets[r] - weights) / m.kv_cache;
    best = best < 0 ? fit : std::min(best, fit);
  }
  return best;
}

}  // namespace jarvis
