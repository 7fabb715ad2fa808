// The K-quants (256-element super-blocks) decoded in double precision from ggml's block
// definitions: block_q4_K, block_q5_K, block_q6_K. Written from the field layouts alone, one
// element at a time, so it shares no unpacking code (nor its loop structure) with kernels/cpu.
#include <cmath>
#include <cstring>

#include "tests/kernels/block_reference.h"

namespace jarvis::test {
namespace {

// IEEE binary16 from its fields: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m.
double half_value(const uint8_t* p) {
  const unsigned h = p[0] | (p[1] << 8);
  const int sign = (h >> 15) ? -1 : 1;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  if (e == 31) return m ? std::nan("") : sign * HUGE_VAL;
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

// The 6-bit scale and min of sub-block j (0..7) of Q4_K/Q5_K's 12 packed bytes `k`:
// j < 4: scale = k[j] low 6 bits, min = k[j + 4] low 6 bits;
// j >= 4: low 4 bits from k[j + 4] (scale: low nibble, min: high nibble), high 2 bits from the
// top two bits of k[j - 4] (scale) and k[j] (min).
void packed_scale_min(const uint8_t* k, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = k[j] % 64;
    *min = k[j + 4] % 64;
  } else {
    *scale = k[j + 4] % 16 + 16 * (k[j - 4] / 64);
    *min = k[j + 4] / 16 + 16 * (k[j] / 64);
  }
}

// block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128]; } (144 bytes).
// Element i: sub-block j = i / 32, position l = i % 32; its nibble is in qs[32 * (j / 2) + l],
// the low nibble for even j, the high one for odd j. x = d * scale_j * q - dmin * min_j.
void q4_k(const uint8_t* b, double* out) {
  const double d = half_value(b), dmin = half_value(b + 2);
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32, l = i % 32;
    int scale, min;
    packed_scale_min(b + 4, j, &scale, &min);
    const uint8_t byte = b[16 + 32 * (j / 2) + l];
    const int q = (j % 2 == 0) ? byte % 16 : byte / 16;
    out[i] = d * scale * q - dmin * min;
  }
}

// block_q5_K { half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; } (176 bytes).
// As Q4_K, plus bit j of qh[l] as the fifth (value 16) bit of element l of sub-block j.
void q5_k(const uint8_t* b, double* out) {
  const double d = half_value(b), dmin = half_value(b + 2);
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32, l = i % 32;
    int scale, min;
    packed_scale_min(b + 4, j, &scale, &min);
    const uint8_t byte = b[48 + 32 * (j / 2) + l];
    const int low = (j % 2 == 0) ? byte % 16 : byte / 16;
    const int high = (b[16 + l] >> j) & 1;
    out[i] = d * scale * (low + 16 * high) - dmin * min;
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; } (210 bytes).
// Element i: half h = i / 128, r = i % 128, quarter c = r / 32, position l = r % 32. Its low 4
// bits are a nibble of ql[64 h + l + 32 (c % 2)] (low nibble for c < 2, high for c >= 2), its high
// 2 bits are bits 2c, 2c+1 of qh[32 h + l]. Sub-block of 16: i / 16. x = d * scale * (q - 32).
void q6_k(const uint8_t* b, double* out) {
  const double d = half_value(b + 208);
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, r = i % 128, c = r / 32, l = r % 32;
    const uint8_t lbyte = b[64 * h + l + 32 * (c % 2)];
    const int low = c < 2 ? lbyte % 16 : lbyte / 16;
    const int high = (b[128 + 32 * h + l] >> (2 * c)) & 3;
    const int8_t scale = static_cast<int8_t>(b[192 + i / 16]);
    out[i] = d * scale * (low + 16 * high - 32);
  }
}

}  // namespace

bool reference_dequantize_kquant(GgmlType type, const uint8_t* blocks, int64_t n, double* out) {
  void (*decode)(const uint8_t*, double*) = nullptr;
  size_t block_bytes = 0;
  switch (type) {
    case GgmlType::Q4_K: decode = q4_k, block_bytes = 144; break;
    case GgmlType::Q5_K: decode = q5_k, block_bytes = 176; break;
    case GgmlType::Q6_K: decode = q6_k, block_bytes = 210; break;
    default: return false;
  }
  for (int64_t b = 0; b < n / 256; ++b) decode(blocks + b * block_bytes, out + b * 256);
  return true;
}

}  // namespace jarvis::test
