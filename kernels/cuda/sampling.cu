#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/sampling.h"

namespace jarvis::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr double kTopPSlack = 1e-6;  // csrc/sampling/sampler.cpp's: a nucleus of mass p on paper reaches p
constexpr size_t kDynamicSmem = static_cast<size_t>(kSampleMaxCandidates) * (sizeof(uint64_t) + sizeof(int32_t));

// ---- device helpers ----

// Strict total order "larger logit first, then lower id" as one unsigned compare: the logit's bits
// made order-preserving (-0 counts as +0, as float == does), then the id inverted.
__device__ __forceinline__ uint64_t make_key(float l, int i) {
  const uint32_t b = __float_as_uint(l == 0.0f ? 0.0f : l);
  const uint32_t ord = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<uint64_t>(ord) << 32) | static_cast<uint32_t>(0xFFFFFFFFu - static_cast<uint32_t>(i));
}
__device__ __forceinline__ int key_id(uint64_t k) {
  return static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(k & 0xFFFFFFFFull));
}

// exp((l - max) / T) in double, written as sampler.cpp writes it.
__device__ __forceinline__ double weight(float l, float max_logit, double inv_t) {
  return exp(__dmul_rn(__dsub_rn(static_cast<double>(l), static_cast<double>(max_logit)), inv_t));
}

__device__ __forceinline__ float logprob_of(float l, float max_logit, double inv_t, double log_z) {
  return static_cast<float>(
      __fma_rn(__dsub_rn(static_cast<double>(l), static_cast<double>(max_logit)), inv_t, -log_z));
}

__device__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float m = red[0];
  for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
  __syncthreads();
  return m;
}

// The first index holding the maximum value.
__device__ int block_argmax(float v, int i, float* redv, int* redi) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
  }
  if (threadIdx.x % 32 == 0) redv[threadIdx.x / 32] = v, redi[threadIdx.x / 32] = i;
  __syncthreads();
  v = redv[0];
  i = redi[0];
  for (int w = 1; w < kWarps; ++w) {
    if (redv[w] > v || (redv[w] == v && redi[w] < i)) v = redv[w], i = redi[w];
  }
  __syncthreads();
  return i;
}

// The r-th largest key of the row (1-based), or a value K such that exactly r keys are >= K:
// most-significant-digit radix select, 8 bits a pass, stopping when a digit's bucket is taken whole.
__device__ uint64_t radix_select(const float* row, int vocab, int r, int* hist) {
  __shared__ int s_digit, s_remaining, s_bucket;
  uint64_t prefix = 0, mask = 0;
  int remaining = r;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint64_t k = make_key(row[i], i);
      if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 0xFF], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int rem = remaining, b = 255;
      for (; b > 0 && rem > hist[b]; --b) rem -= hist[b];
      s_digit = b;
      s_remaining = rem;
      s_bucket = hist[b];
    }
    __syncthreads();
    prefix |= static_cast<uint64_t>(s_digit) << shift;
    mask |= 0xFFull << shift;
    remaining = s_remaining;
    const bool whole = s_bucket == remaining;
    __syncthreads();  // hist and the s_ values are rewritten by the next pass
    if (whole) return prefix;
  }
  return prefix;
}

// keys[0, r) = the r largest keys of the row, sorted descending (bitonic, padded with 0, which no
// real key equals: its logit bits would be a NaN).
__device__ void top_keys_sorted(const float* row, int vocab, int r, uint64_t* keys, int* hist) {
  __shared__ int s_count;
  const uint64_t threshold = radix_select(row, vocab, r, hist);
  if (threadIdx.x == 0) s_count = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const uint64_t k = make_key(row[i], i);
    if (k >= threshold) keys[atomicAdd(&s_count, 1)] = k;
  }
  int padded = 1;
  while (padded < r) padded <<= 1;
  for (int i = r + threadIdx.x; i < padded; i += kThreads) keys[i] = 0;
  __syncthreads();
  for (int k = 2; k <= padded; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < padded; i += kThreads) {
        const int partner = i ^ j;
        if (partner > i) {
          const uint64_t a = keys[i], b = keys[partner];
          if ((i & k) == 0 ? a < b : a > b) keys[i] = b, keys[partner] = a;
        }
      }
      __syncthreads();
    }
  }
}

// ---- kernels ----

