#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis::cpu {
namespace {

using simd::VecF;
constexpr int kW = VecF::kWidth;
// Register tile: kTileRows weight rows x kTileTokens tokens of accumulators. AVX-512 has 32 vector
// registers (16 accumulators + 4 weights + 1 input fit), AVX2 has 16 (8 + 4 + 1).
constexpr int kTileRows = 4;
constexpr int kTileTokens = kW >= 16 ? 4 : 2;
// Tokens processed per pass over a thread's weight slice: bounds the activations that must stay in
// L2 while each weight row is reused from L1 by all of them.
constexpr int64_t kTokenBlock = 64;

// y[t * ldy + r] = dot(x[t], w[r]) for r < R, t < T.
template <int R, int T>
inline void tile(const float* x, int64_t ldx, const float* w, int64_t cols, float* y, int64_t ldy) {
  VecF acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = VecF::zero();
  int64_t c = 0;
  for (; c + kW <= cols; c += kW) {
    VecF wv[R];
    for (int r = 0; r < R; ++r) wv[r] = VecF::load(w + r * cols + c);
    for (int t = 0; t < T; ++t) {
      const VecF xv = VecF::load(x + t * ldx + c);
      for (int r = 0; r < R; ++r) acc[r][t] = simd::fma(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = acc[r][t].sum();
      for (int64_t k = c; k < cols; ++k) s += w[r * cols + k] * x[t * ldx + k];
      y[t * ldy + r] = s;
    }
  }
}

template <int R>
inline void tile_tokens(int tokens, const float* x, int64_t ldx, const float* w, int64_t cols,
                        float* y, int64_t ldy) {
  static_assert(kTileTokens <= 4, "extend the switch below");
  switch (tokens) {
    case 1: tile<R, 1>(x, ldx, w, cols, y, ldy); break;
    case 2: tile<R, 2>(x, ldx, w, cols, y, ldy); break;
    case 3: tile<R, (kTileTokens >= 3 ? 3 : 1)>(x, ldx, w, cols, y, ldy); break;
    default: tile<R, kTileTokens>(x, ldx, w, cols, y, ldy); break;
  }
}

void matmul_rows(const float* x, const float* w, float* y, int64_t n, int64_t rows, int64_t cols,
                 int64_t row_lo, int64_t row_hi) {
  for (int64_t t_blk = 0; t_blk < n; t_blk += kTokenBlock) {
    const int64_t t_end = std::min(n, t_blk + kTokenBlock);
    for (int64_t r = row_lo; r < row_hi; r += kTileRows) {
      const int64_t rr = std::min<int64_t>(kTileRows, row_hi - r);
      for (int64_t t = t_blk; t < t_end; t += kTileTokens) {
        const int tt = static_cast<int>(std::min<int64_t>(kTileTokens, t_end - t));
        const float* xt = x + t * cols;
        float* yt = y + t * rows + r;
        if (rr == kTileRows) {
          tile_tokens<kTileRows>(tt, xt, cols, w + r * cols, cols, yt, rows);
        } else {
          for (int64_t i = 0; i < rr; ++i)
            tile_tokens<1>(tt, xt, cols, w + (r + i) * cols, cols, yt + i, rows);
        }
      }
    }
  }
}

}  // namespace

void matmul(const float* x, const float* w, float* y, int64_t n, int64_t rows, int64_t cols,
            ThreadPool& pool) {
  if (n <= 0 || rows <= 0) return;
  pool.parallel_for(
      0, rows, [&](int64_t lo, int64_t hi) { matmul_rows(x, w, y, n, rows, cols, lo, hi); },
      kTileRows);
}

}  // namespace jarvis::cpu
