#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/rope.h"

namespace jarvis::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void cos_sin_kernel(const int32_t* __restrict__ positions, const double* __restrict__ inv_freq,
                               float* __restrict__ cos_sin, int64_t n, int half) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * half) return;
  const int64_t t = i / half;
  const double a = positions[t] * inv_freq[i % half];
  double s, c;
  sincos(a, &s, &c);
  cos_sin[2 * i] = static_cast<float>(c);
  cos_sin[2 * i + 1] = static_cast<float>(s);
}

// Pair i of a head as the CPU defines it: a = x[ia], b = x[ia + offset].
__device__ __forceinline__ void pair_index(RopePairing pairing, int i, int half, int& ia, int& ib) {
  ia = pairing == RopePairing::kInterleaved ? 2 * i : i;
  ib = pairing == RopePairing::kInterleaved ? 2 * i + 1 : i + half;
}

// One block per token. Each thread owns whole pairs, so rotating q in place has no race.
template <typename T>
__global__ void rope_write_kv_kernel(const RopeKvWriteParams p) {
  const int64_t t = blockIdx.x;
  const int hd = p.head_dim, half = p.rope_dim / 2, tail = hd - p.rope_dim;
  const float* cs = p.cos_sin + t * half * 2;
  const int64_t slot = p.slot_mapping[t];

  T* q = static_cast<T*>(p.q) + t * p.n_heads * hd;
  for (int i = threadIdx.x; i < p.n_heads * half; i += blockDim.x) {
    const int h = i / half, pi = i % half;
    int ia, ib;
    pair_index(p.pairing, pi, half, ia, ib);
    const float c = cs[2 * pi], s = cs[2 * pi + 1];
    T* x = q + h * hd;
    const float a = to_float(x[ia]), b = to_float(x[ib]);
    x[ia] = from_float<T>(a * c - b * s);
    x[ib] = from_float<T>(a * s + b * c);
  }
  if (slot < 0) return;  // a padding token: rotate its query, store nothing

  const int64_t row = static_cast<int64_t>(p.n_kv_heads) * hd;
  const T* k = static_cast<const T*>(p.k) + t * row;
  const T* v = static_cast<const T*>(p.v) + t * row;
  T* kd = static_cast<T*>(p.k_pages) + slot * row;
  T* vd = static_cast<T*>(p.v_pages) + slot * row;
  for (int i = threadIdx.x; i < p.n_kv_heads * half; i += blockDim.x) {
    const int h = i / half, pi = i % half;
    int ia, ib;
    pair_index(p.pairing, pi, half, ia, ib);
    const float c = cs[2 * pi], s = cs[2 * pi + 1];
    const float a = to_float(k[h * hd + ia]), b = to_float(k[h * hd + ib]);
    kd[h * hd + ia] = from_float<T>(a * c - b * s);
    kd[h * hd + ib] = from_float<T>(a * s + b * c);
  }
  for (int i = threadIdx.x; i < p.n_kv_heads * tail; i += blockDim.x) {
    const int64_t d = static_cast<int64_t>(i / tail) * hd + p.rope_dim + i % tail;
    kd[d] = k[d];
  }
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) vd[i] = v[i];
}

}  // namespace

cudaError_t rope_cos_sin(const int32_t* positions, const double* inv_freq, float* cos_sin, int64_t n,
                         int half, cudaStream_t stream) {
  if (n < 0 || half <= 0 || (n > 0 && (!positions || !inv_freq || !cos_sin))) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int64_t blocks = (n * half + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  cos_sin_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(positions, inv_freq, cos_sin, n, half);
  return cudaGetLastError();
}

cudaError_t rope_write_kv(const RopeKvWriteParams& p, cudaStream_t stream) {
  if (p.n_tokens < 0 || p.n_tokens > 0x7fffffff || p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 ||
      p.rope_dim <= 0 || p.rope_dim % 2 != 0 || p.rope_dim > p.head_dim) {
    return cudaErrorInvalidValue;
  }
  if (p.n_tokens == 0) return cudaSuccess;
  if (!p.q || !p.k || !p.v || !p.cos_sin || !p.slot_mapping || !p.k_pages || !p.v_pages) {
    return cudaErrorInvalidValue;
  }
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    rope_write_kv_kernel<T><<<static_cast<unsigned>(p.n_tokens), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace jarvis::cuda