// One CTA per row; one thread per history entry (entries are distinct tokens, so no two threads
// touch one logit). The float operations are sampler.cpp's, fused where it fuses (std::fma).
__global__ void penalties_kernel(float* __restrict__ logits,                 // [rows, vocab]
                                 int vocab,
                                 const SampleRowParams* __restrict__ params,  // [rows]
                                 const SamplePenaltyToken* __restrict__ history) {
  const SampleRowParams p = params[blockIdx.x];
  const bool repetition = p.repetition_penalty != 1.0f;
  const bool additive = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if ((!repetition && !additive) || p.history_count <= 0 || p.history_offset < 0) return;
  float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  for (int j = threadIdx.x; j < p.history_count; j += blockDim.x) {
    const SamplePenaltyToken e = history[p.history_offset + j];
    if (e.token < 0 || e.token >= vocab) continue;  // reported by sample_kernel
    float l = row[e.token];
    if (repetition && (e.in_prompt != 0 || e.generated_count > 0)) {
      l = l > 0.0f ? __fdiv_rn(l, p.repetition_penalty) : __fmul_rn(l, p.repetition_penalty);
    }
    if (additive && e.generated_count > 0) {
      l = __fsub_rn(l, __fmaf_rn(p.frequency_penalty, static_cast<float>(e.generated_count), p.presence_penalty));
    }
    row[e.token] = l;
  }
}

