#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {

ActFormat act_format(GgmlType w) {
  switch (w) {
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q5_0: return ActFormat::kQ8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return ActFormat::kQ8_1;
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: return ActFormat::kQ8_K;
    default: return ActFormat::kF32;
  }
}

size_t act_row_bytes(ActFormat f, int64_t cols) {
  const size_t n = static_cast<size_t>(cols);
  switch (f) {
    case ActFormat::kQ8_0: return n / 32 * sizeof(BlockQ8_0);
    case ActFormat::kQ8_1: return n / 32 * sizeof(BlockQ8_1);
    case ActFormat::kQ8_K: return n / 256 * sizeof(BlockQ8_K);
    case ActFormat::kF32: case ActFormat::kCount: break;
  }
  return n * sizeof(float);
}

}  // namespace jarvis::cpu::quant
