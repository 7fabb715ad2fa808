// The QuantMatrix products: the caller quantizes the input rows once per activation format, then
// one parallel pass gives each thread a static contiguous range of weight rows, walked in tiles of
// kTileRows weight rows x kTileTokens input rows (quant_kernels.h) by the active ISA's kernels.
// Weights keep GGUF's row layout (no repacking), so dequantize_rows() is the plain row decoder.
#include "kernels/cpu/quant_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/quant/isa_tables.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis::cpu {
namespace {

using quant::ActFormat;
using quant::kTileRows;
using quant::kTileTokens;

constexpr size_t kAlign = 64;
constexpr int kFormats = static_cast<int>(ActFormat::kCount);

// The active ISA's kernel for `type`, or the scalar one where that ISA has none yet.
quant::TileFn tile_for(GgmlType type) {
  const int i = static_cast<int>(type);
  quant::TileFn f = quant::isa_kernels(active_isa()).tile[i];
  if (f == nullptr) f = quant::isa_kernels(Isa::kScalar).tile[i];
  if (f == nullptr) {
    const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
    throw std::invalid_argument(std::string("qmatmul: no kernel for weight type ") + (t ? t->name : "?"));
  }
  return f;
}

quant::QuantizeFn quantizer_for(ActFormat f) {
  const int i = static_cast<int>(f);
  quant::QuantizeFn q = quant::isa_kernels(active_isa()).quantize[i];
  if (q == nullptr) q = quant::isa_kernels(Isa::kScalar).quantize[i];
  if (q == nullptr) throw std::invalid_argument("qmatmul: no quantizer for the activation format");
  return q;
}

// Input rows in one activation format: `stride` bytes apart. With two activation passes,
// `residual` holds the rounding residual of each row, quantized the same way (same stride).
struct Activations {
  const uint8_t* data = nullptr;
  size_t stride = 0;
  const uint8_t* residual = nullptr;
};

int passes_from_env() {
  const char* e = std::getenv("JARVIS_ACT_PASSES");
  if (e == nullptr || *e == '\0') return 1;
  const std::string v(e);
  if (v != "1" && v != "2") throw std::invalid_argument("JARVIS_ACT_PASSES='" + v + "': use 1 or 2");
  return v == "1" ? 1 : 2;
}
int g_passes = 0;  // 0: not read yet

// x minus what its quantized row `q` stands for (d * q per element), the second pass's input.
void rounding_residual(ActFormat f, const float* x, const uint8_t* q, int64_t cols, float* out) {
  const auto each = [&](const auto* blocks, int len) {
    for (int64_t b = 0; b < cols / len; ++b) {
      for (int i = 0; i < len; ++i) out[b * len + i] = x[b * len + i] - blocks[b].d * static_cast<float>(blocks[b].qs[i]);
    }
  };
  if (f == ActFormat::kQ8_0) each(reinterpret_cast<const quant::BlockQ8_0*>(q), 32);
  if (f == ActFormat::kQ8_1) each(reinterpret_cast<const quant::BlockQ8_1*>(q), 32);
  if (f == ActFormat::kQ8_K) each(reinterpret_cast<const quant::BlockQ8_K*>(q), 256);
}

// The input rows as `f` wants them: the float rows themselves, or quantized into this calling
// thread's scratch (the workers read it only during the pass the caller waits for).
Activations prepare(const float* x, int64_t n, int64_t cols, ActFormat f) {
  if (f == ActFormat::kF32) return {reinterpret_cast<const uint8_t*>(x), static_cast<size_t>(cols) * sizeof(float)};
  thread_local std::vector<uint8_t> scratch[kFormats];
  const size_t stride = quant::act_row_bytes(f, cols);
  std::vector<uint8_t>& buf = scratch[static_cast<int>(f)];
  const int passes = activation_passes();
  const size_t rows = static_cast<size_t>(n) * static_cast<size_t>(passes);
  if (buf.size() < stride * rows) buf.resize(stride * rows);
  const quant::QuantizeFn q = quantizer_for(f);
  for (int64_t t = 0; t < n; ++t) q(x + t * cols, buf.data() + t * stride, cols);
  if (passes == 1) return {buf.data(), stride, nullptr};
  thread_local std::vector<float> r;
  r.resize(static_cast<size_t>(cols));
  uint8_t* second = buf.data() + static_cast<size_t>(n) * stride;
  for (int64_t t = 0; t < n; ++t) {
    rounding_residual(f, x + t * cols, buf.data() + t * stride, cols, r.data());
    q(r.data(), second + t * stride, cols);
  }
  return {buf.data(), stride, second};
}

// One tile of the product: the first pass, then (two passes) the residual's added on top.
void run_tile(quant::TileFn tile, const uint8_t* w, size_t w_stride, int nr, const Activations& a, int64_t t0, int nt,
              int64_t cols, float* y, int64_t ldy, bool accumulate) {
  const size_t off = static_cast<size_t>(t0) * a.stride;
  tile(w, w_stride, nr, a.data + off, a.stride, nt, cols, y, ldy, accumulate);
  if (a.residual != nullptr) tile(w, w_stride, nr, a.residual + off, a.stride, nt, cols, y, ldy, true);
}

// One matrix's share of a pass, ready for the threads.
struct Job {
  const QuantMatrix* w;
  quant::TileFn tile;
  Activations act;
  size_t row_bytes;
};

Job make_job(const QuantMatrix& w, const Activations* acts) {
  return {&w, tile_for(w.type()), acts[static_cast<int>(quant::act_format(w.type()))],
          QuantMatrix::row_bytes(w.type(), w.cols())};
}

void check(const QuantMatrix& w, const char* what) {
  if (w.empty()) throw std::invalid_argument(std::string(what) + ": empty weight matrix");
}

// Quantizes x once for every format the matrices need.
void prepare_all(const float* x, int64_t n, int64_t cols, const QuantMatrix* const* ws, int count,
                 Activations* acts) {
  bool done[kFormats] = {};
  for (int i = 0; i < count; ++i) {
    const int f = static_cast<int>(quant::act_format(ws[i]->type()));
    if (!done[f]) acts[f] = prepare(x, n, cols, static_cast<ActFormat>(f));
    done[f] = true;
  }
}

// Weights stream from DRAM once per token; asking for the tile after next while this one is
// multiplied keeps more lines in flight than the hardware prefetcher does across the short rows.
constexpr int kPrefetchTiles = 4;
void prefetch_ahead(const uint8_t* p, size_t bytes, const uint8_t* end) {
  for (size_t o = 0; o < bytes && p + o < end; o += 64) __builtin_prefetch(p + o, 0, 0);
}

// y[t, r] (+)= x_t . W_r for rows [lo, hi) of j.w, all n input rows; the weight tile stays in L1
// while every input row passes over it.
void product_rows(const Job& j, int64_t n, int64_t lo, int64_t hi, float* y, int64_t ldy, bool accumulate) {
  const int64_t cols = j.w->cols();
  const uint8_t* end = j.w->data() + static_cast<size_t>(hi) * j.row_bytes;
  for (int64_t r0 = lo; r0 < hi; r0 += kTileRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kTileRows, hi - r0));
    const uint8_t* wr = j.w->data() + static_cast<size_t>(r0) * j.row_bytes;
    prefetch_ahead(wr + kPrefetchTiles * kTileRows * j.row_bytes, kTileRows * j.row_bytes, end);
    for (int64_t t0 = 0; t0 < n; t0 += kTileTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(kTileTokens, n - t0));
      run_tile(j.tile, wr, j.row_bytes, nr, j.act, t0, nt, cols, y + t0 * ldy + r0, ldy, accumulate);
    }
  }
}

