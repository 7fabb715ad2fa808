// RMSNorm on the GPU, optionally fused with the residual add that precedes it in every block.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

// out[r] = x[r] / rms(x[r]) * weight, rms over `cols` with eps. fp32 accumulation.
// x, out: [rows, cols] of dtype; weight: [cols] float.
cudaError_t rmsnorm(DType dtype, const void* x, const float* weight, void* out, int64_t rows,
                    int64_t cols, float eps, cudaStream_t stream);

// residual[r] += x[r]; out[r] = rmsnorm(residual[r]). Saves one pass over the hidden state.
// x, residual, out: [rows, cols] of dtype; weight: [cols] float.
cudaError_t add_rmsnorm(DType dtype, const void* x, void* residual, const float* weight, void* out,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream);

// out[r] = rmsnorm(x[r]) * weight from an fp32 row (the residual stream, kept in fp32 on the device
// so 30+ layers of residual adds do not round to 16 bits) into an out_dtype row (the GEMM input).
// x: [rows, cols] float; weight: [cols] float; out: [rows, cols] of out_dtype.
cudaError_t rmsnorm_f32_in(DType out_dtype, const float* x, const float* weight, void* out, int64_t rows,
                           int64_t cols, float eps, cudaStream_t stream);

}  // namespace jarvis::cuda
