// K-quant kernels for the AVX2 path (AVX2 + FMA + F16C; this file alone is compiled with them).
// The sums are those of kquant_scalar.cpp. Integer products: maddubs (unsigned quants times the
// signed 8-bit activations, pairs summed to int16: at most 2 * 63 * 127, no saturation), then madd
// with the sub-block scale broadcast to int16 (pairs summed to int32). Per activation row, one
// int32 vector per super-block, folded into a float vector accumulator with d * dx.
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

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// The rule of quant_kernels.h: the same float operations as the scalar path, eight at a time
// (cvtps_epi32 rounds to nearest even under the default MXCSR, as nearbyint does).
void quantize_q8_k(const float* x, void* out, int64_t cols) {
  auto* y = static_cast<BlockQ8_K*>(out);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < cols / kSuper; ++b, x += kSuper) {
    __m256 vmax = _mm256_setzero_ps();
    for (int i = 0; i < kSuper; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(abs_mask, _mm256_loadu_ps(x + i)));
    float d = hmax(vmax) / 127.0f;
    if (d < std::numeric_limits<float>::min()) d = 0.0f;  // 1/d would overflow: a zero block
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    y[b].d = d;
    for (int i = 0; i < kSuper; i += 32) {
      const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), id));
      const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), id));
      const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), id));
      const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), id));
      y[b].bsums[i / 16] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q0, q1)));
      y[b].bsums[i / 16 + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q2, q3)));
      // The packs work within 128-bit lanes: the result holds 4-element groups in the order
      // q0 q1 q2 q3 (low lane) then q0 q1 q2 q3 (high lane); the permutation restores 0..31.
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + i), _mm256_permutevar8x32_epi32(p, order));
    }
  }
}

// Q4_K and Q5_K: per pair of sub-blocks, 32 bytes of qs give sub-block 2j (low nibbles) and
// 2j+1 (high nibbles); for Q5_K bit s of qh[l] adds 16 to element l of sub-block s.
template <bool kFifthBit>
struct Q45K {
  template <int NT>
  static void row(const uint8_t* w, const BlockQ8_K* const* xs, int64_t nb, float* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i bit0 = _mm256_set1_epi8(0x01), bit1 = _mm256_set1_epi8(0x02);
    // A scale s as int16 in every lane: pshufb of the scale bytes with index bytes (s, 0x80), the
    // 0x80 zeroing each lane's high byte.
    const __m256i pick = _mm256_set1_epi16(static_cast<int16_t>(0x8000));
    const size_t block_bytes = kFifthBit ? kQ5KBytes : kQ4KBytes;
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += block_bytes) {
      const float d = half(w), dmin = half(w + 2);
      alignas(16) uint8_t sm[16];
      unpack_scales_mins(w + 4, sm);
      const __m128i smv = _mm_load_si128(reinterpret_cast<const __m128i*>(sm));
      const __m256i sm2 = _mm256_broadcastsi128_si256(smv);
      const uint8_t* qs = w + (kFifthBit ? kQ5KQs : kQ4KQs);
      __m256i qh = kFifthBit ? load256(w + kQ5KQh) : _mm256_setzero_si256();
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const __m256i q = load256(qs + 32 * j);
        __m256i q_lo = _mm256_and_si256(q, low4);
        __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if (kFifthBit) {
          // Bits 0 and 1 of each byte are sub-blocks 2j and 2j+1 once qh is shifted by 2j; the
          // 16-bit shifts keep them inside their byte.
          q_lo = _mm256_or_si256(q_lo, _mm256_slli_epi16(_mm256_and_si256(qh, bit0), 4));
          q_hi = _mm256_or_si256(q_hi, _mm256_slli_epi16(_mm256_and_si256(qh, bit1), 3));
          qh = _mm256_srli_epi16(qh, 2);
        }
        const __m256i s_lo = _mm256_shuffle_epi8(sm2, _mm256_add_epi16(pick, _mm256_set1_epi16(static_cast<int16_t>(2 * j))));
        const __m256i s_hi = _mm256_shuffle_epi8(sm2, _mm256_add_epi16(pick, _mm256_set1_epi16(static_cast<int16_t>(2 * j + 1))));
        for (int t = 0; t < NT; ++t) {
          const int8_t* a = xs[t][b].qs + 64 * j;
          const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(q_lo, load256(a)), s_lo);
          const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(q_hi, load256(a + 32)), s_hi);
          isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p_lo, p_hi));
        }
      }
      // The min term: lane s = min_s * (bsums[2s] + bsums[2s+1]), each min repeated for its two
      // 16-element sums.
      const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(smv, smv));
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K& a = xs[t][b];
        const __m256i msum = _mm256_madd_epi16(load256(a.bsums), mins);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * d), _mm256_cvtepi32_ps(isum[t]), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(a.d * dmin), _mm256_cvtepi32_ps(msum), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

// Q6_K: per half of 128 elements, ql[0..31], ql[32..63] and qh[0..31] give four runs of 32
// elements (low nibbles of both ql halves, then high nibbles) with two qh bits each. Run k covers
// sub-blocks 2k and 2k+1 (16 elements each): int16 lanes 0..7 and 8..15 after maddubs.
struct Q6K {
  template <int NT>
  static void row(const uint8_t* w, const BlockQ8_K* const* xs, int64_t nb, float* out) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i bits01 = _mm256_set1_epi8(0x03), bits23 = _mm256_set1_epi8(0x0c), bits45 = _mm256_set1_epi8(0x30);
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += kQ6KBytes) {
      const float d = half(w + kQ6KD);
      const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + kQ6KScales));
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = load256(w + 64 * h), ql1 = load256(w + 64 * h + 32);
        const __m256i qh = load256(w + kQ6KQh + 32 * h);
        const __m256i run[4] = {
            _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, bits01), 4)),
            _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_slli_epi16(_mm256_and_si256(qh, bits23), 2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45)),
        };
        for (int c = 0; c < 4; ++c) {
          const int k = 4 * h + c;  // sub-blocks 2k, 2k+1
          const __m128i pick = _mm_set_epi64x(0x0101010101010101LL * (2 * k + 1), 0x0101010101010101LL * (2 * k));
          const __m256i s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick));
          for (int t = 0; t < NT; ++t) {
            const __m256i a = load256(xs[t][b].qs + 32 * k);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(run[c], a), s));
          }
        }
      }
      // q - 32: subtract 32 * sum_s scale_s * bsums[s] (lane i holds sub-blocks 2i and 2i+1).
      const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K& a = xs[t][b];
        const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load256(a.bsums), sc16), 5);
        const __m256i sum = _mm256_sub_epi32(isum[t], offset);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(a.d * d), _mm256_cvtepi32_ps(sum), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

}  // namespace

void register_kquant_avx2(IsaKernels& k) {
  register_kquant_tiles(k, kquant_tile<Q45K<false>>, kquant_tile<Q45K<true>>, kquant_tile<Q6K>, quantize_q8_k);
}

}  // namespace jarvis::cpu::quant
