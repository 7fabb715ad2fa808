// What the per-ISA K-quant files (kquant_<isa>.cpp) share: the super-block layouts, the unpacking
// of Q4_K/Q5_K's packed 6-bit scales, and the tile loop around a per-ISA row kernel.
//
// Everything here is in an unnamed namespace on purpose: each kquant_<isa>.cpp is compiled with
// its own -march, so an inline function with external linkage would be compiled once per ISA and
// the linker would keep any one of the copies (an AVX-512 copy could then run on the scalar path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {
namespace {

// ggml's block_q4_K { half d, dmin; u8 scales[12]; u8 qs[128]; }
// block_q5_K { half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }
constexpr int kSuper = 256;
constexpr size_t kQ4KBytes = 144, kQ5KBytes = 176, kQ6KBytes = 210;
constexpr size_t kQ4KQs = 16;                      // Q4_K: offset of qs
constexpr size_t kQ5KQh = 16, kQ5KQs = 48;         // Q5_K: offsets of qh, qs
constexpr size_t kQ6KQh = 128, kQ6KScales = 192, kQ6KD = 208;

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Q4_K/Q5_K's 12 scale bytes k to out[0..7] = the 8 sub-block scales, out[8..15] = the 8 mins
// (6 bits each). k[0..3]: scales 0..3 in the low 6 bits, the top 2 bits of scales 4..7 above
// them; k[4..7]: the same for the mins; k[8..11]: low nibble = scale 4..7, high nibble = min 4..7.
// Four bytes at a time in 32-bit words (little-endian, like the file).
inline void unpack_scales_mins(const uint8_t* k, uint8_t out[16]) {
  const uint32_t a = load_u32(k), b = load_u32(k + 4), c = load_u32(k + 8);
  const uint32_t words[4] = {
      a & 0x3f3f3f3fu,                                      // scales 0..3
      (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u),         // scales 4..7
      b & 0x3f3f3f3fu,                                      // mins 0..3
      ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u),  // mins 4..7
  };
  std::memcpy(out, words, sizeof words);
}

// Kernel::row<NT>(w, xs, nb, out): out[t] = dot(the weight row of nb super-blocks at w, the
// activation row xs[t]) for t < NT; each weight block is unpacked once for all NT rows.
template <typename Kernel, int NT>
void tile_tokens(const uint8_t* w, size_t w_stride, int nr, const uint8_t* x, size_t x_stride, int64_t nb,
                 float* y, int64_t ldy, bool accumulate) {
  const BlockQ8_K* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = reinterpret_cast<const BlockQ8_K*>(x + t * x_stride);
  for (int r = 0; r < nr; ++r) {
    float v[NT];
    Kernel::template row<NT>(w + r * w_stride, xs, nb, v);
    for (int t = 0; t < NT; ++t) {
      float& out = y[t * ldy + r];
      out = accumulate ? out + v[t] : v[t];
    }
  }
}

// A TileFn over the Kernel: activation rows in groups of up to kTileTokens, each group a
// template instance so its accumulators live in registers.
template <typename Kernel>
void kquant_tile(const uint8_t* w, size_t w_stride, int nr, const uint8_t* x, size_t x_stride, int nt,
                 int64_t cols, float* y, int64_t ldy, bool accumulate) {
  const int64_t nb = cols / kSuper;
  for (int t0 = 0; t0 < nt; t0 += kTileTokens) {
    const uint8_t* xt = x + t0 * x_stride;
    float* yt = y + t0 * ldy;
    switch (nt - t0 < kTileTokens ? nt - t0 : kTileTokens) {
      case 1: tile_tokens<Kernel, 1>(w, w_stride, nr, xt, x_stride, nb, yt, ldy, accumulate); break;
      case 2: tile_tokens<Kernel, 2>(w, w_stride, nr, xt, x_stride, nb, yt, ldy, accumulate); break;
      case 3: tile_tokens<Kernel, 3>(w, w_stride, nr, xt, x_stride, nb, yt, ldy, accumulate); break;
      default: tile_tokens<Kernel, 4>(w, w_stride, nr, xt, x_stride, nb, yt, ldy, accumulate); break;
    }
  }
}
static_assert(kTileTokens == 4, "kquant_tile instantiates 1..4 activation rows");

inline void register_kquant_tiles(IsaKernels& k, TileFn q4_k, TileFn q5_k, TileFn q6_k, QuantizeFn q8_k) {
  k.tile[static_cast<int>(GgmlType::Q4_K)] = q4_k;
  k.tile[static_cast<int>(GgmlType::Q5_K)] = q5_k;
  k.tile[static_cast<int>(GgmlType::Q6_K)] = q6_k;
  k.quantize[static_cast<int>(ActFormat::kQ8_K)] = q8_k;
}

}  // namespace
}  // namespace jarvis::cpu::quant
