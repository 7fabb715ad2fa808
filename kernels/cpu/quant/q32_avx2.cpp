// q32 kernels for the avx2 path (AVX2 + FMA + F16C; compiled with -march=x86-64-v3 only). The
// kernels themselves are q32_simd.inc; this file supplies the 8-bit dot product: maddubs
// (u8 x s8 -> pairs of int16, no saturation for |u| <= 128, |s| <= 127) then madd by ones.
#include <cmath>
#include <cstring>
#include <limits>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {
namespace {

// Float tiles keep one accumulator per (weight row, activation row): with 16 ymm registers
// 4 x 2 leaves room for the operands, 4 x 4 would spill. (Block tiles fold four activation rows
// into one accumulator per weight row and take 4 everywhere.)
constexpr int kIsaTileTokens = 2;

inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

inline __m256i high_bits(uint32_t qh) {
  // Byte j takes qh's byte j / 8 (shuffle works per 128-bit lane; both lanes hold qh), then
  // keeps its own bit j % 8.
  const __m256i pick = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), pick);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}

#include "kernels/cpu/quant/q32_simd.inc"

}  // namespace

void register_q32_avx2(IsaKernels& k) { register_all(k); }

}  // namespace jarvis::cpu::quant
