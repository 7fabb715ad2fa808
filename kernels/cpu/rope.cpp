#include "kernels/cpu/rope.h"

#include <cmath>

namespace jarvis::cpu {

std::vector<double> rope_inv_freq(const RopeFreqParams& p) {
  const int half = p.rope_dim / 2;
  std::vector<double> inv(half);
  constexpr double kPi = 3.14159265358979323846;
  for (int i = 0; i < half; ++i) {
    double f = std::pow(p.theta, -2.0 * i / p.rope_dim);
    switch (p.scaling) {
      case RopeFreqParams::Scaling::kNone: break;
      case RopeFreqParams::Scaling::kLinear: f /= p.factor; break;
      case RopeFreqParams::Scaling::kLlama3: {
        // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, a smooth ramp
        // between the two wavelength thresholds.
        const double low_wavelen = p.original_context / p.low_freq_factor;
        const double high_wavelen = p.original_context / p.high_freq_factor;
        const double wavelen = 2 * kPi / f;
        if (wavelen > low_wavelen) {
          f /= p.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth = (p.original_context / wavelen - p.low_freq_factor) /
                                (p.high_freq_factor - p.low_freq_factor);
          f = (1 - smooth) * f / p.factor + smooth * f;
        }
        break;
      }
    }
    if (p.freq_divisors) f /= p.freq_divisors[i];
    inv[i] = f;
  }
  return inv;
}

void rope_cos_sin(const int32_t* positions, const std::vector<double>& inv_freq, float* cos_sin,
                  int64_t n) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = positions[t] * inv_freq[i];
      cos_sin[(t * half + i) * 2] = static_cast<float>(std::cos(a));
      cos_sin[(t * half + i) * 2 + 1] = static_cast<float>(std::sin(a));
    }
  }
}

void rope_apply(float* x, const float* cos_sin, int64_t n, int n_heads, int head_dim, int rope_dim,
                RopePairing pairing) {
  const int half = rope_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = cos_sin + t * half * 2;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      // Pair i is (a, b) = (v[ia], v[ib]) rotated by angle i: (a c - b s, a s + b c).
      const int stride = pairing == RopePairing::kInterleaved ? 2 : 1;
      const int offset = pairing == RopePairing::kInterleaved ? 1 : half;
      for (int i = 0; i < half; ++i) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float* a = v + i * stride;
        float* b = a + offset;
        const float a0 = *a, b0 = *b;
        *a = a0 * c - b0 * s;
        *b = a0 * s + b0 * c;
      }
    }
  }
}

}  // namespace jarvis::cpu
