// K-quant kernels for the scalar path: portable C++ (builds on any architecture). Compiled with
// that ISA's flags only; see quant_kernels.h for the contract and kquant_common.h for the layouts.
//
// Per super-block, with the activation x = dx * qx (BlockQ8_K) and integer sums per sub-block s:
//   Q4_K/Q5_K: dot = dx * (d * sum_s scale_s * sum(q * qx) - dmin * sum_s min_s * sum(qx))
//   Q6_K:      dot = dx * d * sum_s scale_s * (sum(q * qx) - 32 * sum(qx))
// where sum(qx) over a sub-block comes from the block's bsums, never from qx itself.
#include <cmath>
#include <limits>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/quant/kquant_common.h"

namespace jarvis::cpu::quant {
namespace {

float half(const uint8_t* p) { return fp16_to_fp32(load_u16(p)); }

// The quantization rule of quant_kernels.h, which every ISA follows bit for bit.
void quantize_q8_k(const float* x, void* out, int64_t cols) {
  auto* y = static_cast<BlockQ8_K*>(out);
  for (int64_t b = 0; b < cols / kSuper; ++b, x += kSuper) {
    float amax = 0.0f;
    for (int i = 0; i < kSuper; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    float d = amax / 127.0f;
    if (d < std::numeric_limits<float>::min()) d = 0.0f;  // 1/d would overflow: a zero block
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = d;
    for (int i = 0; i < kSuper; ++i) y[b].qs[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[16 * j + i];
      y[b].bsums[j] = static_cast<int16_t>(s);
    }
  }
}

// sum over 32 elements of q * qx.
inline int dot32(const uint8_t* q, const int8_t* qx) {
  int s = 0;
  for (int l = 0; l < 32; ++l) s += q[l] * qx[l];
  return s;
}

// Q4_K and Q5_K differ only in the 4- or 5-bit quants: the row kernel unpacks them to bytes, once
// per weight block, then runs the same integer sums for every activation row.
template <bool kFifthBit>
struct Q45K {
  template <int NT>
  static void row(const uint8_t* w, const BlockQ8_K* const* xs, int64_t nb, float* out) {
    float acc[NT] = {};
    const size_t block_bytes = kFifthBit ? kQ5KBytes : kQ4KBytes;
    for (int64_t b = 0; b < nb; ++b, w += block_bytes) {
      const float d = half(w), dmin = half(w + 2);
      uint8_t sm[16];
      unpack_scales_mins(w + 4, sm);
      const uint8_t* qs = w + (kFifthBit ? kQ5KQs : kQ4KQs);
      // Simple loops without branches, so that compilers vectorize them for any target.
      uint8_t q[kSuper];
      for (int j = 0; j < 4; ++j) {
        for (int l = 0; l < 32; ++l) {
          q[64 * j + l] = static_cast<uint8_t>(qs[32 * j + l] & 0x0f);
          q[64 * j + 32 + l] = static_cast<uint8_t>(qs[32 * j + l] >> 4);
        }
      }
      if (kFifthBit) {
        const uint8_t* qh = w + kQ5KQh;
        for (int s = 0; s < 8; ++s) {
          for (int l = 0; l < 32; ++l) q[32 * s + l] = static_cast<uint8_t>(q[32 * s + l] | (((qh[l] >> s) & 1) << 4));
        }
      }
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K& a = xs[t][b];
        int sum = 0, msum = 0;
        for (int s = 0; s < 8; ++s) {
          sum += sm[s] * dot32(q + 32 * s, a.qs + 32 * s);
          msum += sm[8 + s] * (a.bsums[2 * s] + a.bsums[2 * s + 1]);
        }
        acc[t] += (a.d * d) * static_cast<float>(sum) - (a.d * dmin) * static_cast<float>(msum);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = acc[t];
  }
};

struct Q6K {
  template <int NT>
  static void row(const uint8_t* w, const BlockQ8_K* const* xs, int64_t nb, float* out) {
    float acc[NT] = {};
    for (int64_t b = 0; b < nb; ++b, w += kQ6KBytes) {
      const float d = half(w + kQ6KD);
      const auto* scales = reinterpret_cast<const int8_t*>(w + kQ6KScales);
      // Each half of 128 elements: 64 bytes of ql (low nibbles: quarters 0, 1; high: 2, 3) and 32
      // of qh (two bits per quarter).
      uint8_t q[kSuper];
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = w + 64 * h;
        const uint8_t* qh = w + kQ6KQh + 32 * h;
        for (int l = 0; l < 32; ++l) {
          uint8_t* y = q + 128 * h + l;
          y[0] = static_cast<uint8_t>((ql[l] & 0x0f) | ((qh[l] & 0x03) << 4));
          y[32] = static_cast<uint8_t>((ql[l + 32] & 0x0f) | ((qh[l] & 0x0c) << 2));
          y[64] = static_cast<uint8_t>((ql[l] >> 4) | (qh[l] & 0x30));
          y[96] = static_cast<uint8_t>((ql[l + 32] >> 4) | ((qh[l] & 0xc0) >> 2));
        }
      }
      for (int t = 0; t < NT; ++t) {
        const BlockQ8_K& a = xs[t][b];
        int sum = 0;
        for (int s = 0; s < 16; ++s) {
          int ds = 0;
          for (int l = 0; l < 16; ++l) ds += q[16 * s + l] * a.qs[16 * s + l];
          sum += scales[s] * (ds - 32 * a.bsums[s]);
        }
        acc[t] += (a.d * d) * static_cast<float>(sum);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = acc[t];
  }
};

}  // namespace

void register_kquant_scalar(IsaKernels& k) {
  register_kquant_tiles(k, kquant_tile<Q45K<false>>, kquant_tile<Q45K<true>>, kquant_tile<Q6K>, quantize_q8_k);
}

}  // namespace jarvis::cpu::quant
