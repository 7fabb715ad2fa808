// Helpers shared by the model-level GPU tests (tests/gpu/model/): the skip line every test prints
// without a device, and (tests/common/random_weights.h) the random weights of synthetic models.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "tests/common/random_weights.h"

namespace jarvis::model_test {

inline bool have_cuda_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace jarvis::model_test

#define SKIP_WITHOUT_GPU() \
  if (!::jarvis::model_test::have_cuda_device()) GTEST_SKIP() << "no CUDA device found: GPU test skipped"
