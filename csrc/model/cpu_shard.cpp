#include "csrc/model/cpu_shard.h"

namespace jarvis {

CpuShard::CpuShard(const Model& model, int num_blocks, int page_size, cpu::ThreadPool& pool)
    : model_(model), pool_(pool), kv_(model.make_kv_cache(num_blocks, page_size)) {}

void CpuShard::forward_layers(const BatchView& batch, float* hidden) {
  model_.forward_layers(batch, hidden, kv_, pool_);
}

void CpuShard::compute_logits(const float* hidden, int n_rows, float* logits) {
  model_.compute_logits(hidden, n_rows, logits, pool_);
}

}  // namespace jarvis
