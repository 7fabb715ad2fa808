// CUDA kernels against the CPU backend on the same inputs. Every test skips, saying so, when no
// CUDA device is present (CI has none); on a GPU machine they run under `ctest -L gpu`.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/norm.h"
#include "tests/gpu/gpu_test_util.h"

namespace jarvis {
namespace {

using cuda::DType;
using namespace gpu_test;

class CudaKernels : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!have_cuda_device()) GTEST_SKIP() << "no CUDA device found: GPU test skipped";
  }
};

TEST_P(CudaKernels, RmsNormMatchesCpu) {
  const DType t = GetParam();
  cpu::ThreadPool pool(1);
  for (int64_t cols : {64, 576, 1000, 4096}) {
    const int64_t rows = 7;
    auto x = decode(encode(random_values(rows * cols, 1), t), t);
    auto w = random_values(cols, 2);
    std::vector<float> want(x.size());
    cpu::rmsnorm(x.data(), w.data(), want.data(), rows, cols, 1e-5f, pool);

    auto x_bytes = encode(x, t);
    DeviceBuffer dx(x_bytes.size()), dw(cols * 4), dout(x_bytes.size());
    upload(dx, x_bytes.data(), x_bytes.size());
    upload(dw, w.data(), cols * 4);
    ASSERT_EQ(cuda::rmsnorm(t, dx.ptr, static_cast<float*>(dw.ptr), dout.ptr, rows, cols, 1e-5f, nullptr),
              cudaSuccess);
    std::vector<uint8_t> out(x_bytes.size());
    ASSERT_EQ(cudaMemcpy(out.data(), dout.ptr, out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    expect_close(decode(out, t), want, tolerance(t));
  }
}

TEST_P(CudaKernels, AddRmsNormUpdatesResidual) {
  const DType t = GetParam();
  cpu::ThreadPool pool(1);
  const int64_t rows = 5, cols = 576;
  auto x = decode(encode(random_values(rows * cols, 3), t), t);
  auto res = decode(encode(random_values(rows * cols, 4), t), t);
  auto w = random_values(cols, 5);
  std::vector<float> sum(x.size()), want(x.size());
  for (size_t i = 0; i < x.size(); ++i) sum[i] = decode(encode({x[i] + res[i]}, t), t)[0];
  cpu::rmsnorm(sum.data(), w.data(), want.data(), rows, cols, 1e-6f, pool);

  auto xb = encode(x, t), rb = encode(res, t);
  DeviceBuffer dx(xb.size()), dr(rb.size()), dw(cols * 4), dout(xb.size());
  upload(dx, xb.data(), xb.size());
  upload(dr, rb.data(), rb.size());
  upload(dw, w.data(), cols * 4);
  ASSERT_EQ(cuda::add_rmsnorm(t, dx.ptr, dr.ptr, static_cast<float*>(dw.ptr), dout.ptr, rows, cols, 1e-6f,
                              nullptr),
            cudaSuccess);
  std::vector<uint8_t> out(xb.size()), res_out(rb.size());
  ASSERT_EQ(cudaMemcpy(out.data(), dout.ptr, out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(res_out.data(), dr.ptr, rb.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  expect_close(decode(res_out, t), sum, tolerance(t));
  expect_close(decode(out, t), want, tolerance(t));
}

TEST_P(CudaKernels, GatedActivationsMatchCpu) {
  const DType t = GetParam();
  cpu::ThreadPool pool(1);
  const int64_t rows = 3, cols = 1536;
  auto gate = decode(encode(random_values(rows * cols, 6), t), t);
  auto up = decode(encode(random_values(rows * cols, 7), t), t);
  for (auto act : {cuda::GatedActivation::kSilu, cuda::GatedActivation::kGeluTanh}) {
    std::vector<float> want(gate.size());
    if (act == cuda::GatedActivation::kSilu) {
      cpu::silu_mul(gate.data(), up.data(), want.data(), rows * cols, pool);
    } else {
      cpu::gelu_tanh_mul(gate.data(), up.data(), want.data(), rows * cols, pool);
    }
    auto gb = encode(gate, t), ub = encode(up, t);
    DeviceBuffer dg(gb.size()), du(ub.size()), dout(gb.size());
    upload(dg, gb.data(), gb.size());
    upload(du, ub.data(), ub.size());
    ASSERT_EQ(cuda::gated_activation(act, t, dg.ptr, du.ptr, dout.ptr, rows, cols, nullptr), cudaSuccess);
    std::vector<uint8_t> out(gb.size());
    ASSERT_EQ(cudaMemcpy(out.data(), dout.ptr, out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    expect_close(decode(out, t), want, tolerance(t));
  }
}

TEST_P(CudaKernels, LaunchersRejectBadArguments) {
  const DType t = GetParam();
  EXPECT_EQ(cuda::rmsnorm(t, nullptr, nullptr, nullptr, 1, 64, 1e-5f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::gated_activation(cuda::GatedActivation::kSilu, t, nullptr, nullptr, nullptr, 1, 0, nullptr),
            cudaErrorInvalidValue);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CudaKernels, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) {
                           return info.param == DType::kF32 ? "f32" : info.param == DType::kF16 ? "f16" : "bf16";
                         });

}  // namespace
}  // namespace jarvis