quant::GateFn gate_for(GateActivation act) {
  const int i = static_cast<int>(act == GateActivation::kSilu ? quant::GateKind::kSilu : quant::GateKind::kGeluTanh);
  quant::GateFn f = quant::isa_kernels(active_isa()).gate[i];
  return f != nullptr ? f : quant::isa_kernels(Isa::kScalar).gate[i];
}

}  // namespace

int activation_passes() {
  if (g_passes == 0) g_passes = passes_from_env();
  return g_passes;
}

void set_activation_passes(int passes) {
  if (passes != 1 && passes != 2) throw std::invalid_argument("activation passes must be 1 or 2");
  g_passes = passes;
}

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
    if (error) {
      *error = !supported(type) ? "unsupported type"
               : rb == 0        ? "cols is not a whole number of blocks"
                                : "no rows";
    }
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
  check(w, "qmatmul");
  if (n <= 0) return;
  Activations acts[kFormats];
  const QuantMatrix* ws[] = {&w};
  prepare_all(x, n, w.cols(), ws, 1, acts);
  const Job job = make_job(w, acts);
  pool.parallel_for(
      0, w.rows(), [&](int64_t lo, int64_t hi) { product_rows(job, n, lo, hi, y, w.rows(), accumulate); },
      kTileRows);
}

