#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

namespace jarvis::cpu {

void softmax(float* x, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    float* r = x + i * dim;
    if (dim <= 0) continue;
    const float m = *std::max_element(r, r + dim);
    double sum = 0;
    for (int64_t k = 0; k < dim; ++k) {
      r[k] = std::exp(r[k] - m);
      sum += r[k];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t k = 0; k < dim; ++k) r[k] *= inv;
  }
}

}  // namespace jarvis::cpu
