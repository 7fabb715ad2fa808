#include "kernels/cpu/activation.h"

#include <cmath>

#include "kernels/cpu/thread_pool.h"

namespace jarvis::cpu {
namespace {

// Below this many elements the work is shorter than waking a worker.
constexpr int64_t kParallelMin = 1 << 15;

template <typename F>
void elementwise(int64_t n, ThreadPool& pool, const F& f) {
  auto range = [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) f(i);
  };
  if (n >= kParallelMin) {
    pool.parallel_for(0, n, range, 64);
  } else {
    range(0, n);
  }
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n, ThreadPool& pool) {
  elementwise(n, pool, [=](int64_t i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  });
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, ThreadPool& pool) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  elementwise(n, pool, [=](int64_t i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
  });
}

}  // namespace jarvis::cpu