void qmatmul_multi(const float* x, int64_t n, const QMatmulTarget* targets, int n_targets, ThreadPool& pool) {
  if (n <= 0 || n_targets <= 0) return;
  std::vector<const QuantMatrix*> ws(static_cast<size_t>(n_targets));
  int64_t total = 0;
  for (int i = 0; i < n_targets; ++i) {
    ws[i] = targets[i].w;
    check(*ws[i], "qmatmul_multi");
    if (ws[i]->cols() != ws[0]->cols()) throw std::invalid_argument("qmatmul_multi: matrices differ in cols");
    total += ws[i]->rows();
  }
  Activations acts[kFormats];
  prepare_all(x, n, ws[0]->cols(), ws.data(), n_targets, acts);
  std::vector<Job> jobs;
  for (int i = 0; i < n_targets; ++i) jobs.push_back(make_job(*ws[i], acts));
  // The matrices' rows are one index space, so the threads split their sum evenly.
  pool.parallel_for(
      0, total,
      [&](int64_t lo, int64_t hi) {
        int64_t base = 0;
        for (int i = 0; i < n_targets; ++i) {
          const int64_t rows = ws[i]->rows();
          const int64_t a = std::max(lo, base), b = std::min(hi, base + rows);
          if (a < b) product_rows(jobs[i], n, a - base, b - base, targets[i].y, rows, false);
          base += rows;
        }
      },
      kTileRows);
}

void qmatmul_gated(const float* x, int64_t n, const QuantMatrix& gate, const QuantMatrix& up,
                   GateActivation act, float* y, ThreadPool& pool) {
  check(gate, "qmatmul_gated");
  check(up, "qmatmul_gated");
  if (gate.rows() != up.rows() || gate.cols() != up.cols()) {
    throw std::invalid_argument("qmatmul_gated: gate and up differ in shape");
  }
  if (n <= 0) return;
  Activations acts[kFormats];
  const QuantMatrix* ws[] = {&gate, &up};
  prepare_all(x, n, gate.cols(), ws, 2, acts);
  const Job jg = make_job(gate, acts), ju = make_job(up, acts);
  const quant::GateFn epilogue = gate_for(act);
  const int64_t ld = gate.rows();
  pool.parallel_for(
      0, ld,
      [&](int64_t lo, int64_t hi) {
        // Per tile: gate and up into tile-sized buffers, act(gate) * up over both while in L1,
        // then the tile's rows into y.
        constexpr int kTile = kTileTokens * kTileRows;
        float g[kTile] = {}, u[kTile] = {};
        const uint8_t* g_end = gate.data() + static_cast<size_t>(hi) * jg.row_bytes;
        const uint8_t* u_end = up.data() + static_cast<size_t>(hi) * ju.row_bytes;
        for (int64_t r0 = lo; r0 < hi; r0 += kTileRows) {
          const int nr = static_cast<int>(std::min<int64_t>(kTileRows, hi - r0));
          const size_t ahead = static_cast<size_t>(r0 + kPrefetchTiles * kTileRows);
          prefetch_ahead(gate.data() + ahead * jg.row_bytes, kTileRows * jg.row_bytes, g_end);
          prefetch_ahead(up.data() + ahead * ju.row_bytes, kTileRows * ju.row_bytes, u_end);
          for (int64_t t0 = 0; t0 < n; t0 += kTileTokens) {
            const int nt = static_cast<int>(std::min<int64_t>(kTileTokens, n - t0));
            run_tile(jg.tile, gate.data() + static_cast<size_t>(r0) * jg.row_bytes, jg.row_bytes, nr, jg.act, t0, nt,
                     gate.cols(), g, kTileRows, false);
            run_tile(ju.tile, up.data() + static_cast<size_t>(r0) * ju.row_bytes, ju.row_bytes, nr, ju.act, t0, nt,
                     up.cols(), u, kTileRows, false);
            // Always the whole tile, so every element takes the same (vector) path whatever nt and
            // nr are: a row's result must not depend on its batch. Entries past nr / nt hold stale
            // finite values: computed, never stored.
            epilogue(g, u, g, kTile);
            for (int t = 0; t < nt; ++t) std::memcpy(y + (t0 + t) * ld + r0, g + t * kTileRows, nr * sizeof(float));
          }
        }
      },
      kTileRows);
}

}  // namespace jarvis::cpu
