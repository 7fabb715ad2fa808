// The gated epilogue (act(gate) * up) of every ISA path against double precision, over arguments
// from deep in either tail to the middle: SiLU and GELU-tanh both as g / (1 + exp(-a)).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant/isa_tables.h"

namespace jarvis::test {
namespace {

using cpu::quant::GateKind;

double reference(GateKind k, double g) {
  if (k == GateKind::kSilu) return g / (1 + std::exp(-g));
  return 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)));
}

TEST(GateEpilogue, EveryIsaWithinAFewUlps) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> wide(-100.0f, 100.0f), mid(-6.0f, 6.0f), upd(-3.0f, 3.0f);
  const int64_t n = 1003;  // not a multiple of 8: the scalar tail too
  std::vector<float> g(n), u(n);
  for (int64_t i = 0; i < n; ++i) {
    g[i] = i % 4 == 0 ? wide(rng) : mid(rng);
    u[i] = upd(rng);
  }
  g[0] = 0.0f, g[1] = -0.0f, g[2] = 1e-30f, g[3] = -88.5f, g[4] = 88.5f;
  for (cpu::Isa isa : cpu::available_isas()) {
    for (GateKind k : {GateKind::kSilu, GateKind::kGeluTanh}) {
      cpu::quant::GateFn f = cpu::quant::isa_kernels(isa).gate[static_cast<int>(k)];
      ASSERT_NE(f, nullptr) << cpu::isa_name(isa);
      std::vector<float> out(n);
      f(g.data(), u.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double want = reference(k, g[i]) * u[i];
        // Float evaluation: the GELU argument (3 roundings, amplified by |a| in exp), exp (a few
        // ulps), 1 + e, the division and the product: 2^-20 |g u| covers them with margin; plus
        // an absolute 1e-30 for results that underflow to zero.
        const double bound = std::ldexp(std::fabs(static_cast<double>(g[i]) * u[i]), -20) + 1e-30;
        EXPECT_LE(std::fabs(out[i] - want), bound)
            << cpu::isa_name(isa) << (k == GateKind::kSilu ? " silu" : " gelu") << " g=" << g[i] << " u=" << u[i];
      }
    }
  }
}

}  // namespace
}  // namespace jarvis::test
