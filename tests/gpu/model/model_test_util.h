// Helpers shared by the model-level GPU tests (tests/gpu/model/): the skip line every test prints
// without a device, and the random weights of synthetic models.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "csrc/model/weights.h"

namespace jarvis::model_test {

inline bool have_cuda_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Entries ~ N(0, scale^2 / cols): a product with a unit-variance row keeps about unit variance,
// so activations stay O(1) through a few layers whatever the sizes.
inline Matrix random_matrix(int64_t rows, int64_t cols, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale / std::sqrt(static_cast<float>(cols)));
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.data.resize(rows * cols);
  for (float& x : m.data) x = d(rng);
  return m;
}

inline std::vector<float> random_vector(int64_t n, std::mt19937& rng, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace jarvis::model_test

#define SKIP_WITHOUT_GPU() \
  if (!::jarvis::model_test::have_cuda_device()) GTEST_SKIP() << "no CUDA device found: GPU test skipped"
