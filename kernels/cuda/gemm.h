// Dense projections on the GPU through cuBLAS: y[rows, out] = x[rows, in] · w[out, in]ᵀ (+ y).
// Weights stay in the row-major [out, in] layout of the CPU backend (csrc/model/weights.h), so
// one upload serves both; inputs fp16/bf16 (fp32 for debugging), accumulation always fp32.
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

struct GemmParams {
  DType dtype = DType::kF16;      // of x and w
  DType out_dtype = DType::kF16;  // of y: the same as dtype, or kF32 (the residual stream, logits)
  int64_t rows = 0;               // tokens
  int64_t in = 0;                 // columns of x and w
  int64_t out = 0;                // rows of w, columns of y
  const void* x = nullptr;        // [rows, in]
  const void* w = nullptr;        // [out, in]
  void* y = nullptr;              // [rows, out]
  bool accumulate = false;        // y += x·wᵀ (the residual add folded into the GEMM) instead of y =
};

// Runs on the handle's stream. CUBLAS_STATUS_INVALID_VALUE for shapes beyond int, null pointers
// or a dtype pair cuBLAS has no fp32-accumulating kernel for (16-bit out of a different dtype).
cublasStatus_t gemm(cublasHandle_t handle, const GemmParams& p);

}  // namespace jarvis::cuda
