#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/norm.h"

namespace jarvis::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / 32];
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.0f;
  if (warp == 0) v = warp_sum(v);
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

// One block per row. With a residual, the sum is written back before normalising.
template <typename T, bool kAddResidual>
__global__ void rmsnorm_kernel(const T* __restrict__ x,      // [rows, cols]
                               T* __restrict__ residual,     // [rows, cols] or null
                               const float* __restrict__ w,  // [cols]
                               T* __restrict__ out,          // [rows, cols]
                               int64_t cols, float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  float sum_sq = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    float v = to_float(x[base + c]);
    if constexpr (kAddResidual) {
      v += to_float(residual[base + c]);
      residual[base + c] = from_float<T>(v);
    }
    sum_sq += v * v;
  }
  const float inv_rms = rsqrtf(block_sum(sum_sq) / static_cast<float>(cols) + eps);
  const T* src = kAddResidual ? residual : x;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    out[base + c] = from_float<T>(to_float(src[base + c]) * inv_rms * w[c]);
  }
}

template <typename T>
__global__ void rmsnorm_f32_in_kernel(const float* __restrict__ x,  // [rows, cols]
                                      const float* __restrict__ w,  // [cols]
                                      T* __restrict__ out,          // [rows, cols]
                                      int64_t cols, float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
  float sum_sq = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) sum_sq += x[base + c] * x[base + c];
  const float inv_rms = rsqrtf(block_sum(sum_sq) / static_cast<float>(cols) + eps);
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) out[base + c] = from_float<T>(x[base + c] * inv_rms * w[c]);
}

template <bool kAddResidual>
cudaError_t launch(DType dtype, const void* x, void* residual, const float* weight, void* out,
                   int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff || !x || !weight || !out || (kAddResidual && !residual)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_kernel<T, kAddResidual><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(residual), weight, static_cast<T*>(out), cols, eps);
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t rmsnorm_f32_in(DType out_dtype, const float* x, const float* weight, void* out, int64_t rows,
                           int64_t cols, float eps, cudaStream_t stream) {
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff || !x || !weight || !out) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  return dispatch_dtype(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_f32_in_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, weight, static_cast<T*>(out),
                                                                                   cols, eps);
    return cudaGetLastError();
  });
}

cudaError_t rmsnorm(DType dtype, const void* x, const float* weight, void* out, int64_t rows,
                    int64_t cols, float eps, cudaStream_t stream) {
  return launch<false>(dtype, x, nullptr, weight, out, rows, cols, eps, stream);
}

cudaError_t add_rmsnorm(DType dtype, const void* x, void* residual, const float* weight, void* out,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  return launch<true>(dtype, x, residual, weight, out, rows, cols, eps, stream);
}

}  // namespace jarvis::cuda
