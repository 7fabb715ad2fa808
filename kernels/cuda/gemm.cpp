#include "kernels/cuda/gemm.h"

#include <climits>

namespace jarvis::cuda {
namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

}  // namespace

cublasStatus_t gemm(cublasHandle_t handle, const GemmParams& p) {
  if (p.rows < 0 || p.in <= 0 || p.out <= 0 || p.rows > INT_MAX || p.in > INT_MAX || p.out > INT_MAX) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (p.rows == 0) return CUBLAS_STATUS_SUCCESS;
  if (!handle || !p.x || !p.w || !p.y) return CUBLAS_STATUS_INVALID_VALUE;
  if (p.out_dtype != p.dtype && p.out_dtype != DType::kF32) return CUBLAS_STATUS_INVALID_VALUE;
  const float alpha = 1.0f, beta = p.accumulate ? 1.0f : 0.0f;
  // cuBLAS is column-major: the row-major y[rows, out] is the column-major yᵀ[out, rows], and
  // yᵀ = w · xᵀ where the row-major w[out, in] reads as the column-major wᵀ (hence OP_T on it).
  return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(p.out), static_cast<int>(p.rows),
                      static_cast<int>(p.in), &alpha, p.w, cuda_type(p.dtype), static_cast<int>(p.in), p.x,
                      cuda_type(p.dtype), static_cast<int>(p.in), &beta, p.y, cuda_type(p.out_dtype),
                      static_cast<int>(p.out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace jarvis::cuda
