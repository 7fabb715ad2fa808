// Gated MLP activations on the GPU: out = act(gate) * up, in one pass.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

enum class GatedActivation { kSilu, kGeluTanh };  // SwiGLU (llama, qwen2), GeGLU (gemma)

// gate, up, out: [rows, cols] of dtype (out may alias gate).
cudaError_t gated_activation(GatedActivation act, DType dtype, const void* gate, const void* up,
                             void* out, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace jarvis::cuda
