// The K-quant tiles (Q4_K, Q5_K, Q6_K against kQ8_K activations) and the kQ8_K quantizer, on every
// instruction set this CPU can run, against the double-precision block reference
// (block_reference_kquant.cpp) and an independent statement of the quantization rule.
//
// Until the driver's case table lands these call the ISA tables directly. The cases are plain
// data (kquant_cases()) so they can move into that table as they are.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant/isa_tables.h"
#include "tests/kernels/block_reference.h"

namespace jarvis::cpu::quant {
namespace {

using test::reference_dequantize;

struct TypeInfo {
  GgmlType type;
  size_t block_bytes;
};
constexpr TypeInfo kTypes[] = {{GgmlType::Q4_K, 144}, {GgmlType::Q5_K, 176}, {GgmlType::Q6_K, 210}};

// One tile call: shapes a driver can produce (tile rows and activation rows up to the contract's
// maxima, rows of 1 to 9 super-blocks), and blocks at the extremes of every integer range.
struct KquantCase {
  TypeInfo type;
  int64_t cols;
  int nr, nt;
  bool accumulate;
  bool extreme;  // every quant and scale at its maximum, activations at +-127
};

std::vector<KquantCase> kquant_cases() {
  std::vector<KquantCase> cases;
  for (const TypeInfo& t : kTypes) {
    for (int64_t cols : {256, 768, 2304}) {
      for (int nr = 1; nr <= kTileRows; ++nr) {
        for (int nt = 1; nt <= kTileTokens; ++nt) {
          for (bool acc : {false, true}) cases.push_back({t, cols, nr, nt, acc, false});
        }
      }
    }
    for (int nt = 1; nt <= kTileTokens; ++nt) cases.push_back({t, 512, kTileRows, nt, false, true});
  }
  return cases;
}

std::string case_name(Isa isa, const KquantCase& c) {
  return std::string(isa_name(isa)) + " " + ggml_type_traits(static_cast<uint32_t>(c.type.type))->name +
         " cols=" + std::to_string(c.cols) + " nr=" + std::to_string(c.nr) + " nt=" + std::to_string(c.nt) +
         (c.accumulate ? " accumulate" : "") + (c.extreme ? " extreme" : "");
}

// A random fp16 with a random sign and magnitude in [2^lo, 2^(hi+1)): finite, normal.
uint16_t random_half(std::mt19937& rng, int lo, int hi) {
  const int e = std::uniform_int_distribution<int>(lo, hi)(rng) + 15;
  return static_cast<uint16_t>((rng() & 0x8000u) | (e << 10) | (rng() & 0x3ffu));
}

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Random valid super-blocks: any quant and scale bits, finite fp16 scales of varied magnitude;
// every fifth block (never the first) with d = 0. `extreme`: all bits set (largest quants, scales and mins) and a
// positive d, so the integer sums reach their largest values.
void fill_blocks(const TypeInfo& t, uint8_t* row, int64_t nb, bool extreme, std::mt19937& rng) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = row + b * t.block_bytes;
    for (size_t i = 0; i < t.block_bytes; ++i) blk[i] = extreme ? 0xff : static_cast<uint8_t>(rng());
    const uint16_t d = extreme ? 0x2400 : (b % 5 == 4 ? 0 : random_half(rng, -14, -6));
    if (t.type == GgmlType::Q6_K) {
      if (extreme) std::memset(blk + 192, 0x7f, 16);  // +127: the largest magnitude with one sign
      put_u16(blk + 208, d);
    } else {
      put_u16(blk, d);
      put_u16(blk + 2, extreme ? 0x2400 : random_half(rng, -14, -6));
    }
  }
}

