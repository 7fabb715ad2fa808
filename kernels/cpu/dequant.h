// Dequantization of GGUF tensor rows to float32 on the CPU.
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"

namespace jarvis::cpu {

// Decodes n elements (a whole number of blocks of `type`) from src into dst.
// Returns false, writing nothing, when the type is unsupported or n is not a multiple of the block.
bool dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// IEEE half / bfloat16 to float, exact.
float fp16_to_fp32(uint16_t h);
float bf16_to_fp32(uint16_t b);
uint16_t fp32_to_fp16(float f);  // round to nearest even

}  // namespace jarvis::cpu
