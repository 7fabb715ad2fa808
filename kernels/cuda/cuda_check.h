// Status type and dtype of the CUDA kernels. Launchers return cudaError_t and never throw:
// the engine checks them with one macro and turns failures into typed errors.
#pragma once

#include <cuda_runtime.h>

namespace jarvis::cuda {

enum class DType { kF32, kF16, kBF16 };

}  // namespace jarvis::cuda