__device__ bool bad_params(const SampleRowParams& p) {
  return !(isfinite(p.temperature) && p.temperature >= 0.0f) || !(p.top_p > 0.0f && p.top_p <= 1.0f) ||
         !(p.min_p >= 0.0f && p.min_p <= 1.0f) || p.n_logprobs < 0 || p.n_logprobs > kSampleMaxLogprobs ||
         p.history_count < 0 || p.history_offset < 0 || !(p.u >= 0.0 && p.u < 1.0);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* __restrict__ logits,  // [rows, vocab]
                                                          int vocab,
                                                          const SampleRowParams* __restrict__ params,  // [rows]
                                                          const SamplePenaltyToken* __restrict__ history,
                                                          SampleRowResult* __restrict__ out) {  // [rows]
  extern __shared__ uint64_t smem[];
  uint64_t* keys = smem;                                            // [kSampleMaxCandidates]
  double* w_sorted = reinterpret_cast<double*>(smem);               // aliases keys once sorted
  int* ids = reinterpret_cast<int*>(smem + kSampleMaxCandidates);   // [kSampleMaxCandidates]
  __shared__ int hist[256];
  __shared__ double run_sum[kThreads];
  __shared__ float redv[kWarps];
  __shared__ int redi[kWarps];
  __shared__ int s_found, s_last;
  __shared__ double s_mass;

  const SampleRowParams p = params[blockIdx.x];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  SampleRowResult& res = out[blockIdx.x];
  const int tid = threadIdx.x;

  bool bad = bad_params(p);
  for (int j = tid; !bad && j < p.history_count; j += kThreads) {
    const int t = history[p.history_offset + j].token;
    bad = t < 0 || t >= vocab;
  }
  bad = __syncthreads_or(bad);
  bool nan = false;
  float local_max = -INFINITY;
  for (int i = tid; i < vocab; i += kThreads) {
    nan = nan || isnan(row[i]);
    local_max = fmaxf(local_max, row[i]);
  }
  nan = __syncthreads_or(nan);
  const float max_logit = block_max(local_max, redv);
  if (bad || nan || !(max_logit > -INFINITY)) {
    if (tid == 0) {
      res.status = bad ? kSampleBadInput : nan ? kSampleNaN : kSampleAllNegInf;
      res.token = -1;
      res.logprob = 0.0f;
      res.n_top = 0;
    }
    return;
  }

  const bool greedy = p.temperature == 0.0f;
  const double inv_t = greedy ? 1.0 : 1.0 / static_cast<double>(p.temperature);
  // Sum of weights: each thread a run of contiguous ids, then the runs in order.
  const int run = (vocab + kThreads - 1) / kThreads;
  const int begin = min(vocab, tid * run), end = min(vocab, begin + run);
  double s = 0.0;
  for (int i = begin; i < end; ++i) s += weight(row[i], max_logit, inv_t);
  run_sum[tid] = s;
  __syncthreads();
  if (tid == 0) {
    double total = 0.0;
    for (int t = 0; t < kThreads; ++t) {
      const double v = run_sum[t];
      run_sum[t] = total;  // exclusive prefix: where thread t's running sum starts
      total += v;
    }
    s_mass = total;
  }
  __syncthreads();
  const double sum = s_mass;
  const double log_z = log(sum);
  __syncthreads();

  const bool topk_on = p.top_k > 0 && p.top_k < vocab;
  const bool truncates = topk_on || p.top_p < 1.0f || p.min_p > 0.0f;
  int status = kSampleOk;
  int token = 0;
  if (greedy) {
    int bi = INT_MAX;
    float bv = -INFINITY;
    for (int i = tid; i < vocab; i += kThreads) {
      if (row[i] > bv || (row[i] == bv && i < bi)) bv = row[i], bi = i;
    }
    token = block_argmax(bv, bi, redv, redi);
  } else if (!truncates) {
    if (tid == 0) s_found = INT_MAX, s_last = -1;
    __syncthreads();
    const double target = p.u * sum;
    double cum = run_sum[tid];
    int found = INT_MAX, last = -1;
    for (int i = begin; i < end; ++i) {
      const double wi = weight(row[i], max_logit, inv_t);
      if (wi == 0.0) continue;
      cum += wi;
      last = i;
      if (target < cum) {
        found = i;
        break;
      }
    }
    if (found != INT_MAX) atomicMin(&s_found, found);
    if (last >= 0) atomicMax(&s_last, last);
    __syncthreads();
    token = s_found != INT_MAX ? s_found : s_last;
  } else {
    const int n_total = topk_on ? p.top_k : vocab;
    const int m = min(n_total, kSampleMaxCandidates);
    // Mass of the top-k set, what top-p renormalises over; beyond the sorted window it needs the
    // k-th key and a block sum.
    if (p.top_p < 1.0f && topk_on && n_total > m) {
      const uint64_t kth = radix_select(row, vocab, n_total, hist);
      double part = 0.0;
      for (int i = tid; i < vocab; i += kThreads) {
        if (make_key(row[i], i) >= kth) part += weight(row[i], max_logit, inv_t);
      }
      run_sum[tid] = part;
      __syncthreads();
      if (tid == 0) {
        double total = 0.0;
        for (int t = 0; t < kThreads; ++t) total += run_sum[t];
        s_mass = total;
      }
    } else if (tid == 0) {
      s_mass = sum;  // no top-k: the whole vocabulary; top-k within the window: summed below
    }
    __syncthreads();
    top_keys_sorted(row, vocab, m, keys, hist);
    for (int i = tid; i < m; i += kThreads) {
      const uint64_t k = keys[i];
      const int id = key_id(k);
      ids[i] = id;
      w_sorted[i] = weight(row[id], max_logit, inv_t);  // same slot as keys[i]: read above
    }
    __syncthreads();
    if (tid == 0) {
      // sampler.cpp's truncated_distribution and draw, sequentially over the sorted window.
      double mass = s_mass;
      if (topk_on && n_total <= m) {
        mass = 0.0;
        for (int i = 0; i < m; ++i) mass += w_sorted[i];
      }
      int n = n_total;
      if (p.min_p > 0.0f) {
        for (int i = 0; i < m; ++i) {
          if (w_sorted[i] < static_cast<double>(p.min_p)) {
            n = i;
            break;
          }
        }
      }
      if (p.top_p < 1.0f) {
        const double target = static_cast<double>(p.top_p) * mass * (1.0 - kTopPSlack);
        double cum = 0.0;
        int cut = 0;
        for (int i = 0; i < min(n, m); ++i) {
          cum += w_sorted[i];
          if (cum >= target) {
            cut = i + 1;
            break;
          }
        }
        if (cut > 0) n = cut;
      }
      if (n > m) {
        status = kSampleNeedsHost;
      } else {
        n = max(n, 1);
        double kept = 0.0;
        for (int i = 0; i < n; ++i) kept += w_sorted[i];
        double cum = 0.0;
        token = ids[n - 1];
        for (int i = 0; i < n; ++i) {
          cum += w_sorted[i] / kept;
          if (p.u < cum) {
            token = ids[i];
            break;
          }
        }
      }
      s_found = status == kSampleOk ? token : -1;
      s_last = status;
    }
    __syncthreads();
    token = s_found;
    status = s_last;
    __syncthreads();  // keys[] is reused for the top logprobs
  }

  const int n_top = min(p.n_logprobs, vocab);
  if (tid == 0) {
    res.status = status;
    res.token = token;
    res.logprob = status == kSampleOk ? logprob_of(row[token], max_logit, inv_t, log_z) : 0.0f;
    res.n_top = n_top;
  }
  if (n_top > 0) {
    top_keys_sorted(row, vocab, n_top, keys, hist);
    for (int i = tid; i < n_top; i += kThreads) {
      const int id = key_id(keys[i]);
      res.top_tokens[i] = id;
      res.top_logprobs[i] = logprob_of(row[id], max_logit, inv_t, log_z);
    }
  }
}

}  // namespace

cudaError_t sample_rows(float* logits, int rows, int vocab, const SampleRowParams* params,
                        const SamplePenaltyToken* history, SampleRowResult* out, cudaStream_t stream) {
  if (rows < 0 || vocab <= 0 || vocab == INT_MAX) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!logits || !params || !out) return cudaErrorInvalidValue;
  // A null history is fine when no row has entries; the kernels read it only for history_count > 0.
  penalties_kernel<<<static_cast<unsigned>(rows), 128, 0, stream>>>(logits, vocab, params, history);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  err = cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kDynamicSmem));
  if (err != cudaSuccess) return err;
  sample_kernel<<<static_cast<unsigned>(rows), kThreads, kDynamicSmem, stream>>>(logits, vocab, params, history,
                                                                                 out);
  return cudaGetLastError();
}

}  // namespace jarvis::cuda
