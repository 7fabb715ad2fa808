#include "csrc/model/kv_cache.h"

namespace jarvis {

KvCache::KvCache(int n_layers, int num_blocks, int page_size, int n_kv_heads, int head_dim)
    : n_layers_(n_layers), num_blocks_(num_blocks), page_size_(page_size), n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      block_elems_(static_cast<size_t>(page_size) * n_kv_heads * head_dim),
      elems_(static_cast<size_t>(n_layers) * num_blocks * block_elems_),
      k_(new float[elems_]),
      v_(new float[elems_]) {}

size_t KvCache::block_bytes(int n_layers, int page_size, int n_kv_heads, int head_dim) {
  return 2 * sizeof(float) * static_cast<size_t>(n_layers) * page_size * n_kv_heads * head_dim;
}

int BatchView::total_tokens() const {
  int n = 0;
  for (const SequenceSlice& s : seqs) n += s.n_tokens;
  return n;
}

}  // namespace jarvis
