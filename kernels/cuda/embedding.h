// Token embedding lookup on the GPU: the first op of a forward step.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

// out[i] = table[ids[i]]. An id outside [0, vocab) gives a zero row rather than a wild read; the
// engine validates ids on the host (the tokenizer and the API layer), so this is a last guard.
// table: [vocab, hidden] of dtype; ids: [n] device; out: [n, hidden] of dtype.
cudaError_t embedding_gather(DType dtype, const void* table, const int32_t* ids, void* out, int64_t n,
                             int64_t hidden, int64_t vocab, cudaStream_t stream);

}  // namespace jarvis::cuda
