// Batch invariance of the quantized products: an input row's outputs are bit for bit the same
// whether it is multiplied alone or among others (any batch size, any position in the batch), on
// every ISA path and weight type. The engine relies on it: continuous batching, chunked prefill,
// preemption by recompute and the pipeline's micro-batches regroup rows freely, and a request's
// logits (so its greedy tokens) must not depend on its neighbours.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant_matrix.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/quant_case_data.h"

namespace jarvis::test {
namespace {

using cpu::QuantMatrix;

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

class QuantBatchInvariance : public ::testing::TestWithParam<WeightSpec> {
 protected:
  void TearDown() override { cpu::set_active_isa(cpu::available_isas().back()); }
};

TEST_P(QuantBatchInvariance, ARowsOutputsIgnoreItsBatch) {
  const WeightSpec& spec = GetParam();
  const int64_t cols = spec.block_elems == 256 ? 512 : 96, rows = 37;  // 37: a ragged row tile
  std::mt19937 rng(11);
  const std::vector<uint8_t> wg = random_weights(spec, rows, cols, rng), wu = random_weights(spec, rows, cols, rng);
  const QuantMatrix gate = QuantMatrix::from_blocks(spec.type, wg.data(), rows, cols);
  const QuantMatrix up = QuantMatrix::from_blocks(spec.type, wu.data(), rows, cols);
  cpu::ThreadPool pool(2);
  for (cpu::Isa isa : cpu::available_isas()) {
    cpu::set_active_isa(isa);
    for (int64_t n : {2, 3, 4, 5, 9, 17}) {
      const std::vector<float> x = random_activations(n, cols, rng);
      std::vector<float> y(n * rows), g(n * rows), qy(n * rows), ky(n * rows);
      cpu::qmatmul(x.data(), n, gate, y.data(), pool);
      cpu::qmatmul_gated(x.data(), n, gate, up, cpu::GateActivation::kSilu, g.data(), pool);
      const cpu::QMatmulTarget targets[] = {{&gate, qy.data()}, {&up, ky.data()}};
      cpu::qmatmul_multi(x.data(), n, targets, 2, pool);
      for (int64_t t = 0; t < n; ++t) {
        std::vector<float> y1(rows), g1(rows), q1(rows), k1(rows);
        const float* xt = x.data() + t * cols;
        cpu::qmatmul(xt, 1, gate, y1.data(), pool);
        cpu::qmatmul_gated(xt, 1, gate, up, cpu::GateActivation::kSilu, g1.data(), pool);
        const cpu::QMatmulTarget one[] = {{&gate, q1.data()}, {&up, k1.data()}};
        cpu::qmatmul_multi(xt, 1, one, 2, pool);
        const auto where = [&] { return std::string(cpu::isa_name(isa)) + " n " + std::to_string(n) + " row " + std::to_string(t); };
        EXPECT_TRUE(same_bits(y1.data(), y.data() + t * rows, rows)) << "qmatmul " << where();
        EXPECT_TRUE(same_bits(g1.data(), g.data() + t * rows, rows)) << "qmatmul_gated " << where();
        EXPECT_TRUE(same_bits(q1.data(), qy.data() + t * rows, rows)) << "qmatmul_multi " << where();
        EXPECT_TRUE(same_bits(k1.data(), ky.data() + t * rows, rows)) << "qmatmul_multi " << where();
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryType, QuantBatchInvariance, ::testing::ValuesIn(weight_specs()),
                         [](const auto& info) {
                           return std::string(ggml_type_traits(static_cast<uint32_t>(info.param.type))->name);
                         });

}  // namespace
}  // namespace jarvis::test
