// Two activation passes (quant_matrix.h: the rounding residual quantized and multiplied again):
// against the double-precision product with the float inputs, on every type and ISA path, the
// error is bounded by the second pass's rounding. The residual of a block is at most d1 / 2 per
// element (plus float rounding), so its scale is d2 <= d1 / 254 and its rounding at most d2 / 2:
// |error| <= sum over blocks of (d1 / 508) * sum |w| over the block, plus float slack. One pass
// is checked against the same bound to show the bound is tight enough to tell them apart.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant_matrix.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/block_reference.h"
#include "tests/kernels/quant_case_data.h"

namespace jarvis::test {
namespace {

using cpu::QuantMatrix;

class ActivationPasses : public ::testing::TestWithParam<WeightSpec> {
 protected:
  void TearDown() override {
    cpu::set_active_isa(cpu::available_isas().back());
    cpu::set_activation_passes(1);
  }
};

TEST_P(ActivationPasses, TwoPassesAreWithinTheResidualsRounding) {
  const WeightSpec& spec = GetParam();
  const int64_t cols = spec.block_elems == 256 ? 512 : 128, rows = 9, n = 5;
  const int64_t act_block = spec.block_elems == 256 ? 256 : 32;
  std::mt19937 rng(5);
  const std::vector<uint8_t> wb = random_weights(spec, rows, cols, rng);
  const QuantMatrix w = QuantMatrix::from_blocks(spec.type, wb.data(), rows, cols);
  const std::vector<double> wd = reference_dequantize(spec.type, wb.data(), rows * cols);
  ASSERT_EQ(wd.size(), static_cast<size_t>(rows * cols));
  const std::vector<float> x = random_activations(n, cols, rng);
  std::vector<double> exact(n * rows), bound(n * rows);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double e = 0, b = 0, mag = 0;
      for (int64_t blk = 0; blk < cols / act_block; ++blk) {
        std::vector<int8_t> q(act_block);
        const double d1 = reference_quantize_block(x.data() + t * cols + blk * act_block, static_cast<int>(act_block), q.data());
        double wabs = 0;
        for (int64_t i = blk * act_block; i < (blk + 1) * act_block; ++i) {
          e += wd[r * cols + i] * x[t * cols + i];
          wabs += std::fabs(wd[r * cols + i]);
          mag += std::fabs(wd[r * cols + i] * x[t * cols + i]);
        }
        b += d1 / 508.0 * wabs;
      }
      exact[t * rows + r] = e;
      bound[t * rows + r] = 1.01 * b + 4.0 * static_cast<double>(cols) * 0x1p-24 * mag;
    }
  }
  cpu::ThreadPool pool(2);
  for (cpu::Isa isa : cpu::available_isas()) {
    cpu::set_active_isa(isa);
    for (int passes : {1, 2}) {
      cpu::set_activation_passes(passes);
      std::vector<float> y(n * rows);
      cpu::qmatmul(x.data(), n, w, y.data(), pool);
      int over = 0;
      for (size_t i = 0; i < y.size(); ++i) over += std::fabs(y[i] - exact[i]) > bound[i];
      if (passes == 2) {
        EXPECT_EQ(over, 0) << cpu::isa_name(isa) << ": outputs past the second pass's rounding bound";
      } else {
        EXPECT_GT(over, 0) << cpu::isa_name(isa) << ": one pass met the two-pass bound (the bound tells nothing)";
      }
    }
  }
}

// The block types: float weights take the float input rows, one pass by definition.
std::vector<WeightSpec> block_specs() {
  std::vector<WeightSpec> out;
  for (const WeightSpec& s : weight_specs()) {
    if (s.block_elems > 1) out.push_back(s);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryBlockType, ActivationPasses, ::testing::ValuesIn(block_specs()),
                         [](const auto& info) {
                           return std::string(ggml_type_traits(static_cast<uint32_t>(info.param.type))->name);
                         });

}  // namespace
}  // namespace jarvis::test
