// The double-precision reference of a quantized product and its two derived bounds (see
// qmatmul_test.cpp): shared by the kernel table and the real-tensor test in tests/unit.
#pragma once

#include <cstdint>
#include <vector>

#include "tests/kernels/quant_case_data.h"

namespace jarvis::test {

inline constexpr double kU = 1.0 / (1 << 24);  // float's unit roundoff

// Per output [n, rows]: the product with the activations quantized by the contract's rule and
// with the float activations; tol_fp bounds the kernels' float rounding against `quantized`,
// tol_act the activation rounding (|x - d q| <= d/2) against `exact`.
struct Expected {
  std::vector<double> quantized, exact, tol_fp, tol_act;
};

// w: rows x cols of spec.type in GGUF row layout; x: n x cols.
Expected reference(const WeightSpec& spec, const uint8_t* w, int64_t rows, int64_t cols, const std::vector<float>& x,
                   int64_t n);
inline Expected reference(const WeightSpec& spec, const std::vector<uint8_t>& w, int64_t rows, int64_t cols,
                          const std::vector<float>& x, int64_t n) {
  return reference(spec, w.data(), rows, cols, x, n);
}

}  // namespace jarvis::test
