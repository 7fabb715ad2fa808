// The quantized products (qmatmul, its accumulate form, qmatmul_multi, qmatmul_gated) over one
// table of cases (weight type x rows x cols x input rows), run on every ISA path this CPU has and
// with 1- and 2-thread pools, against double-precision references from block_reference.h.
//
// Two checks per output, each with a bound derived rather than tuned:
//  - tight: against the product with the activations quantized by the contract's rule (done here
//    in the test). Kernels sum integers exactly, so what remains is float rounding: at most
//    about (k + 8) u times the sum of |terms| (k sequential additions, u = 2^-24); we allow 2x.
//  - approximate: against the product with the float activations: the tight bound plus the
//    activation rounding, |x - d q| <= d / 2 per element (plus float slack), times |w|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant_matrix.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/block_reference.h"
#include "tests/kernels/quant_case_data.h"
#include "tests/kernels/quant_reference.h"

namespace jarvis::test {
namespace {

using cpu::GateActivation;
using cpu::QuantMatrix;


struct Shape {
  int64_t rows, cols, n;
};

// Rows not a multiple of the 4-row tile or of 2 threads, n not a multiple of the 4-row token
// tile, n up to 67, cols from one block to a 576-wide row (the default model's width).
std::vector<Shape> shapes_for(const WeightSpec& spec) {
  const int64_t blk = std::max<int64_t>(32, spec.block_elems);
  std::vector<Shape> s = {{1, blk, 1},      {3, 2 * blk, 2},  {5, 3 * blk, 3},   {13, 5 * blk, 4},
                          {7, blk, 5},      {64, 18 * blk, 1}, {67, 9 * blk, 7},  {33, 3 * blk, 16},
                          {9, 2 * blk, 67}, {130, 18 * blk, 17}, {6, 4 * blk, 64}};
  if (spec.block_elems == 1) {  // float weights take any width: tails of the 8-wide loops
    s.push_back({5, 37, 3});
    s.push_back({4, 13, 6});
  }
  return s;
}

struct Worst {
  double ratio = 0;  // max |err| / bound
  std::string where;
  void see(double err, double bound, const std::string& what, int64_t t, int64_t r) {
    const double q = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / std::max(bound, 1e-30);
    if (q > ratio) {
      ratio = q;
      where = what + " t=" + std::to_string(t) + " r=" + std::to_string(r) + " err=" + std::to_string(err) +
              " bound=" + std::to_string(bound);
    }
  }
};

void check_product(const std::vector<float>& y, const Expected& e, const std::vector<float>* base, int64_t n,
                   int64_t rows, const std::string& what, Worst& worst) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const size_t o = static_cast<size_t>(t * rows + r);
      const double b0 = base ? (*base)[o] : 0.0;
      const double slack = std::fabs(b0) * 2 * kU;
      worst.see(std::fabs(y[o] - (e.quantized[o] + b0)), e.tol_fp[o] + slack, what + " tight", t, r);
      worst.see(std::fabs(y[o] - (e.exact[o] + b0)), e.tol_fp[o] + e.tol_act[o] + slack, what + " approx", t, r);
    }
}

double activate(GateActivation a, double g) {
  if (a == GateActivation::kSilu) return g / (1 + std::exp(-g));
  return 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)));
}

class QuantProducts : public ::testing::TestWithParam<WeightSpec> {};

TEST_P(QuantProducts, EveryIsaEveryPoolWithinDerivedBounds) {
  const WeightSpec& spec = GetParam();
  std::mt19937 rng(1234 + static_cast<int>(spec.type));
  cpu::ThreadPool pool1(1), pool2(2);
  int products = 0;
  Worst worst;
  for (const Shape& sh : shapes_for(spec)) {
    const int64_t rows = sh.rows, cols = sh.cols, n = sh.n;
    const auto wa = random_weights(spec, rows, cols, rng), wb = random_weights(spec, rows / 2 + 1, cols, rng),
               wc = random_weights(spec, 3, cols, rng);
    const auto x = random_activations(n, cols, rng);
    const QuantMatrix ma = QuantMatrix::from_blocks(spec.type, wa.data(), rows, cols);
    const QuantMatrix mb = QuantMatrix::from_blocks(spec.type, wb.data(), rows / 2 + 1, cols);
    const QuantMatrix mc = QuantMatrix::from_blocks(spec.type, wc.data(), 3, cols);
    ASSERT_FALSE(ma.empty());
    ASSERT_EQ(ma.bytes(), wa.size());
    const Expected ea = reference(spec, wa, rows, cols, x, n), eb = reference(spec, wb, rows / 2 + 1, cols, x, n),
                   ec = reference(spec, wc, 3, cols, x, n);
    std::vector<float> base(static_cast<size_t>(n * rows));
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (float& v : base) v = g(rng);
    for (cpu::Isa isa : cpu::available_isas()) {
      cpu::set_active_isa(isa);
      for (cpu::ThreadPool* pool : {&pool1, &pool2}) {
        const std::string what = std::string(cpu::isa_name(isa)) + " threads=" + std::to_string(pool->size()) +
                                 " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                                 " n=" + std::to_string(n);
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> y(static_cast<size_t>(n * rows), nan);  // every output must be written
        cpu::qmatmul(x.data(), n, ma, y.data(), *pool);
        check_product(y, ea, nullptr, n, rows, what + " qmatmul", worst);

        std::vector<float> acc = base;
        cpu::qmatmul(x.data(), n, ma, acc.data(), *pool, /*accumulate=*/true);
        check_product(acc, ea, &base, n, rows, what + " accumulate", worst);

        std::vector<float> ya(y.size(), nan), yb(static_cast<size_t>(n * mb.rows()), nan),
            yc(static_cast<size_t>(n * 3), nan);
        const cpu::QMatmulTarget targets[] = {{&ma, ya.data()}, {&mb, yb.data()}, {&mc, yc.data()}};
        cpu::qmatmul_multi(x.data(), n, targets, 3, *pool);
        check_product(ya, ea, nullptr, n, rows, what + " multi[0]", worst);
        check_product(yb, eb, nullptr, n, mb.rows(), what + " multi[1]", worst);
        check_product(yc, ec, nullptr, n, 3, what + " multi[2]", worst);
        products += 5;
      }
    }
  }
  cpu::set_active_isa(cpu::available_isas().back());
  RecordProperty("worst_error_over_bound", std::to_string(worst.ratio));
  std::printf("worst error / bound = %.3g (%s)\n", worst.ratio, worst.where.c_str());
  EXPECT_LE(worst.ratio, 1.0) << worst.where;
  EXPECT_GT(products, 0);
}