std::vector<float> random_activations(int64_t n, bool extreme, std::mt19937& rng) {
  std::vector<float> x(static_cast<size_t>(n));
  std::normal_distribution<float> normal;
  for (int64_t b = 0; b < n / 256; ++b) {
    // A scale per super-block, spanning magnitudes; every seventh block all zeros (d = 0).
    const float scale = (b % 7 == 6) ? 0.0f : std::ldexp(1.0f, static_cast<int>(rng() % 16) - 8);
    for (int i = 0; i < 256; ++i) {
      x[b * 256 + i] = extreme ? (i % 3 == 0 ? -1.0f : 1.0f) : scale * normal(rng);
    }
  }
  return x;
}

// The kQ8_K rule of quant_kernels.h, stated again here (not the kernels' code).
std::vector<uint8_t> rule_q8_k(const float* x, int64_t n) {
  std::vector<uint8_t> out(act_row_bytes(ActFormat::kQ8_K, n));
  for (int64_t b = 0; b < n / 256; ++b) {
    BlockQ8_K blk;
    std::memset(&blk, 0, sizeof blk);
    float amax = 0.0f;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[b * 256 + i]));
    blk.d = amax / 127.0f;
    const float id = blk.d == 0.0f ? 0.0f : 1.0f / blk.d;
    for (int i = 0; i < 256; ++i) {
      blk.qs[i] = static_cast<int8_t>(std::nearbyint(x[b * 256 + i] * id));
      blk.bsums[i / 16] = static_cast<int16_t>(blk.bsums[i / 16] + blk.qs[i]);
    }
    std::memcpy(out.data() + b * sizeof blk, &blk, sizeof blk);
  }
  return out;
}

std::vector<double> dequantize_q8_k(const uint8_t* q, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t b = 0; b < n / 256; ++b) {
    BlockQ8_K blk;
    std::memcpy(&blk, q + b * sizeof blk, sizeof blk);
    for (int i = 0; i < 256; ++i) out[b * 256 + i] = static_cast<double>(blk.d) * blk.qs[i];
  }
  return out;
}

// Per element, an upper bound on the magnitude of the terms the kernels add up in float:
// |d * scale * q| + |dmin * min| for Q4_K/Q5_K (the same decoder run on the block with dmin, then
// d, zeroed), 95 * |d * scale| for Q6_K (q - 32 is split into q and 32, with q <= 63; |d * scale|
// from the block with every quant made 33, which decodes to d * scale * 1).
std::vector<double> term_magnitudes(const TypeInfo& t, const uint8_t* row, int64_t cols) {
  const int64_t nb = cols / 256;
  std::vector<uint8_t> a(row, row + nb * t.block_bytes), b = a;
  std::vector<double> mag(static_cast<size_t>(cols));
  for (int64_t k = 0; k < nb; ++k) {
    uint8_t* ba = a.data() + k * t.block_bytes;
    uint8_t* bb = b.data() + k * t.block_bytes;
    if (t.type == GgmlType::Q6_K) {
      std::memset(ba, 0x11, 128);       // low 4 bits 1
      std::memset(ba + 128, 0xaa, 64);  // high 2 bits 2: q = 1 + 32
    } else {
      put_u16(ba + 2, 0);  // a: dmin = 0
      put_u16(bb, 0);      // b: d = 0
    }
  }
  const std::vector<double> ra = reference_dequantize(t.type, a.data(), cols);
  const std::vector<double> rb = reference_dequantize(t.type, b.data(), cols);
  for (int64_t c = 0; c < cols; ++c) {
    mag[c] = t.type == GgmlType::Q6_K ? 95.0 * std::fabs(ra[c]) : std::fabs(ra[c]) + std::fabs(rb[c]);
  }
  return mag;
}

