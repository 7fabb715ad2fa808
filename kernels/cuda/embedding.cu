#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/embedding.h"

namespace jarvis::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void embedding_kernel(const T* __restrict__ table,  // [vocab, hidden]
                                 const int32_t* __restrict__ ids,  // [n]
                                 T* __restrict__ out,  // [n, hidden]
                                 int64_t hidden, int64_t vocab) {
  const int64_t i = blockIdx.x;
  const int64_t id = ids[i];
  const bool valid = id >= 0 && id < vocab;
  for (int64_t c = threadIdx.x; c < hidden; c += kThreads) {
    out[i * hidden + c] = valid ? table[id * hidden + c] : from_float<T>(0.0f);
  }
}

}  // namespace

cudaError_t embedding_gather(DType dtype, const void* table, const int32_t* ids, void* out, int64_t n,
                             int64_t hidden, int64_t vocab, cudaStream_t stream) {
  if (n < 0 || n > 0x7fffffff || hidden <= 0 || vocab <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!table || !ids || !out) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        static_cast<const T*>(table), ids, static_cast<T*>(out), hidden, vocab);
    return cudaGetLastError();
  });
}

}  // namespace jarvis::cuda
