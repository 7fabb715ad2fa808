#include "kernels/cpu/norm.h"

#include <cmath>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis::cpu {

void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps,
             ThreadPool& pool) {
  auto rows = [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* xi = x + i * dim;
      float* yi = y + i * dim;
      // Sum of squares in double: hidden states of some models reach 1e3-1e4 in a few channels,
      // and the norm scales every output of the row.
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += static_cast<double>(xi[k]) * xi[k];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      for (int64_t k = 0; k < dim; ++k) yi[k] = xi[k] * inv * w[k];
    }
  };
  // Rows are cheap; only big batches are worth waking the workers for.
  if (n >= 16) {
    pool.parallel_for(0, n, rows);
  } else {
    rows(0, n);
  }
}

}  // namespace jarvis::cpu
