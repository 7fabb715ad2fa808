// Dense float32 matrix product for linear layers.
#pragma once

#include <cstdint>

namespace jarvis::cpu {

class ThreadPool;

// y[n, rows] = x[n, cols] · w[rows, cols]^T   (each output row of w is one output feature)
// Parallel over output rows (each thread streams its own slice of w once); within a thread,
// several tokens share every weight-row load, so prefill is not bound by weight bandwidth.
void matmul(const float* x,  // [n, cols]
            const float* w,  // [rows, cols]
            float* y,        // [n, rows]
            int64_t n, int64_t rows, int64_t cols, ThreadPool& pool);

}  // namespace jarvis::cpu
