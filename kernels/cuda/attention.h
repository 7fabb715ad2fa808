// Causal attention over a paged KV cache on the GPU: one kernel for prefill chunks and decode
// tokens in the same batch, GQA-aware, with split-KV (flash-decoding) when the batch is too small
// to fill the device.
//
// Cache layout for one layer (as kernels/cpu/attention.h): pages of `page_size` token slots,
//   k_pages, v_pages: [num_pages, page_size, n_kv_heads, head_dim]
// Token position p of a sequence lives in page block_table[p / page_size], slot p % page_size.
//
// Plan once per step, run per layer: the host builds the batch metadata (offsets, lengths, block
// tables) and an AttentionPlan once per forward step; every layer reuses both.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

// How the key range of a sequence is cut into independent CTAs. Scalars only, so the plan is a
// plain value computed on the host from lengths the scheduler already knows.
struct AttentionPlan {
  int max_row_tiles = 0;  // max over sequences of ceil(n_tokens * group / kAttentionRowTile)
  int max_tokens = 0;     // max over sequences of n_tokens
  int kv_chunk = 0;       // keys per split (a multiple of kAttentionKeyTile)
  int max_splits = 0;     // max over sequences of ceil((start_pos + n_tokens) / kv_chunk)
};

// Query rows (token, head-of-group pairs) per CTA and keys per inner tile. Exposed for the plan.
constexpr int kAttentionRowTile = 32;
constexpr int kAttentionKeyTile = 32;

// Chooses the split of the key range. Without a split the kernel writes `out` directly; with
// max_splits > 1 partial results go through the workspace and a merge kernel.
// n_tokens, start_pos: host arrays [n_seqs]; num_sms: the device's multiprocessor count.
AttentionPlan plan_paged_attention(const int32_t* n_tokens, const int32_t* start_pos, int n_seqs,
                                   int n_heads, int n_kv_heads, int num_sms);

// Float scratch the plan needs (0 when max_splits == 1).
size_t attention_workspace_bytes(const AttentionPlan& plan, int64_t total_tokens, int n_heads,
                                 int head_dim);

struct PagedAttentionParams {
  DType dtype = DType::kF16;  // of q, pages and out; scores and softmax are fp32
  int n_heads = 0;            // query heads
  int n_kv_heads = 0;         // n_heads % n_kv_heads == 0; query head h reads kv head h / group
  int head_dim = 0;           // 64, 128 or 256
  int page_size = 0;          // any positive value
  float scale = 0;            // usually 1 / sqrt(head_dim)
  int n_seqs = 0;
  int64_t total_tokens = 0;   // rows of q and out

  const void* q = nullptr;        // [total_tokens, n_heads, head_dim]
  const void* k_pages = nullptr;  // [num_pages, page_size, n_kv_heads, head_dim]
  const void* v_pages = nullptr;  // [num_pages, page_size, n_kv_heads, head_dim]
  void* out = nullptr;            // [total_tokens, n_heads, head_dim]

  // Batch metadata, device memory, as cpu::PagedSequence: sequence s owns rows
  // [token_offset[s], token_offset[s] + n_tokens[s]) at positions start_pos[s] + t, and attends
  // to positions 0 .. its own (its new K/V already written to the pages).
  const int32_t* token_offset = nullptr;  // [n_seqs]
  const int32_t* n_tokens = nullptr;      // [n_seqs]
  const int32_t* start_pos = nullptr;     // [n_seqs]
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;

  AttentionPlan plan;
  float* workspace = nullptr;  // attention_workspace_bytes(plan, ...) bytes, when max_splits > 1
};

// out[t, h] = sum_j softmax_j(q[t, h] . k[j, h / group] * scale) v[j, h / group] over positions
// j <= pos(t). cudaErrorInvalidValue for an unsupported head_dim / dtype, inconsistent shapes,
// null pointers, or q/pages/out not 16-byte aligned.
cudaError_t paged_attention(const PagedAttentionParams& p, cudaStream_t stream);

}  // namespace jarvis::cuda
