#include "kernels/cpu/dequant.h"

#include <cstring>

// Block layouts follow ggml's block_* structs byte for byte (all little-endian, fp16 scales).
// The arithmetic order matches ggml's reference dequantizers (and the NumPy ones of the `gguf`
// package), so results are bit-identical: a product and a sum are kept in separate statements so
// that no compiler fuses them into an FMA, which would round differently.

namespace jarvis::cpu {
namespace {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

inline uint32_t load_u32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

// Branch-free (selects only) so that the F16 row loop vectorises. NaN payloads are kept as is,
// not quieted: no float arithmetic touches a NaN.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  // Normal numbers: move the fields up and rebias the exponent from 15 to 127.
  uint32_t normal = (em << 13) + ((127u - 15u) << 23);
  // Inf and NaN: the exponent must become all ones (255 = 31 + 112 + 112).
  normal += em >= 0x7c00u ? ((127u - 15u) << 23) : 0u;
  // Zero and subnormals: mantissa * 2^-24 is exact in float.
  const uint32_t subnormal = float_bits(static_cast<float>(em) * 0x1p-24f);
  return bits_float(sign | (em < 0x0400u ? subnormal : normal));
}

inline float load_half(const uint8_t* p) { return half_to_float(load_u16(p)); }

void dequant_f16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = load_half(src + 2 * i);
}

void dequant_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bits_float(uint32_t{load_u16(src + 2 * i)} << 16);
}

// block_q4_0 { half d; uint8 qs[16]; }: low nibbles are elements 0..15, high nibbles 16..31.
void dequant_q4_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += 32) {
    const float d = load_half(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
      dst[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// block_q4_1 { half d; half m; uint8 qs[16]; }: x = q * d + m.
void dequant_q4_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 20, dst += 32) {
    const float d = load_half(src);
    const float m = load_half(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      const float lo = static_cast<float>(qs[j] & 0x0f) * d;
      const float hi = static_cast<float>(qs[j] >> 4) * d;
      dst[j] = lo + m;
      dst[j + 16] = hi + m;
    }
  }
}

// block_q5_0 { half d; uint8 qh[4]; uint8 qs[16]; }: bit j of qh is the fifth bit of element j.
void dequant_q5_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 22, dst += 32) {
    const float d = load_half(src);
    const uint32_t qh = load_u32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int hi1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      dst[j] = static_cast<float>(((qs[j] & 0x0f) | hi0) - 16) * d;
      dst[j + 16] = static_cast<float>(((qs[j] >> 4) | hi1) - 16) * d;
    }
  }
}

// block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16]; }: x = q * d + m.
void dequant_q5_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 24, dst += 32) {
    const float d = load_half(src);
    const float m = load_half(src + 2);
    const uint32_t qh = load_u32(src + 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int hi1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      const float lo = static_cast<float>((qs[j] & 0x0f) | hi0) * d;
      const float hi = static_cast<float>((qs[j] >> 4) | hi1) * d;
      dst[j] = lo + m;
      dst[j + 16] = hi + m;
    }
  }
}

// block_q8_0 { half d; int8 qs[32]; }.
void dequant_q8_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 34, dst += 32) {
    const float d = load_half(src);
    const int8_t* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(qs[j]) * d;
  }
}

