// Random weights for synthetic models in tests (CPU unit tests and GPU model tests alike; no CUDA
// here): normal entries scaled so that activations stay O(1) through a few layers.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/model/weights.h"

namespace jarvis::model_test {

// Entries ~ N(0, scale^2 / cols): a product with a unit-variance row keeps about unit variance,
// so activations stay O(1) through a few layers whatever the sizes.
inline Matrix random_matrix(int64_t rows, int64_t cols, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale / std::sqrt(static_cast<float>(cols)));
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& x : v) x = d(rng);
  return Matrix::from_f32(v.data(), rows, cols);
}

inline std::vector<float> random_vector(int64_t n, std::mt19937& rng, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// The seven projections of a layer (q, k, v, o, gate, up, down), drawn in that order, so every
// synthetic model that draws them through here gets the same weights as before it did.
inline void random_projections(LayerWeights& lw, const ModelConfig& c, std::mt19937& rng) {
  lw.wq = random_matrix(c.q_dim(), c.hidden, rng);
  lw.wk = random_matrix(c.kv_dim(), c.hidden, rng);
  lw.wv = random_matrix(c.kv_dim(), c.hidden, rng);
  lw.wo = random_matrix(c.hidden, c.q_dim(), rng);
  lw.w_gate = random_matrix(c.ffn_hidden, c.hidden, rng);
  lw.w_up = random_matrix(c.ffn_hidden, c.hidden, rng);
  lw.w_down = random_matrix(c.hidden, c.ffn_hidden, rng);
}

}  // namespace jarvis::model_test
