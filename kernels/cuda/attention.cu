// Paged causal attention: prefill chunks and decode tokens in one kernel, split-KV for small batches.
//
// Work decomposition. For sequence s and kv head g, the query "rows" are the pairs
// (token t, query head g * group + i), numbered t * group + i: every row of a CTA reads the same
// kv head, so each K/V page is read once per group (GQA), and a decode token's `group` heads share
// one CTA. A CTA takes kRows consecutive rows and one split of the key range; it walks that range
// in tiles of kKeys keys staged in shared memory (fp32), one tile per pass over all its rows.
// Within a warp, lane j scores key j of the tile for one row, the warp does one online-softmax
// update per tile (max, rescale, sum), then accumulates P.V with lanes owning head dimensions
// d = lane + 32 i. With max_splits > 1 each CTA writes unnormalised (acc, m, l) partials and a merge
// kernel combines them:  M = max m_s,  L = sum l_s e^(m_s - M),  o = sum acc_s e^(m_s - M) / L.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/dispatch.cuh"

namespace jarvis::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kAttentionRowTile;  // rows per CTA
constexpr int kKeys = kAttentionKeyTile;  // keys per shared-memory tile: one per lane
constexpr int kSlots = kRows / kWarps;    // rows per warp; row r belongs to warp r % kWarps
static_assert(kKeys == 32, "lane j scores key j of a tile");
static_assert(kRows % kWarps == 0, "rows split evenly over warps");

// Splits shorter than this cost more in the merge than they gain in parallelism.
constexpr int kMinSplitKeys = 256;
constexpr int kMaxSplits = 64;

template <int D>
constexpr size_t shared_bytes() {
  // q tile [kRows][D], k tile [kKeys][D + 1] (padded: lane j walks row j), v tile [kKeys][D].
  return static_cast<size_t>(kRows * D + kKeys * (D + 1) + kKeys * D) * sizeof(float);
}

__device__ __forceinline__ float* partial_ml(const PagedAttentionParams& p) {
  return p.workspace + p.total_tokens * p.n_heads * p.plan.max_splits * p.head_dim;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_kernel(const PagedAttentionParams p) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte load
  constexpr int kVecPerRow = D / kVec;
  constexpr int kPerLane = D / 32;
  extern __shared__ float smem[];
  float* qs = smem;                    // [kRows][D]
  float* ks = qs + kRows * D;          // [kKeys][D + 1]
  float* vs = ks + kKeys * (D + 1);    // [kKeys][D]

  const int seq = blockIdx.z;
  const int kvh = blockIdx.y;
  const int tile = blockIdx.x / p.plan.max_splits;
  const int split = blockIdx.x % p.plan.max_splits;
  const int group = p.n_heads / p.n_kv_heads;
  const int start = p.start_pos[seq];
  const int n_rows = p.n_tokens[seq] * group;
  const int row0 = tile * kRows;
  // Every exit below depends on blockIdx only, so whole CTAs leave before any barrier.
  if (row0 >= n_rows) return;
  const int tile_rows = min(kRows, n_rows - row0);
  const int pos_max = start + (row0 + tile_rows - 1) / group;  // causal bound of the last row
  const int k_begin = split * p.plan.kv_chunk;
  if (k_begin > pos_max) return;
  const int k_end = min(pos_max + 1, k_begin + p.plan.kv_chunk);

  const int64_t tok0 = p.token_offset[seq];
  const int64_t q_row_stride = static_cast<int64_t>(p.n_heads) * D;
  const T* q = static_cast<const T*>(p.q);
  for (int i = threadIdx.x; i < kRows * kVecPerRow; i += kThreads) {
    const int r = i / kVecPerRow, c = (i % kVecPerRow) * kVec;
    float v[kVec] = {};
    if (r < tile_rows) {
      const int row = row0 + r;
      const int h = kvh * group + row % group;
      load16_as_float(q + (tok0 + row / group) * q_row_stride + static_cast<int64_t>(h) * D + c, v);
    }
#pragma unroll
    for (int e = 0; e < kVec; ++e) qs[r * D + c + e] = v[e];
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float acc[kSlots][kPerLane] = {};
  float m[kSlots], l[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    m[s] = -INFINITY;
    l[s] = 0.0f;
  }
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int64_t slot_stride = static_cast<int64_t>(p.n_kv_heads) * D;
  const int64_t page_stride = slot_stride * p.page_size;
  const T* k_pages = static_cast<const T*>(p.k_pages);
  const T* v_pages = static_cast<const T*>(p.v_pages);

  for (int k0 = k_begin; k0 < k_end; k0 += kKeys) {
    const int nk = min(kKeys, k_end - k0);
    __syncthreads();  // the previous tile is consumed (first pass: nothing to wait for)
    for (int i = threadIdx.x; i < kKeys * kVecPerRow; i += kThreads) {
      const int j = i / kVecPerRow, c = (i % kVecPerRow) * kVec;
      float kv[kVec] = {}, vv[kVec] = {};
      if (j < nk) {  // slots past k_end are never read: they may hold another step's garbage
        const int pos = k0 + j;
        const int64_t at = static_cast<int64_t>(table[pos / p.page_size]) * page_stride +
                           static_cast<int64_t>(pos % p.page_size) * slot_stride +
                           static_cast<int64_t>(kvh) * D + c;
        load16_as_float(k_pages + at, kv);
        load16_as_float(v_pages + at, vv);
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        ks[j * (D + 1) + c + e] = kv[e];
        vs[j * D + c + e] = vv[e];
      }
    }
    __syncthreads();

#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int r = s * kWarps + warp;
      if (r >= tile_rows) continue;  // warp-uniform
      const int pos = start + (row0 + r) / group;
      // Keys are visited in increasing order, so a row skips exactly the tiles wholly in its
      // future, and key k0 is valid for every row it scores: its running max is finite.
      if (pos < k0) continue;
      const float* qrow = qs + r * D;
      const float* krow = ks + lane * (D + 1);
      float dot = 0.0f;
#pragma unroll 16
      for (int d = 0; d < D; ++d) dot += qrow[d] * krow[d];
      const float score = (lane < nk && k0 + lane <= pos) ? dot * p.scale : -INFINITY;
      const float new_m = fmaxf(m[s], warp_max(score));
      const float corr = expf(m[s] - new_m);  // 0 on the row's first tile (m = -inf)
      const float e = expf(score - new_m);    // 0 for masked keys
      l[s] = l[s] * corr + warp_sum(e);
      m[s] = new_m;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[s][i] *= corr;
      const int n_valid = min(nk, pos - k0 + 1);  // warp-uniform
      for (int j = 0; j < n_valid; ++j) {
        const float pj = __shfl_sync(0xffffffffu, e, j);
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) acc[s][i] += pj * vs[j * D + lane + 32 * i];
      }
    }
  }