TEST(KquantTile, EveryCaseEveryIsaMatchesTheBlockReference) {
  constexpr double u = 0x1p-24;  // float's unit roundoff
  const std::vector<Isa> isas = available_isas();
  std::mt19937 rng(1234);
  int checked = 0;
  for (const KquantCase& c : kquant_cases()) {
    const int64_t nb = c.cols / 256;
    const size_t w_row = static_cast<size_t>(nb) * c.type.block_bytes;
    const size_t w_stride = w_row + 40;  // padding between rows: the tile must step by w_stride
    std::vector<uint8_t> w(w_stride * c.nr, 0xa5);
    for (int r = 0; r < c.nr; ++r) fill_blocks(c.type, w.data() + r * w_stride, nb, c.extreme, rng);
    std::vector<std::vector<float>> x(c.nt);
    for (auto& xt : x) xt = random_activations(c.cols, c.extreme, rng);
    const size_t x_row = act_row_bytes(ActFormat::kQ8_K, c.cols);
    const size_t x_stride = x_row + 8;
    const int64_t ldy = c.nr + 3;  // columns past nr must stay untouched
    std::vector<float> y0(static_cast<size_t>(c.nt * ldy));
    for (float& v : y0) v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);

    // The references: against the quantized activations (only the kernels' float rounding can
    // differ) and against the float activations (the 8-bit rounding of x as well).
    std::vector<uint8_t> xq(x_stride * c.nt, 0x5a);
    std::vector<double> want_q(c.nt * c.nr), want_x(c.nt * c.nr), tol_q(c.nt * c.nr), tol_x(c.nt * c.nr);
    for (int t = 0; t < c.nt; ++t) {
      const std::vector<uint8_t> q = rule_q8_k(x[t].data(), c.cols);
      std::memcpy(xq.data() + t * x_stride, q.data(), x_row);
      const std::vector<double> xhat = dequantize_q8_k(q.data(), c.cols);
      for (int r = 0; r < c.nr; ++r) {
        const uint8_t* wr = w.data() + r * w_stride;
        const std::vector<double> wd = reference_dequantize(c.type.type, wr, c.cols);
        const std::vector<double> mag = term_magnitudes(c.type, wr, c.cols);
        double sq = 0, sx = 0, m = 0, rounding = 0;
        for (int64_t b = 0; b < nb; ++b) {
          BlockQ8_K blk;
          std::memcpy(&blk, q.data() + b * sizeof blk, sizeof blk);
          double wabs = 0;
          for (int64_t i = b * 256; i < (b + 1) * 256; ++i) {
            sq += wd[i] * xhat[i];
            sx += wd[i] * x[t][i];
            m += mag[i] * std::fabs(xhat[i]);
            wabs += std::fabs(wd[i]);
          }
          // |x - d q| <= d / 2 from the rounding to an integer, plus the float error of x * id
          // (id = 1/d and the product each within u relative: |x * id| <= 127.5 moves by 2u*127.5).
          rounding += wabs * static_cast<double>(blk.d) * (0.5 + 2 * u * 127.5);
        }
        // The kernels' float error: every term is rounded at most k = nb + 8 times on its way to y
        // (the int-to-float conversion, d * dx, the product, nb block additions, four levels of
        // horizontal sum); with accumulate, one more addition of the old y.
        const double k = static_cast<double>(nb + 8);
        const int i = t * c.nr + r;
        const double old = c.accumulate ? y0[t * ldy + r] : 0.0;
        want_q[i] = sq + old;
        want_x[i] = sx + old;
        tol_q[i] = k * u * m / (1 - k * u) + u * (std::fabs(old) + std::fabs(sq)) + 1e-30;
        tol_x[i] = tol_q[i] + rounding;
      }
    }

    for (Isa isa : isas) {
      const IsaKernels& kernels = isa_kernels(isa);
      const TileFn tile = kernels.tile[static_cast<int>(c.type.type)];
      ASSERT_NE(tile, nullptr) << case_name(isa, c);
      std::vector<float> y = y0;
      tile(w.data(), w_stride, c.nr, xq.data(), x_stride, c.nt, c.cols, y.data(), ldy, c.accumulate);
      for (int t = 0; t < c.nt; ++t) {
        for (int64_t r = 0; r < ldy; ++r) {
          const float got = y[t * ldy + r];
          if (r >= c.nr) {
            ASSERT_EQ(got, y0[t * ldy + r]) << case_name(isa, c) << ": wrote past nr at t=" << t << " r=" << r;
            continue;
          }
          const int i = t * c.nr + static_cast<int>(r);
          ASSERT_NEAR(got, want_q[i], tol_q[i]) << case_name(isa, c) << " t=" << t << " r=" << r;
          ASSERT_NEAR(got, want_x[i], tol_x[i]) << case_name(isa, c) << " t=" << t << " r=" << r;
          ++checked;
        }
      }
    }
  }
  std::printf("checked %d outputs on %zu ISAs\n", checked, isas.size());
}

