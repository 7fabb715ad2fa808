// Weights of one shard in the compute type (float32 on the CPU for now: GGUF blocks are
// dequantized on load; keeping them quantized is a later speed step).
#pragma once

#include <cstdint>
#include <vector>

namespace jarvis {

// Row-major [rows, cols]; a linear layer maps cols inputs to rows outputs (y = W x).
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;

  bool empty() const { return data.empty(); }
  const float* row(int64_t r) const { return data.data() + r * cols; }
  size_t bytes() const { return data.size() * sizeof(float); }
};

struct LayerWeights {
  std::vector<float> attn_norm;                 // [hidden]
  Matrix wq, wk, wv, wo;                        // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  std::vector<float> bq, bk, bv;                // qwen2 only: [q_dim], [kv_dim], [kv_dim]
  std::vector<float> ffn_norm;                  // [hidden]
  Matrix w_gate, w_up, w_down;                  // [ffn, hidden] x2, [hidden, ffn]
};

struct ModelWeights {
  Matrix embedding;                  // [vocab, hidden]; present when the shard has the embedding
  std::vector<LayerWeights> layers;  // the shard's layers only, in order
  std::vector<float> output_norm;    // [hidden]; present when the shard has the head
  Matrix lm_head;                    // [vocab, hidden]; empty when tied (then `embedding` is used)
  // Per-pair RoPE frequency divisors [rope_dim / 2] (GGUF `rope_freqs.weight`: how llama.cpp
  // stores Llama 3.1 scaling); empty when the file has none.
  std::vector<float> rope_freqs;

  size_t bytes() const;
};

}  // namespace jarvis
