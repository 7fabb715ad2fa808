// The activation quantizers (kQ8_0, kQ8_1) of every ISA path: identical bytes on every path (the
// rule in quant_kernels.h is exact, so paths may differ only in later float sums), equal to the
// rule as this test states it, and each value within d/2 of its input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant/isa_tables.h"
#include "tests/kernels/quant_case_data.h"

namespace jarvis::test {
namespace {

using cpu::quant::ActFormat;
using cpu::quant::BlockQ8_0;
using cpu::quant::BlockQ8_1;

std::vector<uint8_t> quantize(cpu::Isa isa, ActFormat f, const std::vector<float>& x) {
  const int64_t cols = static_cast<int64_t>(x.size());
  std::vector<uint8_t> out(cpu::quant::act_row_bytes(f, cols));
  cpu::quant::QuantizeFn q = cpu::quant::isa_kernels(isa).quantize[static_cast<int>(f)];
  EXPECT_NE(q, nullptr) << cpu::isa_name(isa);
  if (q) q(x.data(), out.data(), cols);
  return out;
}

// Rows with zero blocks, outliers, exact ties (k + 0.5) d, and values near the float limits.
std::vector<std::vector<float>> rows() {
  std::mt19937 rng(7);
  std::vector<std::vector<float>> r;
  for (int i = 0; i < 20; ++i) r.push_back(random_activations(1, 32 * (1 + i % 9), rng));
  std::vector<float> ties(64);
  for (int j = 0; j < 32; ++j) ties[j] = static_cast<float>(j - 16) + 0.5f;  // amax 15.5: d = 15.5/127
  for (int j = 0; j < 32; ++j) ties[32 + j] = (j == 0 ? 127.0f : static_cast<float>(j) + 0.5f);  // d = 1
  r.push_back(ties);
  std::vector<float> extreme(32, 1e-30f);
  extreme[3] = 3e38f;
  extreme[4] = -3e38f;
  r.push_back(extreme);
  r.push_back(std::vector<float>(32, -1e-40f));  // subnormal inputs
  return r;
}

TEST(ActQuantize, SameBytesOnEveryIsaAndAsTheRule) {
  for (const auto& x : rows()) {
    const int64_t nb = static_cast<int64_t>(x.size()) / 32;
    const auto ref0 = quantize(cpu::Isa::kScalar, ActFormat::kQ8_0, x);
    const auto ref1 = quantize(cpu::Isa::kScalar, ActFormat::kQ8_1, x);
    // The rule, restated here.
    for (int64_t b = 0; b < nb; ++b) {
      int8_t q[32];
      const float d = reference_quantize_block(&x[32 * b], 32, q);
      BlockQ8_0 b0;
      BlockQ8_1 b1;
      std::memcpy(&b0, ref0.data() + b * sizeof(BlockQ8_0), sizeof b0);
      std::memcpy(&b1, ref1.data() + b * sizeof(BlockQ8_1), sizeof b1);
      EXPECT_EQ(d, b0.d);
      EXPECT_EQ(d, b1.d);
      EXPECT_EQ(0, std::memcmp(q, b0.qs, 32));
      EXPECT_EQ(0, std::memcmp(q, b1.qs, 32));
      int sum = 0;
      for (int j = 0; j < 32; ++j) sum += q[j];
      EXPECT_EQ(b1.s, d * static_cast<float>(sum));
      // |x - d q| <= d/2, up to the float rounding of 1/d and of x/d (a few ulps of x); a block
      // whose d would be subnormal is zero, off by at most its amax < 127 FLT_MIN.
      const double flushed = d == 0.0f ? 127.0 * std::numeric_limits<float>::min() : 0.0;
      for (int j = 0; j < 32; ++j) {
        const double xj = x[32 * b + j];
        EXPECT_LE(std::fabs(xj - static_cast<double>(d) * q[j]),
                  d / 2.0 * (1 + 1e-6) + std::fabs(xj) * 1e-6 + flushed)
            << "block " << b << " element " << j;
      }
    }
    for (cpu::Isa isa : cpu::available_isas()) {
      EXPECT_EQ(quantize(isa, ActFormat::kQ8_0, x), ref0) << cpu::isa_name(isa) << " cols " << x.size();
      EXPECT_EQ(quantize(isa, ActFormat::kQ8_1, x), ref1) << cpu::isa_name(isa) << " cols " << x.size();
    }
  }
}

TEST(ActQuantize, TiesRoundToEven) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // d = 1
  x[1] = 2.5f;
  x[2] = 3.5f;
  x[3] = -2.5f;
  for (cpu::Isa isa : cpu::available_isas()) {
    const auto out = quantize(isa, ActFormat::kQ8_0, x);
    BlockQ8_0 b;
    std::memcpy(&b, out.data(), sizeof b);
    EXPECT_EQ(b.d, 1.0f);
    EXPECT_EQ(b.qs[1], 2) << cpu::isa_name(isa);
    EXPECT_EQ(b.qs[2], 4) << cpu::isa_name(isa);
    EXPECT_EQ(b.qs[3], -2) << cpu::isa_name(isa);
  }
}

TEST(CpuIsa, AllPathsListedScalarFirst) {
  const auto isas = cpu::available_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), cpu::Isa::kScalar);
#if defined(__x86_64__)
  // The build machine and CI have AVX-512 VNNI: every path must be exercised there. Elsewhere
  // this only reports which paths ran.
  std::printf("ISA paths on this CPU:");
  for (cpu::Isa i : isas) std::printf(" %s", cpu::isa_name(i));
  std::printf("\n");
#endif
}

TEST(CpuIsa, NamesParseAndBadNamesSayWhatExists) {
  for (cpu::Isa isa : cpu::available_isas()) EXPECT_EQ(cpu::isa_from_name(cpu::isa_name(isa)), isa);
  try {
    cpu::isa_from_name("avx9000");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown instruction set"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scalar"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace jarvis::test
