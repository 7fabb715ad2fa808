// Checks an EngineConfig and turns its KV memory budget into a number of cache blocks.
#pragma once

#include <cstdint>

#include "csrc/model/model.h"
#include "engine/engine.h"

namespace jarvis {

// Throws InvalidArgument naming the first bad value.
void validate(const EngineConfig& config);

// Blocks of config.page_size tokens that fit config.kv_cache_bytes, or kv_cache_fraction of the
// memory available now (MemAvailable), capped at what max_num_seqs full-context sequences can
// use. Throws InvalidArgument when the budget does not hold a single block (a request needs at
// least one), Error when /proc/meminfo cannot be read and no byte budget was given.
int kv_cache_blocks(const Model& model, const EngineConfig& config);
// The same for a cache over `n_layers` layers of a model with config `mc` (a pipeline ring on one
// machine passes every rank's layers: they all share this machine's memory).
int kv_cache_blocks(const ModelConfig& mc, int n_layers, const EngineConfig& config);

// MemAvailable from /proc/meminfo, in bytes; throws Error when it cannot be read.
int64_t mem_available_bytes();

}  // namespace jarvis