#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int r = s * kWarps + warp;
    if (r >= tile_rows) continue;
    const int row = row0 + r;
    const int t = row / group;
    if (start + t < k_begin) continue;  // no key of this split is visible to the row
    const int h = kvh * group + row % group;
    const int64_t tok = tok0 + t;
    if (p.plan.max_splits == 1) {
      const float inv = 1.0f / l[s];
      T* o = static_cast<T*>(p.out) + tok * q_row_stride + static_cast<int64_t>(h) * D;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) o[lane + 32 * i] = from_float<T>(acc[s][i] * inv);
    } else {
      const int64_t idx = (tok * p.n_heads + h) * p.plan.max_splits + split;
      float* w = p.workspace + idx * D;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) w[lane + 32 * i] = acc[s][i];
      if (lane == 0) {
        partial_ml(p)[idx * 2] = m[s];
        partial_ml(p)[idx * 2 + 1] = l[s];
      }
    }
  }
}

// One block per (token, head), one thread per dimension. Row (tok, h) at position pos has
// partials from splits 0 .. pos / kv_chunk exactly: those CTAs ran, and saw key s * kv_chunk <= pos.
template <typename T>
__global__ void merge_kernel(const PagedAttentionParams p) {
  const int seq = blockIdx.z, h = blockIdx.y, t = blockIdx.x;
  if (t >= p.n_tokens[seq]) return;
  const int n_splits = (p.start_pos[seq] + t) / p.plan.kv_chunk + 1;
  const int64_t tok = p.token_offset[seq] + t;
  const int64_t idx0 = (tok * p.n_heads + h) * p.plan.max_splits;
  const float* ml = partial_ml(p);
  float big_m = -INFINITY;
  for (int s = 0; s < n_splits; ++s) big_m = fmaxf(big_m, ml[(idx0 + s) * 2]);
  float big_l = 0.0f, o = 0.0f;
  const int d = threadIdx.x;
  for (int s = 0; s < n_splits; ++s) {
    const float w = expf(ml[(idx0 + s) * 2] - big_m);
    big_l += ml[(idx0 + s) * 2 + 1] * w;
    o += p.workspace[(idx0 + s) * p.head_dim + d] * w;
  }
  static_cast<T*>(p.out)[(tok * p.n_heads + h) * p.head_dim + d] = from_float<T>(o / big_l);
}

