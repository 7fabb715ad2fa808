#include <algorithm>

#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/elementwise.h"

namespace jarvis::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
}

template <typename T>
__global__ void add_bias_kernel(T* __restrict__ x,               // [rows, cols]
                                const float* __restrict__ bias,  // [cols]
                                int64_t n, int64_t cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = from_float<T>(to_float(x[i]) + bias[i % cols]);
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* __restrict__ in,  // [n]
                               D* __restrict__ out,       // [n]
                               int64_t n, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_float<D>(to_float(in[i]) * scale);
  }
}

}  // namespace

cudaError_t add_bias(DType dtype, void* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols <= 0) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  if (!x || !bias) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_bias_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(x), bias, n, cols);
    return cudaGetLastError();
  });
}

cudaError_t convert(DType src_dtype, const void* in, DType dst_dtype, void* out, int64_t n, float scale,
                    cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!in || !out) return cudaErrorInvalidValue;
  return dispatch_dtype(src_dtype, [&](auto src_tag) {
    using S = decltype(src_tag);
    return dispatch_dtype(dst_dtype, [&](auto dst_tag) {
      using D = decltype(dst_tag);
      convert_kernel<S, D><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const S*>(in), static_cast<D*>(out),
                                                                 n, scale);
      return cudaGetLastError();
    });
  });
}

}  // namespace jarvis::cuda
