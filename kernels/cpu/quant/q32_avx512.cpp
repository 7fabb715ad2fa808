// q32 kernels for the avx512 path (AVX-512 F/BW/VL/DQ + VNNI; compiled with -march=x86-64-v4
// -mavx512vnni only). The kernels are q32_simd.inc at 256 bits; this file supplies VNNI's
// vpdpbusd (u8 x s8 summed into int32 lanes in one instruction) and a mask move for the fifth
// bit of Q5 quants. 32 vector registers hold a 4 x 4 tile of accumulators.
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

constexpr int kIsaTileTokens = 4;

inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }

inline __m256i high_bits(uint32_t qh) { return _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10)); }

#include "kernels/cpu/quant/q32_simd.inc"

}  // namespace

void register_q32_avx512(IsaKernels& k) { register_all(k); }

}  // namespace jarvis::cpu::quant