// act(gate) * up against the double product of the two references. With eg, eu the tight bounds
// of gate and up: |d act| <= 1.13 |d g| (max |act'| of SiLU is 1.10, of GELU-tanh 1.13), so
// |err| <= 1.13 eg (|u| + eu) + (|act(g)| + 1.13 eg) eu, plus float evaluation of exp/tanh
// (a few ulps of |g u|).
TEST_P(QuantProducts, GatedEveryIsaEveryPool) {
  const WeightSpec& spec = GetParam();
  std::mt19937 rng(99 + static_cast<int>(spec.type));
  cpu::ThreadPool pool1(1), pool2(2);
  Worst worst;
  for (const Shape& sh : shapes_for(spec)) {
    const int64_t rows = sh.rows, cols = sh.cols, n = sh.n;
    const auto wg = random_weights(spec, rows, cols, rng), wu = random_weights(spec, rows, cols, rng);
    const auto x = random_activations(n, cols, rng);
    const QuantMatrix mg = QuantMatrix::from_blocks(spec.type, wg.data(), rows, cols);
    const QuantMatrix mu = QuantMatrix::from_blocks(spec.type, wu.data(), rows, cols);
    const Expected eg = reference(spec, wg, rows, cols, x, n), eu = reference(spec, wu, rows, cols, x, n);
    for (GateActivation act : {GateActivation::kSilu, GateActivation::kGeluTanh}) {
      for (cpu::Isa isa : cpu::available_isas()) {
        cpu::set_active_isa(isa);
        for (cpu::ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<float> y(static_cast<size_t>(n * rows), std::numeric_limits<float>::quiet_NaN());
          cpu::qmatmul_gated(x.data(), n, mg, mu, act, y.data(), *pool);
          const std::string what = std::string(cpu::isa_name(isa)) + " threads=" + std::to_string(pool->size()) +
                                   (act == GateActivation::kSilu ? " silu" : " gelu") +
                                   " rows=" + std::to_string(rows) + " n=" + std::to_string(n);
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < rows; ++r) {
              const size_t o = static_cast<size_t>(t * rows + r);
              const double g = eg.quantized[o], u = eu.quantized[o], e_g = eg.tol_fp[o], e_u = eu.tol_fp[o];
              const double bound = 1.13 * e_g * (std::fabs(u) + e_u) + (std::fabs(activate(act, g)) + 1.13 * e_g) * e_u +
                                   16 * kU * (std::fabs(g) + e_g) * (std::fabs(u) + e_u) + 1e-30;
              worst.see(std::fabs(y[o] - activate(act, g) * u), bound, what, t, r);
            }
        }
      }
    }
  }
  cpu::set_active_isa(cpu::available_isas().back());
  RecordProperty("worst_error_over_bound", std::to_string(worst.ratio));
  std::printf("worst error / bound = %.3g (%s)\n", worst.ratio, worst.where.c_str());
  EXPECT_LE(worst.ratio, 1.0) << worst.where;
}

INSTANTIATE_TEST_SUITE_P(Types, QuantProducts, ::testing::ValuesIn(weight_specs()),
                         [](const ::testing::TestParamInfo<WeightSpec>& p) {
                           std::string name = ggml_type_traits(static_cast<uint32_t>(p.param.type))->name;
                           for (char& c : name)
                             if (c == '_') c = 'x';
                           return name;
                         });

}  // namespace
}  // namespace jarvis::test
