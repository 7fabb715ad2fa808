// Small element-wise helpers of the layer graph (residual adds, biases, scaling).
#pragma once

#include <cstdint>

namespace jarvis::cpu {

// y[i] += x[i]   (residual connection)
void add(const float* x, float* y, int64_t n);

// y[t, :] += b  for each of n rows of length dim (linear-layer bias)
void add_bias(const float* b,  // [dim]
              float* y,        // [n, dim]
              int64_t n, int64_t dim);

// y[i] *= a
void scale(float a, float* y, int64_t n);

}  // namespace jarvis::cpu
