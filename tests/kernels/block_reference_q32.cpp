// The reference for the plain and 32-element block types, written from the GGUF block
// definitions in double precision:
//   F32, F16 (IEEE binary16), BF16 (the top 16 bits of a binary32)
//   Q8_0 {f16 d; i8 qs[32]}                   x_j = d * qs[j]
//   Q4_0 {f16 d; u8 qs[16]}                   x_j = d * (nib_j - 8)
//   Q4_1 {f16 d, m; u8 qs[16]}                x_j = d * nib_j + m
//   Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}         x_j = d * ((nib_j | bit_j << 4) - 16)
//   Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}      x_j = d * (nib_j | bit_j << 4) + m
// where nib_j is the low nibble of qs[j] for j < 16 and the high nibble of qs[j - 16] otherwise,
// and bit_j is bit j of qh read as a little-endian 32-bit word.
#include <cmath>
#include <cstring>

#include "tests/kernels/block_reference.h"

namespace jarvis::test {
namespace {

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

double half(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  if (exp == 0x1f) return man ? NAN : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(man), -24);
  return sign * std::ldexp(1.0 + man / 1024.0, exp - 15);
}

double bfloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

int nibble(const uint8_t* qs, int j) { return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4); }

int bit(const uint8_t* qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }

}  // namespace

bool reference_dequantize_q32(GgmlType type, const uint8_t* b, int64_t n, double* out) {
  switch (type) {
    case GgmlType::F32:
      for (int64_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, b + 4 * i, 4);
        out[i] = f;
      }
      return true;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = half(u16(b + 2 * i));
      return true;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bfloat(u16(b + 2 * i));
      return true;
    default: break;
  }
  for (int64_t blk = 0; blk < n / 32; ++blk) {
    double* o = out + 32 * blk;
    switch (type) {
      case GgmlType::Q8_0: {
        const uint8_t* p = b + 34 * blk;
        for (int j = 0; j < 32; ++j) o[j] = half(u16(p)) * static_cast<int8_t>(p[2 + j]);
        break;
      }
      case GgmlType::Q4_0: {
        const uint8_t* p = b + 18 * blk;
        for (int j = 0; j < 32; ++j) o[j] = half(u16(p)) * (nibble(p + 2, j) - 8);
        break;
      }
      case GgmlType::Q4_1: {
        const uint8_t* p = b + 20 * blk;
        for (int j = 0; j < 32; ++j) o[j] = half(u16(p)) * nibble(p + 4, j) + half(u16(p + 2));
        break;
      }
      case GgmlType::Q5_0: {
        const uint8_t* p = b + 22 * blk;
        for (int j = 0; j < 32; ++j) o[j] = half(u16(p)) * ((nibble(p + 6, j) | bit(p + 2, j) << 4) - 16);
        break;
      }
      case GgmlType::Q5_1: {
        const uint8_t* p = b + 24 * blk;
        for (int j = 0; j < 32; ++j) {
          o[j] = half(u16(p)) * (nibble(p + 8, j) | bit(p + 4, j) << 4) + half(u16(p + 2));
        }
        break;
      }
      default: return false;
    }
  }
  return true;
}

}  // namespace jarvis::test
