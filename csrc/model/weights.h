// Weights of one shard. Linear layers stay in the block type their file stores them in (a GGUF
// quant type, or F16/BF16/F32 from safetensors): cpu::QuantMatrix, multiplied by the kernels'
// qmatmul family. `--weights f32` (the reference path) dequantizes them at load into F32 ones.
// Norms and biases are small and always float32.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/quant_matrix.h"

namespace jarvis {

// Row-major [rows, cols]; a linear layer maps cols inputs to rows outputs (y = W x).
using Matrix = cpu::QuantMatrix;

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

  size_t bytes() const;  // bytes held: matrices in their block types, vectors as float32
};

}  // namespace jarvis
