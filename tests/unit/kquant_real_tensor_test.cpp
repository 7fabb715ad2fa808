// The K-quant tiles on real tensors: the Q4_K and Q6_K (and Q5_K, where the file has any) weights
// of Gemma 3 270M's Q4_K_M file, on every instruction set this CPU runs, against a double-precision
// product over dequantize_row (itself bit-exact with the `gguf` package, test_dequant.py).
// Random valid blocks are tested in tests/kernels/kquant_tile_test.cpp; these add the scale and
// quant distributions a real quantizer writes. Skipped, saying so, when the file is absent
// (scripts/setup.sh places it under models/; JARVIS_GEMMA_GGUF overrides the path).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "csrc/gguf/gguf_file.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/quant/isa_tables.h"

namespace jarvis::cpu::quant {
namespace {

std::string gemma_path() {
  const char* env = std::getenv("JARVIS_GEMMA_GGUF");
  return env ? env : std::string(JARVIS_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf";
}

std::vector<double> decode(GgmlType type, const uint8_t* blocks, int64_t n) {
  std::vector<float> f(static_cast<size_t>(n));
  EXPECT_TRUE(dequantize_row(type, blocks, f.data(), n));
  return std::vector<double>(f.begin(), f.end());
}

// Per element, a bound on the magnitude of the terms the kernels sum in float (as in
// kquant_tile_test.cpp): |d scale q| + |dmin min| for Q4_K/Q5_K (the block decoded with dmin, then
// d, zeroed), 95 |d scale| for Q6_K (q - 32 split into q <= 63 and 32; every quant set to 33).
std::vector<double> term_magnitudes(GgmlType type, const uint8_t* row, int64_t cols, size_t block_bytes) {
  std::vector<uint8_t> a(row, row + cols / 256 * block_bytes), b = a;
  for (size_t off = 0; off < a.size(); off += block_bytes) {
    if (type == GgmlType::Q6_K) {
      std::memset(&a[off], 0x11, 128);
      std::memset(&a[off + 128], 0xaa, 64);
    } else {
      a[off + 2] = a[off + 3] = 0;
      b[off] = b[off + 1] = 0;
    }
  }
  const std::vector<double> ra = decode(type, a.data(), cols), rb = decode(type, b.data(), cols);
  std::vector<double> mag(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    mag[c] = type == GgmlType::Q6_K ? 95.0 * std::fabs(ra[c]) : std::fabs(ra[c]) + std::fabs(rb[c]);
  }
  return mag;
}

TEST(KquantRealTensors, GemmaQ4KMWeightsOnEveryIsa) {
  const std::string path = gemma_path();
  if (!std::ifstream(path).good()) GTEST_SKIP() << "Gemma 3 270M Q4_K_M file missing: " << path << " (run scripts/setup.sh)";
  const GgufFile file = GgufFile::open(path);
  constexpr double u = 0x1p-24;
  constexpr int kRows = 7, kTokens = 5;  // not multiples of the 4 x 4 tile
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  int tensors = 0;
  std::map<std::pair<GgmlType, int64_t>, int> seen;  // (type, row length): three of each is plenty
  for (const GgufTensorInfo& t : file.tensors()) {
    if (t.type != GgmlType::Q4_K && t.type != GgmlType::Q5_K && t.type != GgmlType::Q6_K) continue;
    if (++seen[{t.type, t.dims[0]}] > 3) continue;
    ++tensors;
    const int64_t cols = t.dims[0];
    const size_t block_bytes = ggml_type_traits(static_cast<uint32_t>(t.type))->block_bytes;
    const size_t row_bytes = static_cast<size_t>(cols / 256) * block_bytes;
    const int64_t r0 = t.dims[1] / 2;  // rows from the middle of the matrix
    const uint8_t* w = t.data + r0 * row_bytes;

    std::vector<float> x(static_cast<size_t>(kTokens * cols));
    for (float& v : x) v = normal(rng);
    const size_t x_stride = act_row_bytes(ActFormat::kQ8_K, cols);
    std::vector<uint8_t> xq(x_stride * kTokens);
    const IsaKernels& scalar = isa_kernels(Isa::kScalar);
    for (int k = 0; k < kTokens; ++k) {
      scalar.quantize[static_cast<int>(ActFormat::kQ8_K)](x.data() + k * cols, xq.data() + k * x_stride, cols);
    }
    // The double references over the quantized activations, with the float error bound.
    std::vector<double> want(kTokens * kRows), tol(kTokens * kRows);
    for (int r = 0; r < kRows; ++r) {
      const std::vector<double> wd = decode(t.type, w + r * row_bytes, cols);
      const std::vector<double> mag = term_magnitudes(t.type, w + r * row_bytes, cols, block_bytes);
      for (int k = 0; k < kTokens; ++k) {
        double s = 0, m = 0;
        for (int64_t b = 0; b < cols / 256; ++b) {
          BlockQ8_K blk;
          std::memcpy(&blk, xq.data() + k * x_stride + b * sizeof blk, sizeof blk);
          for (int i = 0; i < 256; ++i) {
            const double xh = static_cast<double>(blk.d) * blk.qs[i];
            s += wd[b * 256 + i] * xh;
            m += mag[b * 256 + i] * std::fabs(xh);
          }
        }
        const double n = static_cast<double>(cols / 256 + 8);
        want[k * kRows + r] = s;
        tol[k * kRows + r] = n * u * m / (1 - n * u) + u * std::fabs(s);
      }
    }
    for (Isa isa : available_isas()) {
      const IsaKernels& kernels = isa_kernels(isa);
      std::vector<uint8_t> xi(xq.size());
      for (int k = 0; k < kTokens; ++k) {
        kernels.quantize[static_cast<int>(ActFormat::kQ8_K)](x.data() + k * cols, xi.data() + k * x_stride, cols);
      }
      ASSERT_EQ(xi, xq) << isa_name(isa) << ": the activation bytes differ from the scalar path's";
      std::vector<float> y(kTokens * kRows);
      const TileFn tile = kernels.tile[static_cast<int>(t.type)];
      for (int r = 0; r < kRows; r += kTileRows) {
        for (int k = 0; k < kTokens; k += kTileTokens) {
          tile(w + r * row_bytes, row_bytes, std::min(kTileRows, kRows - r), xi.data() + k * x_stride, x_stride,
               std::min(kTileTokens, kTokens - k), cols, y.data() + k * kRows + r, kRows, false);
        }
      }
      for (int i = 0; i < kTokens * kRows; ++i) {
        ASSERT_NEAR(y[i], want[i], tol[i]) << isa_name(isa) << " " << t.name << " row " << r0 + i % kRows
                                           << " token " << i / kRows;
      }
    }
  }
  EXPECT_GT(tensors, 0) << path << " holds no K-quant tensor";
  std::printf("%d K-quant tensors checked\n", tensors);
}

}  // namespace
}  // namespace jarvis::cpu::quant
