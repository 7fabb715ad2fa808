// Rotary position embeddings on the GPU, fused with the write of the new K/V rows into the paged
// cache. Same pairing and formulas as kernels/cpu/rope.h: the cos/sin table is built once per
// step from inv_freq (double angles, as the CPU does) and reused by every layer.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

enum class RopePairing {
  kInterleaved,  // (2i, 2i+1)
  kNeox,         // (i, i + rope_dim/2)
};

// cos_sin[t, i] = (cos(pos[t] * inv_freq[i]), sin(...)) rounded to float; the angle and its
// cos/sin are computed in double, so the table matches cpu::rope_cos_sin to float rounding.
cudaError_t rope_cos_sin(const int32_t* positions,  // [n] device
                         const double* inv_freq,    // [half] device (cpu::rope_inv_freq)
                         float* cos_sin,            // [n, half, 2] device
                         int64_t n, int half, cudaStream_t stream);

struct RopeKvWriteParams {
  DType dtype = DType::kF16;  // of q, k, v and the pages
  int64_t n_tokens = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int rope_dim = 0;  // even, <= head_dim; dimensions past it are not rotated
  RopePairing pairing = RopePairing::kInterleaved;

  void* q = nullptr;                     // [n_tokens, n_heads, head_dim], rotated in place
  const void* k = nullptr;               // [n_tokens, n_kv_heads, head_dim]
  const void* v = nullptr;               // [n_tokens, n_kv_heads, head_dim]
  const float* cos_sin = nullptr;        // [n_tokens, rope_dim / 2, 2]
  const int64_t* slot_mapping = nullptr; // [n_tokens] page * page_size + slot; < 0: not stored
  void* k_pages = nullptr;               // [num_pages, page_size, n_kv_heads, head_dim]
  void* v_pages = nullptr;               // [num_pages, page_size, n_kv_heads, head_dim]
};

// Rotates q in place and k on its way into the pages; copies v. Rotation in fp32, one rounding
// to the dtype at the store. cudaErrorInvalidValue on bad shapes or null pointers.
cudaError_t rope_write_kv(const RopeKvWriteParams& p, cudaStream_t stream);

}  // namespace jarvis::cuda
