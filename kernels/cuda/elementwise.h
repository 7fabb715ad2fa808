// Small glue kernels around the GEMMs: bias add (qwen2's QKV bias) and dtype conversion with a
// scale (weights on upload, the fp32 hidden state at shard boundaries, gemma's embedding scale).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

// x[r, c] += bias[c]; the sum is formed in fp32 and rounded once.
// x: [rows, cols] of dtype; bias: [cols] float.
cudaError_t add_bias(DType dtype, void* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);

// out[i] = in[i] * scale, converted from src_dtype to dst_dtype (round to nearest even).
// in: [n] of src_dtype; out: [n] of dst_dtype; in and out must not overlap unless equal dtypes.
cudaError_t convert(DType src_dtype, const void* in, DType dst_dtype, void* out, int64_t n, float scale,
                    cudaStream_t stream);

}  // namespace jarvis::cuda
