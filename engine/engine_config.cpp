#include "engine/engine_config.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>
#include <string>

#include "csrc/model/kv_cache.h"
#include "csrc/util/error.h"
#include "engine/scheduler.h"

namespace jarvis {

void validate(const EngineConfig& c) {
  if (c.page_size < 1) throw InvalidArgument("page_size must be >= 1, got " + std::to_string(c.page_size));
  if (c.kv_cache_bytes < 0) {
    throw InvalidArgument("kv_cache_bytes must be >= 0, got " + std::to_string(c.kv_cache_bytes));
  }
  if (c.kv_cache_bytes == 0 && !(c.kv_cache_fraction > 0.0 && c.kv_cache_fraction <= 1.0)) {
    throw InvalidArgument("kv_cache_fraction must be in (0, 1], got " + std::to_string(c.kv_cache_fraction));
  }
  if (c.max_waiting < 0) throw InvalidArgument("max_waiting must be >= 0, got " + std::to_string(c.max_waiting));
  SchedulerConfig{c.max_num_seqs, c.max_batched_tokens, c.prefill_chunk, c.prefix_caching}.validate();
}

int64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key, unit;
    int64_t value = 0;
    if (fields >> key >> value >> unit && key == "MemAvailable:") return value * (unit == "kB" ? 1024 : 1);
  }
  throw Error("cannot read MemAvailable from /proc/meminfo: give the KV cache size in bytes");
}

int kv_cache_blocks(const Model& model, const EngineConfig& c) {
  return kv_cache_blocks(model.config(), model.n_shard_layers(), c);
}

int kv_cache_blocks(const ModelConfig& mc, int n_layers, const EngineConfig& c) {
  validate(c);
  const int64_t block =
      static_cast<int64_t>(KvCache::block_bytes(n_layers, c.page_size, mc.n_kv_heads, mc.head_dim));
  const int64_t budget = c.kv_cache_bytes > 0
                             ? c.kv_cache_bytes
                             : static_cast<int64_t>(c.kv_cache_fraction * static_cast<double>(mem_available_bytes()));
  const int64_t blocks = block > 0 ? budget / block : 0;
  if (blocks < 1) {
    throw InvalidArgument("KV cache budget of " + std::to_string(budget) + " bytes holds no block: one block of " +
                          std::to_string(c.page_size) + " tokens takes " + std::to_string(block) +
                          " bytes for this model, and every request needs at least one");
  }
  // More than every running sequence at full context could use is memory for nothing.
  const int64_t context = mc.context_length > 0 ? mc.context_length : INT32_MAX / 2;
  const int64_t useful = static_cast<int64_t>(c.max_num_seqs) * ((context + c.page_size - 1) / c.page_size);
  return static_cast<int>(std::min({blocks, useful, static_cast<int64_t>(INT32_MAX / 2)}));
}

}  // namespace jarvis
