#include "kernels/cuda/activation.h"
#include <algorithm>

#include "kernels/cuda/dispatch.cuh"

namespace jarvis::cuda {
namespace {

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

__device__ __forceinline__ float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

template <typename T, GatedActivation kAct>
__global__ void gated_kernel(const T* __restrict__ gate,  // [n]
                             const T* __restrict__ up,    // [n]
                             T* out,                      // [n] (may alias gate)
                             int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = to_float(gate[i]);
    const float a = kAct == GatedActivation::kSilu ? silu(g) : gelu_tanh(g);
    out[i] = from_float<T>(a * to_float(up[i]));
  }
}

}  // namespace

cudaError_t gated_activation(GatedActivation act, DType dtype, const void* gate, const void* up,
                             void* out, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols <= 0 || !gate || !up || !out) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (act == GatedActivation::kSilu) {
      gated_kernel<T, GatedActivation::kSilu><<<blocks, kThreads, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
    } else {
      gated_kernel<T, GatedActivation::kGeluTanh><<<blocks, kThreads, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
    }
    return cudaGetLastError();
  });
}

}  // namespace jarvis::cuda
