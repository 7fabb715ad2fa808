// q32 kernels for the portable path: F32/F16/BF16 rows against float activations, and the 32-element
// block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) against 8-bit activation blocks. Integer sums per
// block are exact, so this path differs from the SIMD ones only in the order of float additions.
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {
namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal half: value = man * 2^-24, exactly representable as a float
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---- activation quantizers (the rule in quant_kernels.h, element by element) ----

// Quantizes one block of 32; returns sum(qs).
int quantize_block(const float* x, float& d, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  d = amax / 127.0f;
  if (d < std::numeric_limits<float>::min()) d = 0.0f;  // 1/d would overflow: a zero block
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    qs[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
    sum += qs[j];
  }
  return sum;
}

void quantize_q8_0(const float* x, void* out, int64_t cols) {
  auto* b = static_cast<BlockQ8_0*>(out);
  for (int64_t i = 0; i < cols / 32; ++i) quantize_block(x + 32 * i, b[i].d, b[i].qs);
}

void quantize_q8_1(const float* x, void* out, int64_t cols) {
  auto* b = static_cast<BlockQ8_1*>(out);
  for (int64_t i = 0; i < cols / 32; ++i) {
    const int sum = quantize_block(x + 32 * i, b[i].d, b[i].qs);
    b[i].s = b[i].d * static_cast<float>(sum);
  }
}

// ---- weight blocks decoded to signed integers: value_j = d * q[j] + m ----

struct Decoded {
  int q[32];
  float d, m;
};

template <GgmlType T>
struct BlockOf;
template <>
struct BlockOf<GgmlType::Q8_0> {
  static constexpr size_t kBytes = 34;
  using Act = BlockQ8_0;
  static void decode(const uint8_t* b, Decoded& o) {
    o.d = half_to_float(load_u16(b));
    o.m = 0.0f;
    for (int j = 0; j < 32; ++j) o.q[j] = static_cast<int8_t>(b[2 + j]);
  }
};
template <>
struct BlockOf<GgmlType::Q4_0> {
  static constexpr size_t kBytes = 18;
  using Act = BlockQ8_0;
  static void decode(const uint8_t* b, Decoded& o) {
    o.d = half_to_float(load_u16(b));
    o.m = 0.0f;
    for (int j = 0; j < 16; ++j) {
      o.q[j] = (b[2 + j] & 0x0f) - 8;
      o.q[j + 16] = (b[2 + j] >> 4) - 8;
    }
  }
};
template <>
struct BlockOf<GgmlType::Q4_1> {
  static constexpr size_t kBytes = 20;
  using Act = BlockQ8_1;
  static void decode(const uint8_t* b, Decoded& o) {
    o.d = half_to_float(load_u16(b));
    o.m = half_to_float(load_u16(b + 2));
    for (int j = 0; j < 16; ++j) {
      o.q[j] = b[4 + j] & 0x0f;
      o.q[j + 16] = b[4 + j] >> 4;
    }
  }
};
template <>
struct BlockOf<GgmlType::Q5_0> {
  static constexpr size_t kBytes = 22;
  using Act = BlockQ8_0;
  static void decode(const uint8_t* b, Decoded& o) {
    o.d = half_to_float(load_u16(b));
    o.m = 0.0f;
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    for (int j = 0; j < 16; ++j) {
      o.q[j] = ((b[6 + j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16;
      o.q[j + 16] = ((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
    }
  }
};
template <>
struct BlockOf<GgmlType::Q5_1> {
  static constexpr size_t kBytes = 24;
  using Act = BlockQ8_1;
  static void decode(const uint8_t* b, Decoded& o) {
    o.d = half_to_float(load_u16(b));
    o.m = half_to_float(load_u16(b + 2));
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    for (int j = 0; j < 16; ++j) {
      o.q[j] = (b[8 + j] & 0x0f) | (((qh >> j) & 1) << 4);
      o.q[j + 16] = (b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    }
  }
};

float act_sum(const BlockQ8_0&) { return 0.0f; }  // unused: these weight types have no min
float act_sum(const BlockQ8_1& a) { return a.s; }

void store(float* y, int64_t ldy, int r, int t, float v, bool accumulate) {
  float& dst = y[t * ldy + r];
  dst = accumulate ? dst + v : v;
}

// Each weight block is decoded once for all nt activation rows of the tile.
template <GgmlType T>
void tile_blocks(const uint8_t* w, size_t w_stride, int nr, const uint8_t* x, size_t x_stride, int nt,
                 int64_t cols, float* y, int64_t ldy, bool accumulate) {
  using B = BlockOf<T>;
  using Act = typename B::Act;
  float acc[kTileRows][kTileTokens] = {};
  Decoded dec;
  for (int64_t b = 0; b < cols / 32; ++b) {
    for (int r = 0; r < nr; ++r) {
      B::decode(w + r * w_stride + b * B::kBytes, dec);
      for (int t = 0; t < nt; ++t) {
        const Act& a = reinterpret_cast<const Act*>(x + t * x_stride)[b];
        int isum = 0;
        for (int j = 0; j < 32; ++j) isum += dec.q[j] * a.qs[j];
        acc[r][t] += dec.d * a.d * static_cast<float>(isum) + dec.m * act_sum(a);
      }
    }
  }
  for (int r = 0; r < nr; ++r)
    for (int t = 0; t < nt; ++t) store(y, ldy, r, t, acc[r][t], accumulate);
}

float load_f32(const uint8_t* row, int64_t i) {
  float v;
  std::memcpy(&v, row + 4 * i, 4);
  return v;
}
float load_f16(const uint8_t* row, int64_t i) { return half_to_float(load_u16(row + 2 * i)); }
float load_bf16(const uint8_t* row, int64_t i) { return bf16_to_float(load_u16(row + 2 * i)); }

template <float (*Load)(const uint8_t*, int64_t)>
void tile_float(const uint8_t* w, size_t w_stride, int nr, const uint8_t* x, size_t x_stride, int nt,
                int64_t cols, float* y, int64_t ldy, bool accumulate) {
  for (int r = 0; r < nr; ++r) {
    const uint8_t* row = w + r * w_stride;
    for (int t = 0; t < nt; ++t) {
      const auto* xt = reinterpret_cast<const float*>(x + t * x_stride);
      float s[4] = {0, 0, 0, 0};  // independent partial sums (cols is a multiple of 32 or any n)
      int64_t i = 0;
      for (; i + 4 <= cols; i += 4)
        for (int k = 0; k < 4; ++k) s[k] += Load(row, i + k) * xt[i + k];
      for (; i < cols; ++i) s[0] += Load(row, i) * xt[i];
      store(y, ldy, r, t, (s[0] + s[1]) + (s[2] + s[3]), accumulate);
    }
  }
}

// g / (1 + exp(-a)) with a = g (SiLU) or a = 2 sqrt(2/pi) (g + 0.044715 g^3) (GELU-tanh).
template <bool kGelu>
void gate_act(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float a = kGelu ? 1.5957691216057308f * (g + 0.044715f * g * g * g) : g;
    out[i] = g / (1.0f + std::exp(-a)) * up[i];
  }
}

int idx(GgmlType t) { return static_cast<int>(t); }

}  // namespace

void register_q32_scalar(IsaKernels& k) {
  k.tile[idx(GgmlType::F32)] = tile_float<load_f32>;
  k.tile[idx(GgmlType::F16)] = tile_float<load_f16>;
  k.tile[idx(GgmlType::BF16)] = tile_float<load_bf16>;
  k.tile[idx(GgmlType::Q8_0)] = tile_blocks<GgmlType::Q8_0>;
  k.tile[idx(GgmlType::Q4_0)] = tile_blocks<GgmlType::Q4_0>;
  k.tile[idx(GgmlType::Q4_1)] = tile_blocks<GgmlType::Q4_1>;
  k.tile[idx(GgmlType::Q5_0)] = tile_blocks<GgmlType::Q5_0>;
  k.tile[idx(GgmlType::Q5_1)] = tile_blocks<GgmlType::Q5_1>;
  k.quantize[static_cast<int>(ActFormat::kQ8_0)] = quantize_q8_0;
  k.quantize[static_cast<int>(ActFormat::kQ8_1)] = quantize_q8_1;
  k.gate[static_cast<int>(GateKind::kSilu)] = gate_act<false>;
  k.gate[static_cast<int>(GateKind::kGeluTanh)] = gate_act<true>;
}

}  // namespace jarvis::cpu::quant
