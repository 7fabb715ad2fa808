// K-quant kernels for the AVX-512 path (F/BW/VL/DQ + VNNI; this file alone is compiled with them).
// The sums are those of kquant_scalar.cpp, 64 elements per instruction: maddubs (unsigned quants
// times signed 8-bit activations, pairs to int16, at most 2 * 63 * 127) then VNNI's dpwssd, which
// multiplies by the sub-block scales (int16 per lane) and accumulates pairs into int32 in one step.
// GCC 12's AVX-512 intrinsics use deliberately undefined values that trip -Wmaybe-uninitialized
// once inlined (GCC bug 105593); the warnings point into the system header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <limits>

#include "kernels/cpu/quant/kquant_common.h"

namespace jarvis::cpu::quant {
namespace {

inline float half(const uint8_t* p) { return _cvtsh_ss(load_u16(p)); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// [lo | hi] as one 512-bit vector.
inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
inline __m512i zext(__m256i lo) { return _mm512_inserti64x4(_mm512_setzero_si512(), lo, 0); }

// The rule of quant_kernels.h, sixteen elements (one bsums group) per vector; cvtps_epi32 rounds
// to nearest even under the default MXCSR, as nearbyint does, and |q| <= 127 never saturates.
void quantize_q8_k(const float* x, void* out, int64_t cols) {
  auto* y = static_cast<BlockQ8_K*>(out);
  for (int64_t b = 0; b < cols / kSuper; ++b, x += kSuper) {
    __m512 vmax = _mm512_setzero_ps();
    for (int i = 0; i < kSuper; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    float d = _mm512_reduce_max_ps(vmax) / 127.0f;
    if (d < std::numeric_limits<float>::min()) d = 0.0f;  // 1/d would overflow: a zero block
    const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    y[b].d = d;
    for (int g = 0; g < 16; ++g) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), id));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * g), _mm512_cvtsepi32_epi8(q));
      y[b].bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
  }
}

// Q4_K and Q5_K: pair j of sub-blocks as one vector, sub-block 2j (the low nibbles of qs[32j..])
// in the low half and 2j+1 (the high nibbles) in the high half, which matches the 64 activations
// qs[64j..64j+63] as they lie. For Q5_K, qh and qh >> 1 side by side put both fifth bits at bit 0.
template <bool kFifthBit>
struct Q45K {
  template <int NT>
  static void row(const uint8_t* w, const BlockQ8_K* const* xs, int64_t nb, float* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m512i bit0 = _mm512_set1_epi8(0x01);
    // Scales 2j (low half) and 2j+1 (high half) as int16 in every lane: pshufb of the scale bytes
    // with index bytes (2j or 2j+1, 0x80), the 0x80 zeroing each lane's high byte.
    const __m512i pick = join(_mm256_set1_epi16(static_cast<int16_t>(0x8000)), _mm256_set1_epi16(static_cast<int16_t>(0x8001)));
    const size_t block_bytes = kFifthBit ? kQ5KBytes : kQ4KBytes;
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += block_bytes) {
      const float d = half(w), dmin = half(w + 2);
      alignas(16) uint8_t sm[16];
      unpack_scales_mins(w + 4, sm);
      const __m128i smv = _mm_load_si128(reinterpret_cast<const __m128i*>(sm));
      const __m512i sm4 = _mm512_broadcast_i32x4(smv);
      const uint8_t* qs = w + (kFifthBit ? kQ5KQs : kQ4KQs);
      __m512i qh = _mm512_setzero_si512();
      if (kFifthBit) {
        const __m256i h = load256(w + kQ5KQh);
        qh = join(h, _mm256_srli_epi16(h, 1));
      }
      __m512i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        const __m256i q = load256(qs + 32 * j);
        __m512i wq = join(_mm256_and_si256(q, low4), _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
        if (kFifthBit) {
          wq = _mm512_or_si512(wq, _mm512_slli_epi16(_mm512_and_si512(qh, bit0), 4));
          qh = _mm512_srli_epi16(qh, 2);  // bits stay inside their byte up to the last pair
        }
        const __m512i s = _mm512_shuffle_epi8(sm4, _mm512_add_epi16(pick, _mm512_set1_epi16(static_cast<int16_t>(2 * j))));
        for (int t = 0; t < NT; ++t) {
          const __m512i p = _mm512_maddubs_epi16(wq, load512(xs[t][b].qs + 64 * j));
          isum[t] = _mm512_dpwssd_epi32(isum[t], p, s);
        }
      }
      // The min term: lane s = min_s * (bsums[2s] + bsums[2s+1]).
      const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(smv, smv));
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K& a = xs[t][b];
        const __m256i msum = _mm256_madd_epi16(load256(a.bsums), mins);
        acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a.d * d), _mm512_cvtepi32_ps(isum[t]), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_set1_ps(a.d * dmin), _mm512_cvtepi32_ps(zext(msum)), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
  }
};

// Q6_K: per half of 128 elements, ql[0..63] as one vector and [qh | qh >> 2] beside it give the
// elements 0..63 (low nibbles, qh bits 0-1 and 2-3) and 64..127 (high nibbles, bits 4-5 and 6-7)
// in order. Each 64 elements are four sub-blocks of 16: the scale of sub-block 4k + i / 8 in int16
// lane i (vpermw from the 16 scales).
struct Q6K {
  template <int NT>
  static void row(const uint8_t* w, const BlockQ8_K* const* xs, int64_t nb, float* out) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i bits01 = _mm512_set1_epi8(0x03), bits45 = _mm512_set1_epi8(0x30);
    // lane i -> i / 8 (as int16), plus 4k for the k-th 64 elements.
    const __m512i groups = _mm512_cvtepu8_epi16(
        _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0));
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += kQ6KBytes) {
      const float d = half(w + kQ6KD);
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + kQ6KScales)));
      const __m512i sc = zext(sc16);
      __m512i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = load512(w + 64 * h);
        const __m256i qh256 = load256(w + kQ6KQh + 32 * h);
        const __m512i qh = join(qh256, _mm256_srli_epi16(qh256, 2));
        const __m512i run[2] = {
            _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_slli_epi16(_mm512_and_si512(qh, bits01), 4)),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), _mm512_and_si512(qh, bits45)),
        };
        for (int c = 0; c < 2; ++c) {
          const int k = 2 * h + c;  // elements 64k..64k+63, sub-blocks 4k..4k+3
          const __m512i s = _mm512_permutexvar_epi16(_mm512_add_epi16(groups, _mm512_set1_epi16(4 * k)), sc);
          for (int t = 0; t < NT; ++t) {
            const __m512i p = _mm512_maddubs_epi16(run[c], load512(xs[t][b].qs + 64 * k));
            isum[t] = _mm512_dpwssd_epi32(isum[t], p, s);
          }
        }
      }
      // q - 32: subtract 32 * sum_s scale_s * bsums[s].
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K& a = xs[t][b];
        const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load256(a.bsums), sc16), 5);
        const __m512i sum = _mm512_sub_epi32(isum[t], zext(offset));
        acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(a.d * d), _mm512_cvtepi32_ps(sum), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
  }
};

}  // namespace

void register_kquant_avx512(IsaKernels& k) {
  register_kquant_tiles(k, kquant_tile<Q45K<false>>, kquant_tile<Q45K<true>>, kquant_tile<Q6K>, quantize_q8_k);
}

}  // namespace jarvis::cpu::quant
