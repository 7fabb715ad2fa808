// Paged KV cache storage for the layers of one shard.
//
// Memory is cut into fixed-size pages ("blocks") of `page_size` token slots. A sequence owns a
// list of block ids (its block table, handed out by engine/block_manager); token position p of
// the sequence lives in block table[p / page_size], slot p % page_size. Per layer and block:
//   K: [page_size, n_kv_heads, head_dim] float, V likewise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace jarvis {

class KvCache {
 public:
  KvCache(int n_layers, int num_blocks, int page_size, int n_kv_heads, int head_dim);

  int n_layers() const { return n_layers_; }
  int num_blocks() const { return num_blocks_; }
  int page_size() const { return page_size_; }
  int n_kv_heads() const { return n_kv_heads_; }
  int head_dim() const { return head_dim_; }
  size_t bytes() const { return 2 * elems_ * sizeof(float); }
  // Bytes one block costs over all layers (K and V): what a memory budget is divided by.
  static size_t block_bytes(int n_layers, int page_size, int n_kv_heads, int head_dim);

  // Start of block `block` of layer `layer` (index within this shard): [page_size, n_kv_heads, head_dim].
  float* k_block(int layer, int block) { return k_.get() + offset(layer, block); }
  float* v_block(int layer, int block) { return v_.get() + offset(layer, block); }
  const float* k_block(int layer, int block) const { return k_.get() + offset(layer, block); }
  const float* v_block(int layer, int block) const { return v_.get() + offset(layer, block); }

 private:
  size_t offset(int layer, int block) const {
    return (static_cast<size_t>(layer) * num_blocks_ + block) * block_elems_;
  }
  int n_layers_, num_blocks_, page_size_, n_kv_heads_, head_dim_;
  size_t block_elems_;
  size_t elems_;  // per K and per V
  // Left uninitialised on purpose: a large budget then costs address space, and memory only as
  // blocks are first written (the OS maps zero pages lazily). Nothing reads a slot before it is
  // written: attention reads only positions its sequence has stored.
  std::unique_ptr<float[]> k_, v_;
};

// One sequence's part of a forward step: `n_tokens` new tokens at positions
// [start_pos, start_pos + n_tokens), attending to everything before them in the cache.
struct SequenceSlice {
  int64_t seq_id = 0;
  int n_tokens = 0;
  int start_pos = 0;
  std::vector<int32_t> block_table;  // must cover start_pos + n_tokens positions
  bool want_logits = true;           // tail computes logits for the slice's last token
};

// A forward step over several sequences; their tokens are concatenated in `seqs` order.
// A plain value so the scheduler can later send it to other ranks.
struct BatchView {
  std::vector<SequenceSlice> seqs;
  int total_tokens() const;
};

}  // namespace jarvis
