// Interim implementation of the QuantMatrix products: each thread dequantizes its weight rows to
// float32 and takes float dot products. Correct for every supported type; the integer kernels
// (8-bit activations, per-ISA tiles) replace the inner loops.
#include "kernels/cpu/quant_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis::cpu {
namespace {

constexpr size_t kAlign = 64;

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

float apply(GateActivation act, float g) {
  if (act == GateActivation::kSilu) return g / (1.0f + std::exp(-g));
  const float c = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * g * (1.0f + std::tanh(c * (g + 0.044715f * g * g * g)));
}

// out[t, r - lo] for rows [lo, hi): y = x W^T over a row range, one dequantized row at a time.
template <typename Store>
void rows_product(const float* x, int64_t n, const QuantMatrix& w, int64_t lo, int64_t hi, Store store) {
  std::vector<float> row(static_cast<size_t>(w.cols()));
  for (int64_t r = lo; r < hi; ++r) {
    w.dequantize_rows(r, 1, row.data());
    for (int64_t t = 0; t < n; ++t) store(t, r, dot(x + t * w.cols(), row.data(), w.cols()));
  }
}

}  // namespace

void QuantMatrix::FreeAligned::operator()(uint8_t* p) const { std::free(p); }

size_t QuantMatrix::row_bytes(GgmlType type, int64_t cols) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  if (!t || cols <= 0 || cols % t->block_elems != 0) return 0;
  return static_cast<size_t>(cols / t->block_elems) * t->block_bytes;
}

bool QuantMatrix::supported(GgmlType type) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  return t && t->supported;
}

QuantMatrix QuantMatrix::from_blocks(GgmlType type, const void* data, int64_t rows, int64_t cols,
                                     const char** error) {
  const size_t rb = row_bytes(type, cols);
  if (!supported(type) || rb == 0 || rows <= 0) {
    if (error) *error = !supported(type) ? "unsupported type" : "cols is not a whole number of blocks";
    return {};
  }
  QuantMatrix m;
  m.rows_ = rows;
  m.cols_ = cols;
  m.type_ = type;
  m.bytes_ = rb * static_cast<size_t>(rows);
  const size_t alloc = (m.bytes_ + kAlign - 1) / kAlign * kAlign;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kAlign, alloc));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, data, m.bytes_);
  m.data_ = std::shared_ptr<uint8_t>(p, FreeAligned{});
  return m;
}

QuantMatrix QuantMatrix::from_f32(const float* data, int64_t rows, int64_t cols) {
  return from_blocks(GgmlType::F32, data, rows, cols);
}

void QuantMatrix::dequantize_rows(int64_t r0, int64_t n, float* out) const {
  const size_t rb = row_bytes(type_, cols_);
  for (int64_t i = 0; i < n; ++i) dequantize_row(type_, data_.get() + (r0 + i) * rb, out + i * cols_, cols_);
}

void qmatmul(const float* x, int64_t n, const QuantMatrix& w, float* y, ThreadPool& pool, bool accumulate) {
  const int64_t ld = w.rows();
  pool.parallel_for(0, w.rows(), [&](int64_t lo, int64_t hi) {
    rows_product(x, n, w, lo, hi, [&](int64_t t, int64_t r, float v) {
      y[t * ld + r] = accumulate ? y[t * ld + r] + v : v;
    });
  });
}

void qmatmul_multi(const float* x, int64_t n, const QMatmulTarget* targets, int n_targets, ThreadPool& pool) {
  int64_t total = 0;
  for (int i = 0; i < n_targets; ++i) total += targets[i].w->rows();
  pool.parallel_for(0, total, [&](int64_t lo, int64_t hi) {
    int64_t base = 0;
    for (int i = 0; i < n_targets; ++i) {
      const QuantMatrix& w = *targets[i].w;
      const int64_t a = std::max(lo, base), b = std::min(hi, base + w.rows());
      if (a < b) {
        float* y = targets[i].y;
        rows_product(x, n, w, a - base, b - base, [&](int64_t t, int64_t r, float v) { y[t * w.rows() + r] = v; });
      }
      base += w.rows();
    }
  });
}

void qmatmul_gated(const float* x, int64_t n, const QuantMatrix& gate, const QuantMatrix& up,
                   GateActivation act, float* y, ThreadPool& pool) {
  const int64_t ld = gate.rows();
  pool.parallel_for(0, gate.rows(), [&](int64_t lo, int64_t hi) {
    rows_product(x, n, gate, lo, hi, [&](int64_t t, int64_t r, float v) { y[t * ld + r] = apply(act, v); });
    rows_product(x, n, up, lo, hi, [&](int64_t t, int64_t r, float v) { y[t * ld + r] *= v; });
  });
}

}  // namespace jarvis::cpu
