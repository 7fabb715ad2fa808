// QuantMatrix over the default model's own tensors (Q4_1 projections, the Q8_0 tied embedding /
// head), on every ISA path and with 1 and 2 threads, against the double-precision block reference
// and the bounds of tests/kernels/quant_reference.h. The random-block table in tests/kernels
// covers the shapes; this covers real scale and min distributions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "csrc/gguf/gguf_file.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant_matrix.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/kernels/block_reference.h"
#include "tests/kernels/quant_reference.h"

namespace jarvis {
namespace {

using cpu::QuantMatrix;

const std::string kModel = std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

const test::WeightSpec& spec_of(GgmlType t) {
  for (const auto& s : test::weight_specs())
    if (s.type == t) return s;
  throw std::runtime_error("no spec");
}

struct Tensor {
  const GgufTensorInfo* info;
  int64_t rows, cols;
  QuantMatrix m;
};

Tensor load(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (!t) throw std::runtime_error("missing " + name);
  Tensor out{t, t->dims[1], t->dims[0], {}};
  out.m = QuantMatrix::from_blocks(t->type, t->data, out.rows, out.cols);
  return out;
}

// Input rows like the model's: embedding rows of a few tokens (their per-block spreads are the
// real ones), one scaled up, plus a Gaussian row.
std::vector<float> inputs(const GgufFile& f, int64_t cols, int64_t n) {
  const Tensor emb = load(f, "token_embd.weight");
  std::vector<float> x(static_cast<size_t>(n * cols));
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> row(static_cast<size_t>(emb.cols));
    emb.m.dequantize_rows(1000 + 977 * t, 1, row.data());
    for (int64_t c = 0; c < cols; ++c)
      x[t * cols + c] = t == n - 1 ? g(rng) : row[c % emb.cols] * (t == 1 ? 30.0f : 1.0f);
  }
  return x;
}

TEST(QuantMatrixModel, RealTensorsEveryIsaWithinDerivedBounds) {
  const GgufFile f = GgufFile::open(kModel);
  cpu::ThreadPool pool1(1), pool2(2);
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.7.ffn_gate.weight",
                           "blk.29.ffn_down.weight", "token_embd.weight"}) {
    const Tensor w = load(f, name);
    ASSERT_FALSE(w.m.empty()) << name;
    EXPECT_EQ(w.m.bytes(), w.info->nbytes) << name;  // held as the file stores it
    const int64_t n = 3;
    const auto x = inputs(f, w.cols, n);
    const test::Expected e = test::reference(spec_of(w.info->type), w.info->data, w.rows, w.cols, x, n);
    for (cpu::Isa isa : cpu::available_isas()) {
      cpu::set_active_isa(isa);
      for (cpu::ThreadPool* pool : {&pool1, &pool2}) {
        std::vector<float> y(static_cast<size_t>(n * w.rows));
        cpu::qmatmul(x.data(), n, w.m, y.data(), *pool);
        double worst = 0;
        int64_t at = 0;
        for (size_t o = 0; o < y.size(); ++o) {
          const double tight = std::fabs(y[o] - e.quantized[o]) / std::max(e.tol_fp[o], 1e-30);
          const double approx = std::fabs(y[o] - e.exact[o]) / std::max(e.tol_fp[o] + e.tol_act[o], 1e-30);
          if (std::max(tight, approx) > worst) worst = std::max(tight, approx), at = static_cast<int64_t>(o);
        }
        EXPECT_LE(worst, 1.0) << name << " " << cpu::isa_name(isa) << " threads=" << pool->size() << " at " << at
                              << ": " << y[at] << " vs " << e.quantized[at] << " (exact " << e.exact[at] << ")";
      }
    }
  }
  cpu::set_active_isa(cpu::available_isas().back());
}

// dequantize_rows (the embedding lookup, the GPU upload) against the block reference: each value
// is d q (+ m) in float, two roundings of at most 2^-24 of |d q| + |m| each, so 2^-22 of the
// block's largest |value| + its min covers it.
TEST(QuantMatrixModel, DequantizeRowsMatchesTheBlockReference) {
  const GgufFile f = GgufFile::open(kModel);
  for (const char* name : {"token_embd.weight", "blk.0.attn_v.weight", "blk.15.ffn_up.weight"}) {
    const Tensor w = load(f, name);
    const int64_t r0 = w.rows / 3, n = 5;
    std::vector<float> out(static_cast<size_t>(n * w.cols));
    w.m.dequantize_rows(r0, n, out.data());
    const size_t row_bytes = QuantMatrix::row_bytes(w.info->type, w.cols);
    for (int64_t r = 0; r < n; ++r) {
      const auto ref = test::reference_dequantize(w.info->type, w.info->data + (r0 + r) * row_bytes, w.cols);
      ASSERT_EQ(static_cast<int64_t>(ref.size()), w.cols);
      for (int64_t c0 = 0; c0 < w.cols; c0 += 32) {
        double amax = 0;
        for (int64_t c = c0; c < c0 + 32; ++c) amax = std::max(amax, std::fabs(ref[c]));
        for (int64_t c = c0; c < c0 + 32; ++c)
          EXPECT_LE(std::fabs(out[r * w.cols + c] - ref[c]), 2 * amax * std::ldexp(1.0, -22) + 1e-30) << name;
      }
    }
  }
}

}  // namespace
}  // namespace jarvis
