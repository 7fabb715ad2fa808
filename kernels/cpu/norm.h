// RMS normalisation (LLaMA, Qwen2, Gemma; Gemma's "1 + w" is folded into w by the loader).
#pragma once

#include <cstdint>

namespace jarvis::cpu {

class ThreadPool;

// y[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * w   for each of n rows. y may alias x.
void rmsnorm(const float* x,  // [n, dim]
             const float* w,  // [dim]
             float* y,        // [n, dim]
             int64_t n, int64_t dim, float eps, ThreadPool& pool);

}  // namespace jarvis::cpu
