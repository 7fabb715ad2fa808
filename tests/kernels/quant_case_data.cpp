#include "tests/kernels/quant_case_data.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace jarvis::test {

const std::vector<WeightSpec>& weight_specs() {
  static const std::vector<WeightSpec> specs = {
      {GgmlType::F32, 1, 4, {}, 0},
      {GgmlType::F16, 1, 2, {}, 0},
      {GgmlType::BF16, 1, 2, {}, 0},
      {GgmlType::Q8_0, 32, 34, {0}, 128},
      {GgmlType::Q4_0, 32, 18, {0}, 8},
      {GgmlType::Q4_1, 32, 20, {0, 2}, 15},
      {GgmlType::Q5_0, 32, 22, {0}, 16},
      {GgmlType::Q5_1, 32, 24, {0, 2}, 31},
  };
  return specs;
}

uint16_t random_half(std::mt19937& rng, int lo, int hi, bool positive_only) {
  std::uniform_int_distribution<int> exp(lo + 15, hi + 14), man(0, 1023), sign(0, 1);
  const int s = positive_only ? 0 : sign(rng);
  return static_cast<uint16_t>((s << 15) | (exp(rng) << 10) | man(rng));
}

namespace {

uint16_t random_bf16(std::mt19937& rng) {
  std::uniform_int_distribution<int> exp(127 - 6, 127 + 1), man(0, 127), sign(0, 1);
  return static_cast<uint16_t>((sign(rng) << 15) | (exp(rng) << 7) | man(rng));
}

}  // namespace

std::vector<uint8_t> random_weights(const WeightSpec& spec, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t n = static_cast<size_t>(rows * cols / spec.block_elems);
  std::vector<uint8_t> out(n * spec.block_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  if (spec.type == GgmlType::F32) {
    std::normal_distribution<float> g(0.0f, 0.5f);
    for (size_t i = 0; i < n; ++i) {
      const float v = g(rng);
      std::memcpy(&out[4 * i], &v, 4);
    }
    return out;
  }
  for (size_t i = 0; i < n; ++i) {
    uint8_t* b = &out[i * spec.block_bytes];
    if (spec.type == GgmlType::F16 || spec.type == GgmlType::BF16) {
      const uint16_t h = spec.type == GgmlType::F16 ? random_half(rng, -6, 2) : random_bf16(rng);
      std::memcpy(b, &h, 2);
      continue;
    }
    for (size_t k = 0; k < spec.block_bytes; ++k) b[k] = static_cast<uint8_t>(byte(rng));
    // The first scale is the block's step (positive in practice, any sign is valid); later ones
    // (mins) carry either sign.
    for (size_t k = 0; k < spec.f16_offsets.size(); ++k) {
      const uint16_t h = random_half(rng, -10, -3, k == 0 && (i % 3 != 0));
      std::memcpy(b + spec.f16_offsets[k], &h, 2);
    }
  }
  return out;
}

std::vector<float> random_activations(int64_t n, int64_t cols, std::mt19937& rng) {
  std::vector<float> x(static_cast<size_t>(n * cols));
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> scale(-6, 4), kind(0, 15);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c0 = 0; c0 < cols; c0 += 32) {
      const int k = kind(rng);
      const float s = std::ldexp(1.0f, scale(rng));
      for (int64_t c = c0; c < std::min(cols, c0 + 32); ++c) {
        float v = k == 0 ? 0.0f : s * g(rng);
        if (k == 1 && c == c0 + 5) v = 40.0f * s;  // an outlier that sets the block's scale
        x[static_cast<size_t>(t * cols + c)] = v;
      }
    }
  }
  return x;
}

float reference_quantize_block(const float* x, int len, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < len; ++j) amax = std::max(amax, std::fabs(x[j]));
  float d = amax / 127.0f;
  if (d < std::numeric_limits<float>::min()) d = 0.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < len; ++j) q[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
  return d;
}

}  // namespace jarvis::test