template <typename T, int D>
cudaError_t launch(const PagedAttentionParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = shared_bytes<D>();
  // Above 48 KiB dynamic shared memory needs an opt-in (D = 128 and 256 in fp32 staging).
  cudaError_t err = cudaFuncSetAttribute(attention_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kSmem));
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(p.plan.max_row_tiles * p.plan.max_splits),
                  static_cast<unsigned>(p.n_kv_heads), static_cast<unsigned>(p.n_seqs));
  attention_kernel<T, D><<<grid, kThreads, kSmem, stream>>>(p);
  err = cudaGetLastError();
  if (err != cudaSuccess || p.plan.max_splits == 1) return err;
  const dim3 merge_grid(static_cast<unsigned>(p.plan.max_tokens), static_cast<unsigned>(p.n_heads),
                        static_cast<unsigned>(p.n_seqs));
  merge_kernel<T><<<merge_grid, D, 0, stream>>>(p);
  return cudaGetLastError();
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

AttentionPlan plan_paged_attention(const int32_t* n_tokens, const int32_t* start_pos, int n_seqs,
                                   int n_heads, int n_kv_heads, int num_sms) {
  AttentionPlan plan;
  plan.kv_chunk = kKeys;
  plan.max_splits = 1;
  if (n_seqs <= 0 || n_kv_heads <= 0 || n_heads <= 0 || n_heads % n_kv_heads != 0) return plan;
  const int group = n_heads / n_kv_heads;
  int64_t work = 0;  // CTAs without a split
  int64_t max_kv = 1;
  for (int s = 0; s < n_seqs; ++s) {
    const int64_t tiles = ceil_div(static_cast<int64_t>(n_tokens[s]) * group, kRows);
    plan.max_row_tiles = std::max<int>(plan.max_row_tiles, static_cast<int>(tiles));
    plan.max_tokens = std::max(plan.max_tokens, n_tokens[s]);
    work += tiles;
    max_kv = std::max<int64_t>(max_kv, static_cast<int64_t>(start_pos[s]) + n_tokens[s]);
  }
  work *= n_kv_heads;
  // Two CTAs per SM let one load its tile while the other computes. Splitting only pays when
  // the batch alone leaves SMs idle (small decode batches over long contexts).
  const int64_t target = 2 * static_cast<int64_t>(std::max(num_sms, 0));
  int64_t splits = 1;
  if (work > 0 && work < target) {
    splits = std::min({ceil_div(target, work), ceil_div(max_kv, kMinSplitKeys), int64_t{kMaxSplits}});
    splits = std::max<int64_t>(splits, 1);
  }
  const int64_t chunk = ceil_div(ceil_div(max_kv, splits), kKeys) * kKeys;
  plan.kv_chunk = static_cast<int>(chunk);
  plan.max_splits = static_cast<int>(ceil_div(max_kv, chunk));
  return plan;
}

size_t attention_workspace_bytes(const AttentionPlan& plan, int64_t total_tokens, int n_heads,
                                 int head_dim) {
  if (plan.max_splits <= 1) return 0;
  return static_cast<size_t>(total_tokens) * n_heads * plan.max_splits * (head_dim + 2) * sizeof(float);
}

cudaError_t paged_attention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0 || p.n_kv_heads > 65535 ||
      p.page_size <= 0 || p.n_seqs < 0 || p.n_seqs > 65535 || p.total_tokens < 0 ||
      p.max_blocks_per_seq <= 0 || p.plan.max_splits < 1 || p.plan.kv_chunk < 1 ||
      p.plan.max_row_tiles < 0 || p.plan.max_tokens < 0 || p.plan.max_tokens > 0x7fffffff ||
      static_cast<int64_t>(p.plan.max_row_tiles) * p.plan.max_splits > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (p.n_seqs == 0 || p.total_tokens == 0 || p.plan.max_row_tiles == 0) return cudaSuccess;
  if (!p.q || !p.k_pages || !p.v_pages || !p.out || !p.token_offset || !p.n_tokens || !p.start_pos ||
      !p.block_tables || (p.plan.max_splits > 1 && !p.workspace)) {
    return cudaErrorInvalidValue;
  }
  if (!aligned16(p.q) || !aligned16(p.k_pages) || !aligned16(p.v_pages) || !aligned16(p.out)) {
    return cudaErrorInvalidValue;  // the kernel reads rows with 16-byte loads
  }
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return dispatch_head_dim(p.head_dim, [&](auto dim) { return launch<T, decltype(dim)::value>(p, stream); });
  });
}

}  // namespace jarvis::cuda
