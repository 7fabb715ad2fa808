// Random inputs for the quantized-kernel tests: weight blocks with valid (finite, bounded) scales
// for each type of the case table, activation rows with the spreads that stress an 8-bit block
// quantizer, and the activation rule of quant_kernels.h re-stated for the reference.
#pragma once

#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "kernels/ggml_types.h"

namespace jarvis::test {

// What the tests need to know about a weight type: its block geometry, where its f16 scales sit
// in a block (filled with valid values; every other byte is random), and the largest |quant|
// multiplying a scale (for the float-rounding bound). Adding a type to every test is one row.
struct WeightSpec {
  GgmlType type;
  int64_t block_elems;
  size_t block_bytes;
  std::vector<int> f16_offsets;  // byte offsets of the f16 scales in a block
  double max_quant;              // max |quant| a scale multiplies (0 for F32/F16/BF16)
};

const std::vector<WeightSpec>& weight_specs();

// GoogleTest prints a parameter with this (instead of its bytes).
inline void PrintTo(const WeightSpec& s, std::ostream* os) {
  *os << ggml_type_traits(static_cast<uint32_t>(s.type))->name;
}

// rows x cols weights of spec.type, GGUF row layout.
std::vector<uint8_t> random_weights(const WeightSpec& spec, int64_t rows, int64_t cols, std::mt19937& rng);
// n x cols floats; blocks of 32 differ in scale by orders of magnitude, some are all zero.
std::vector<float> random_activations(int64_t n, int64_t cols, std::mt19937& rng);

// quant_kernels.h's rule for one block of `len` elements (float arithmetic, as the kernels must
// do it): returns d and writes q.
float reference_quantize_block(const float* x, int len, int8_t* q);

// A random f16 bit pattern of magnitude in [2^lo, 2^hi), either sign unless positive_only.
uint16_t random_half(std::mt19937& rng, int lo, int hi, bool positive_only = false);

}  // namespace jarvis::test