// Q4_K's 8 sub-block scales and mins, 6 bits each, packed into 12 bytes: bytes 0..3 hold the low
// 6 bits of scales 0..3 (top 2 bits: high bits of scales 4..7), bytes 4..7 the same for the mins,
// bytes 8..11 the low nibbles of scales 4..7 (low half) and of mins 4..7 (high half).
inline void q4_k_scale_min(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }: 8 sub-blocks of 32,
// x = (d * scale) * q - (dmin * min). Each 32 bytes of qs hold two sub-blocks (low, high nibbles).
// block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }: the same plus
// a fifth bit per element (bit s of qh[l] belongs to element l of sub-block s), q in 0..31.
template <bool kFifthBit>
void dequant_q4_q5_k(const uint8_t* src, float* dst, int64_t nb) {
  constexpr size_t kBlockBytes = kFifthBit ? 176 : 144;
  for (int64_t b = 0; b < nb; ++b, src += kBlockBytes, dst += kQK_K) {
    const float d = load_half(src);
    const float dmin = load_half(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* qs = src + (kFifthBit ? 48 : 16);
    for (int s = 0; s < 8; s += 2) {
      int sc0, m0, sc1, m1;
      q4_k_scale_min(s, scales, &sc0, &m0);
      q4_k_scale_min(s + 1, scales, &sc1, &m1);
      const float d0 = d * static_cast<float>(sc0);
      const float min0 = dmin * static_cast<float>(m0);
      const float d1 = d * static_cast<float>(sc1);
      const float min1 = dmin * static_cast<float>(m1);
      const uint8_t* q = qs + 16 * s;
      float* y = dst + 32 * s;
      for (int l = 0; l < 32; ++l) {
        int q0 = q[l] & 0x0f, q1 = q[l] >> 4;
        if (kFifthBit) {
          q0 |= ((qh[l] >> s) & 1) << 4;
          q1 |= ((qh[l] >> (s + 1)) & 1) << 4;
        }
        const float lo = d0 * static_cast<float>(q0);
        const float hi = d1 * static_cast<float>(q1);
        y[l] = lo - min0;
        y[l + 32] = hi - min1;
      }
    }
  }
}

// block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }: 16 sub-blocks of 16,
// x = (d * scale) * (q - 32), q = 4 low bits from ql and 2 high bits from qh. Each half of the
// super-block (128 elements) uses 64 bytes of ql and 32 of qh.
void dequant_q6_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 210, dst += kQK_K) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = load_half(src + 208);
    float ds[16];
    for (int i = 0; i < 16; ++i) ds[i] = d * static_cast<float>(sc[i]);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32) {
      float* y = dst + 128 * half;
      const float* dh = ds + 8 * half;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = dh[is + 0] * static_cast<float>(q1);
        y[l + 32] = dh[is + 2] * static_cast<float>(q2);
        y[l + 64] = dh[is + 4] * static_cast<float>(q3);
        y[l + 96] = dh[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

bool dequantize_row(GgmlType type, const void* src_v, float* dst, int64_t n) {
  const GgmlTypeTraits* traits = ggml_type_traits(static_cast<uint32_t>(type));
  if (!traits || !traits->supported || n < 0 || n % traits->block_elems != 0) return false;
  const auto* src = static_cast<const uint8_t*>(src_v);
  const int64_t nb = n / traits->block_elems;
  switch (type) {
    case GgmlType::F32:
      if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return true;
    case GgmlType::F16: dequant_f16(src, dst, n); return true;
    case GgmlType::BF16: dequant_bf16(src, dst, n); return true;
    case GgmlType::Q4_0: dequant_q4_0(src, dst, nb); return true;
    case GgmlType::Q4_1: dequant_q4_1(src, dst, nb); return true;
    case GgmlType::Q5_0: dequant_q5_0(src, dst, nb); return true;
    case GgmlType::Q5_1: dequant_q5_1(src, dst, nb); return true;
    case GgmlType::Q8_0: dequant_q8_0(src, dst, nb); return true;
    case GgmlType::Q4_K: dequant_q4_q5_k<false>(src, dst, nb); return true;
    case GgmlType::Q5_K: dequant_q4_q5_k<true>(src, dst, nb); return true;
    case GgmlType::Q6_K: dequant_q6_k(src, dst, nb); return true;
    default: return false;
  }
}

float fp16_to_fp32(uint16_t h) { return half_to_float(h); }

float bf16_to_fp32(uint16_t b) { return bits_float(uint32_t{b} << 16); }

uint16_t fp32_to_fp16(float f) {
  uint32_t x = float_bits(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) {
    // NaN: keep the top payload bits and make it quiet, as the F16C instruction does.
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x03ffu));
  }
  // 65520 = 65504 + half an ulp: the tie rounds to the even neighbour, which is infinity.
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (x >= 0x38800000u) {  // >= 2^-14: a normal half
    // Rebias the exponent, then round the 13 dropped bits to nearest even; a carry out of the
    // mantissa correctly bumps the exponent.
    const uint32_t rebiased = x - ((127u - 15u) << 23);
    const uint32_t rounded = rebiased + 0x0fffu + ((rebiased >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rounded >> 13));
  }
  // Subnormal or zero: 0.5 has an ulp of 2^-24, the half subnormal step, so the FPU's own
  // round-to-nearest-even does the rounding; the result may round up to the smallest normal.
  const float sum = bits_float(x) + 0.5f;
  return static_cast<uint16_t>(sign | (float_bits(sum) - float_bits(0.5f)));
}

}  // namespace jarvis::cpu
