#include "tests/kernels/block_reference.h"

namespace jarvis::test {

std::vector<double> reference_dequantize(GgmlType type, const void* blocks, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n));
  const auto* b = static_cast<const uint8_t*>(blocks);
  if (reference_dequantize_q32(type, b, n, out.data()) || reference_dequantize_kquant(type, b, n, out.data())) {
    return out;
  }
  return {};
}

}  // namespace jarvis::test
