// Double-precision decoding of GGUF blocks, written from the block definitions (ggml's block_*
// structs and their documented formulas), independently of kernels/cpu: the reference the
// quantized kernels are checked against.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/ggml_types.h"

namespace jarvis::test {

// The n elements (whole blocks) stored at `blocks` in `type`; empty when the type is not covered.
std::vector<double> reference_dequantize(GgmlType type, const void* blocks, int64_t n);

// Per family (block_reference_q32.cpp: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1;
// block_reference_kquant.cpp: Q4_K, Q5_K, Q6_K). Return false when `type` is not theirs.
bool reference_dequantize_q32(GgmlType type, const uint8_t* blocks, int64_t n, double* out);
bool reference_dequantize_kquant(GgmlType type, const uint8_t* blocks, int64_t n, double* out);

}  // namespace jarvis::test
