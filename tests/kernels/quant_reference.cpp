#include "tests/kernels/quant_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tests/kernels/block_reference.h"

namespace jarvis::test {

Expected reference(const WeightSpec& spec, const uint8_t* w, int64_t rows, int64_t cols, const std::vector<float>& x,
                   int64_t n) {
  const bool quantized = spec.block_elems > 1;  // block types meet 8-bit activations
  const int64_t qblk = std::max<int64_t>(32, spec.block_elems);
  const size_t row_bytes = static_cast<size_t>(cols / spec.block_elems) * spec.block_bytes;
  // Activations as the kernels see them, with each element's rounding bound and its block's sum|xq|.
  std::vector<double> xq(x.size()), xerr(x.size()), blk_abs(x.size() / qblk + 1);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c0 = 0; c0 < cols; c0 += (quantized ? qblk : cols)) {
      const float* xb = &x[t * cols + c0];
      if (!quantized) {
        for (int64_t c = 0; c < cols; ++c) xq[t * cols + c] = xb[c];
        continue;
      }
      std::vector<int8_t> q(qblk);
      const double d = reference_quantize_block(xb, static_cast<int>(qblk), q.data());
      double s = 0;
      for (int64_t j = 0; j < qblk; ++j) {
        const size_t i = static_cast<size_t>(t * cols + c0 + j);
        xq[i] = d * q[j];
        xerr[i] = d / 2 * (1 + 4 * kU) + std::fabs(xb[j]) * 4 * kU;
        s += std::fabs(xq[i]);
      }
      blk_abs[(t * cols + c0) / qblk] = s;
    }
  }
  Expected e;
  for (auto* v : {&e.quantized, &e.exact, &e.tol_fp, &e.tol_act}) v->assign(static_cast<size_t>(n * rows), 0.0);
  // Sequential float additions per accumulator: at most one per 16-element sub-block (the
  // K-quants scale 16 or 32 elements at a time; q32 kernels add once per 32), one per 4 floats.
  const int64_t steps = quantized ? cols / 16 : cols / 4;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w + r * row_bytes;
    const std::vector<double> wr = reference_dequantize(spec.type, row, cols);
    // Per block: |scales| * max|quant|, which bounds every partial term the kernels form.
    std::vector<double> blk_mag(static_cast<size_t>(cols / qblk + 1), 0.0);
    if (quantized) {
      for (int64_t b = 0; b < cols / spec.block_elems; ++b) {
        const uint8_t* blk = row + b * spec.block_bytes;
        double m = 0;
        for (int off : spec.f16_offsets) {
          uint16_t h;
          std::memcpy(&h, blk + off, 2);
          m += std::fabs(reference_dequantize(GgmlType::F16, &h, 1)[0]);
        }
        blk_mag[b * spec.block_elems / qblk] += m * spec.max_quant;
      }
    }
    for (int64_t t = 0; t < n; ++t) {
      double q = 0, ex = 0, mag = 0, act = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(t * cols + c);
        q += wr[c] * xq[i];
        ex += wr[c] * x[i];
        act += std::fabs(wr[c]) * xerr[i];
        if (!quantized) mag += std::fabs(wr[c] * xq[i]);
      }
      if (quantized)
        for (int64_t b = 0; b < cols / qblk; ++b) mag += blk_mag[b] * blk_abs[(t * cols) / qblk + b];
      const size_t o = static_cast<size_t>(t * rows + r);
      e.quantized[o] = q;
      e.exact[o] = ex;
      e.tol_fp[o] = 2 * (steps + 8) * kU * mag;
      e.tol_act[o] = act;
    }
  }
  return e;
}

}  // namespace jarvis::test