// Inputs for the quantizer: random magnitudes, an all-zero block, exact ties (amax = 127 makes
// d = 1 and id = 1, so x = k + 0.5 lands halfway: nearest-even decides), subnormals, huge values.
// (A block whose largest magnitude is itself below about 2^-120 makes 1 / d overflow; the rule
// leaves that case open and activations never come near it.)
std::vector<float> quantizer_inputs(std::mt19937& rng) {
  std::vector<float> x = random_activations(256 * 8, false, rng);
  std::vector<float> block(256);
  for (int i = 0; i < 256; ++i) block[i] = 0.0f;  // zero block
  x.insert(x.end(), block.begin(), block.end());
  for (int i = 0; i < 256; ++i) block[i] = (i == 0) ? 127.0f : static_cast<float>(i % 254 - 127) + 0.5f;
  x.insert(x.end(), block.begin(), block.end());
  for (int i = 0; i < 256; ++i) block[i] = (i == 0) ? -127.0f : -(static_cast<float>(i % 127) + 0.5f);
  x.insert(x.end(), block.begin(), block.end());
  // Subnormal elements beside a tiny (but normal: 1 / d must stay finite) largest one.
  for (int i = 0; i < 256; ++i) block[i] = i == 0 ? 0x1p-100f : std::ldexp(static_cast<float>(i % 17) - 8.0f, -140);
  x.insert(x.end(), block.begin(), block.end());
  for (int i = 0; i < 256; ++i) block[i] = std::ldexp(static_cast<float>(i % 29) - 14.0f, 120);
  x.insert(x.end(), block.begin(), block.end());
  return x;
}

TEST(KquantQuantizer, EveryIsaWritesTheRulesBytes) {
  std::mt19937 rng(99);
  const std::vector<float> x = quantizer_inputs(rng);
  const int64_t n = static_cast<int64_t>(x.size());
  const std::vector<uint8_t> want = rule_q8_k(x.data(), n);
  BlockQ8_K tie;
  std::memcpy(&tie, want.data() + 9 * sizeof tie, sizeof tie);
  ASSERT_EQ(tie.d, 1.0f);
  ASSERT_EQ(tie.qs[1], -126);  // -125.5 -> -126 (even), not -125
  ASSERT_EQ(tie.qs[2], -124);  // -124.5 -> -124 (even), not -125
  for (Isa isa : available_isas()) {
    const QuantizeFn quantize = isa_kernels(isa).quantize[static_cast<int>(ActFormat::kQ8_K)];
    ASSERT_NE(quantize, nullptr) << isa_name(isa);
    for (int64_t cols : {int64_t{256}, int64_t{1280}, n}) {
      std::vector<uint8_t> got(want.size(), 0xcc);
      quantize(x.data() + (n - cols), got.data(), cols);
      const std::vector<uint8_t> w = rule_q8_k(x.data() + (n - cols), cols);
      ASSERT_EQ(0, std::memcmp(got.data(), w.data(), w.size())) << isa_name(isa) << " cols=" << cols;
      for (size_t i = w.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 0xcc) << isa_name(isa) << ": wrote past the row";
    }
  }
}

}  // namespace
}  // namespace jarvis::cpu::quant
