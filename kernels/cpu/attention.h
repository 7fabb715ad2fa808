// Causal self-attention over a paged KV cache, and the op that fills the pages.
//
// Cache layout for one layer: pages of `page_size` token slots,
//   k_pages, v_pages: [num_pages, page_size, n_kv_heads, head_dim]
// Token position p of a sequence lives in page block_table[p / page_size], slot p % page_size.
#pragma once

#include <cstdint>

namespace jarvis::cpu {

class ThreadPool;

struct AttentionShape {
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads; n_heads % n_kv_heads == 0 (GQA group = the quotient)
  int head_dim = 0;
  int page_size = 0;
  float scale = 0;     // usually 1 / sqrt(head_dim)
};

// One sequence's new tokens in a step: rows [token_offset, token_offset + n_tokens) of q/out are
// its tokens at positions [start_pos, start_pos + n_tokens).
struct PagedSequence {
  int64_t token_offset = 0;
  int n_tokens = 0;
  int start_pos = 0;
  const int32_t* block_table = nullptr;  // covers start_pos + n_tokens positions
};

// Stores the new tokens' K and V rows of one sequence into their page slots.
void write_kv_pages(const float* k,  // [seq.n_tokens, n_kv_heads, head_dim] (the sequence's rows)
                    const float* v,  // [seq.n_tokens, n_kv_heads, head_dim]
                    const PagedSequence& seq, const AttentionShape& shape,
                    float* k_pages,  // [num_pages, page_size, n_kv_heads, head_dim]
                    float* v_pages);

// out[t, h] = sum_j softmax_j(q[t, h] . k[j, h / group] * scale) v[j, h / group] over the
// positions j <= pos(t) of t's sequence (its earlier tokens and itself, already written to the
// pages). Scores and the running softmax are float; one pass with a rescaled running maximum.
// Returns false (computing nothing) when the shape is inconsistent.
bool paged_attention(const float* q,        // [total_tokens, n_heads, head_dim]
                     const float* k_pages,  // [num_pages, page_size, n_kv_heads, head_dim]
                     const float* v_pages,  // [num_pages, page_size, n_kv_heads, head_dim]
                     const PagedSequence* seqs, int n_seqs,
                     float* out,            // [total_tokens, n_heads, head_dim]
                     const AttentionShape& shape, ThreadPool& pool);

}  // namespace jarvis::cpu
