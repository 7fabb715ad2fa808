// Numerically stable softmax over rows.
#pragma once

#include <cstdint>

namespace jarvis::cpu {

// x[i, :] = exp(x[i, :] - max) / sum, in place, for each of n rows of length dim. Sums in double.
void softmax(float* x,  // [n, dim]
             int64_t n, int64_t dim);

}  // namespace jarvis::cpu
