#include "kernels/cpu/elementwise.h"

#include "kernels/cpu/simd.h"

namespace jarvis::cpu {

void add(const float* x, float* y, int64_t n) { simd::axpy(1.0f, x, y, n); }

void add_bias(const float* b, float* y, int64_t n, int64_t dim) {
  for (int64_t t = 0; t < n; ++t) simd::axpy(1.0f, b, y + t * dim, dim);
}

void scale(float a, float* y, int64_t n) { simd::scale(a, y, n); }

}  // namespace jarvis::cpu
