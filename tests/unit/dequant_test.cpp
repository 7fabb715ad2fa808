// fp32 -> fp16 rounding and dequantize_row's argument checks. (Dequantization values are checked
// bit for bit against the `gguf` package in tests/python/test_dequant.py.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "kernels/cpu/dequant.h"

namespace jarvis::cpu {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Independent reference: the two representable halves around |x| (found by search over the
// 31745 non-negative finite halves, whose values are exact: 2^-24 * m * 2^e), then nearest, ties to
// the even encoding. Distances are exact in double because every half and float is a multiple of
// 2^-149 below 2^17.
uint16_t reference_fp32_to_fp16(float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return 0;  // not used for NaN
  const double a = std::fabs(static_cast<double>(x));
  auto half_value = [](uint16_t h) {
    const int e = h >> 10, m = h & 0x3ff;
    return e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  };
  if (a >= 65520.0) return sign | 0x7c00;  // past the midpoint of 65504 and 2^16: infinity
  uint16_t lo = 0, hi = 0x7bff;  // largest half <= a
  while (lo < hi) {
    const uint16_t mid = static_cast<uint16_t>((lo + hi + 1) / 2);
    if (half_value(mid) <= a) lo = mid; else hi = static_cast<uint16_t>(mid - 1);
  }
  if (half_value(lo) == a) return sign | lo;
  const uint16_t up = static_cast<uint16_t>(lo + 1);  // 0x7c00 (inf) cannot be reached below 65520
  const double d_lo = a - half_value(lo), d_up = half_value(up) - a;
  if (d_lo < d_up) return sign | lo;
  if (d_up < d_lo) return sign | up;
  return sign | ((lo & 1) ? up : lo);
}

std::vector<float> interesting_floats() {
  std::vector<float> v;
  // A stride through all bit patterns (both signs, every exponent).
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 4099) v.push_back(from_bits(static_cast<uint32_t>(u)));
  // Every half, the midpoints between neighbours (ties) and the floats right beside them.
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    const float next = h + 1 < 0x7c00 ? fp16_to_fp32(static_cast<uint16_t>(h + 1)) : 65536.0f;
    const float mid = static_cast<float>((static_cast<double>(f) + next) / 2);  // exact in float
    for (float x : {f, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      v.push_back(x);
      v.push_back(-x);
    }
  }
  for (float x : {65504.0f, 65519.99f, 65520.0f, 1e10f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 1e-45f}) v.push_back(x);
  return v;
}

TEST(Fp16, ConversionMatchesRoundToNearestEven) {
  for (float x : interesting_floats()) {
    if (std::isnan(x)) continue;  // NaNs are compared with the hardware below
    ASSERT_EQ(fp32_to_fp16(x), reference_fp32_to_fp16(x)) << "x = " << x << " bits " << std::hex << bits(x);
  }
}

#if defined(__x86_64__)
// The F16C conversion instruction as a second, hardware reference (also for NaNs), compiled for
// F16C here whatever the build flags and run only where the CPU has it.
__attribute__((target("f16c"))) uint16_t hardware_fp32_to_fp16(float x) {
  const __m128i h = _mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT);
  return static_cast<uint16_t>(_mm_cvtsi128_si32(h) & 0xffff);
}

bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

TEST(Fp16, ConversionMatchesF16cHardware) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "CPU without F16C";
  for (float x : interesting_floats()) {
    ASSERT_EQ(fp32_to_fp16(x), hardware_fp32_to_fp16(x)) << "x = " << x << " bits " << std::hex << bits(x);
  }
  // NaNs: quiet, sign and top payload bits kept.
  for (uint32_t u : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fa00000u, 0xff812345u, 0x7fffffffu}) {
    EXPECT_EQ(fp32_to_fp16(from_bits(u)), hardware_fp32_to_fp16(from_bits(u))) << std::hex << u;
  }
}
#endif

TEST(Fp16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 && !(h & 0x200)) continue;  // signalling NaN
    ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(bits(bf16_to_fp32(0x3f80)), 0x3f800000u);
  EXPECT_EQ(bits(bf16_to_fp32(0xff81)), 0xff810000u);
}

TEST(Dequant, RejectsBadArguments) {
  std::vector<uint8_t> src(1024, 0);
  std::vector<float> dst(64, 42.0f);
  EXPECT_FALSE(dequantize_row(GgmlType::Q4_0, src.data(), dst.data(), 48));   // not whole blocks
  EXPECT_FALSE(dequantize_row(GgmlType::Q4_K, src.data(), dst.data(), 32));
  EXPECT_FALSE(dequantize_row(GgmlType::Q5_K, src.data(), dst.data(), 128));
  EXPECT_FALSE(dequantize_row(GgmlType::Q2_K, src.data(), dst.data(), 256));  // unsupported
  EXPECT_FALSE(dequantize_row(static_cast<GgmlType>(99), src.data(), dst.data(), 32));
  EXPECT_FALSE(dequantize_row(GgmlType::F32, src.data(), dst.data(), -1));
  EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](float f) { return f == 42.0f; }));
  EXPECT_TRUE(dequantize_row(GgmlType::F32, src.data(), dst.data(), 0));
  EXPECT_TRUE(dequantize_row(GgmlType::Q8_0, src.data(), dst.data(), 64));
  EXPECT_EQ(dst[63], 0.0f);
}

// Q5_K's fifth bit, from a block written by hand: d = 1, dmin = 0.5, every sub-block scale 2 and
// min 3 (6-bit fields: bytes 0..7 hold them directly, bytes 8..11 the low nibbles of scales and
// mins 4..7), nibbles q[l] = l % 16, and qh bit s set for odd l only, so element l of sub-block s
// is 2 * (l % 16 + 16 * (l & 1)) - 1.5. (Random blocks are compared with `gguf` in test_dequant.py.)
TEST(Dequant, Q5KFifthBitAndScales) {
  std::vector<uint8_t> block(176, 0);
  block[0] = 0x00, block[1] = 0x3c;  // d = 1.0 (fp16 0x3c00)
  block[2] = 0x00, block[3] = 0x38;  // dmin = 0.5 (fp16 0x3800)
  for (int j = 0; j < 4; ++j) block[4 + j] = 2, block[8 + j] = 3, block[12 + j] = 0x32;
  for (int l = 0; l < 32; ++l) block[16 + l] = (l & 1) ? 0xff : 0x00;
  for (int i = 0; i < 128; ++i) {
    const int l = i % 32;  // both nibbles of qs[i] belong to element l of their sub-blocks
    block[48 + i] = static_cast<uint8_t>((l % 16) | ((l % 16) << 4));
  }
  std::vector<float> out(256);
  ASSERT_TRUE(dequantize_row(GgmlType::Q5_K, block.data(), out.data(), 256));
  for (int i = 0; i < 256; ++i) {
    const int l = i % 32;
    EXPECT_EQ(out[i], 2.0f * static_cast<float>(l % 16 + 16 * (l & 1)) - 1.5f) << "element " << i;
  }
}

}  // namespace
}  // namespace jarvis::cpu
