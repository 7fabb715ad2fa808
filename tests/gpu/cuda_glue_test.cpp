// The pieces the GPU model adds around the handwritten kernels (cuBLAS GEMMs in the row-major
// layout of the CPU backend, dtype conversion, bias add, RMSNorm from the fp32 residual stream),
// against the CPU backend on the same rounded inputs. Skipped, saying so, without a CUDA device.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "tests/gpu/gpu_test_util.h"

namespace jarvis {
namespace {

using cuda::DType;
using namespace gpu_test;

class CudaGlue : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!have_cuda_device()) GTEST_SKIP() << "no CUDA device found: GPU test skipped";
  }
};

struct Cublas {
  Cublas() { EXPECT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS); }
  ~Cublas() { cublasDestroy(h); }
  cublasHandle_t h = nullptr;
};

// y = x · wᵀ (+ y0) for the projection shapes of SmolLM2 (q, k/v, gate/up, down) and a decode row,
// into the input dtype and into fp32, overwriting and accumulating.
TEST_P(CudaGlue, GemmMatchesCpuMatmul) {
  const DType t = GetParam();
  cpu::ThreadPool pool(1);
  Cublas blas;
  struct Shape { int64_t rows, in, out; };
  for (const Shape s : {Shape{1, 576, 192}, Shape{37, 576, 1536}, Shape{5, 1536, 576}}) {
    const auto x = round_to(random_values(s.rows * s.in, 11), t);
    const auto w = round_to(random_values(s.out * s.in, 12), t);
    const auto y0 = random_values(s.rows * s.out, 13);
    std::vector<float> prod(s.rows * s.out);
    cpu::matmul(x.data(), w.data(), prod.data(), s.rows, s.out, s.in, pool);
    const auto xb = encode(x, t), wb = encode(w, t);
    DeviceBuffer dx(xb.size()), dw(wb.size()), dy(s.rows * s.out * 4);
    upload(dx, xb.data(), xb.size());
    upload(dw, wb.data(), wb.size());
    for (const DType out : {t, DType::kF32}) {
      for (const bool acc : {false, true}) {
        if (acc && out != DType::kF32) continue;  // the model accumulates into fp32 only
        std::vector<float> want = prod;
        if (acc) {
          for (size_t i = 0; i < want.size(); ++i) want[i] += y0[i];
          upload(dy, y0.data(), y0.size() * 4);
        }
        cuda::GemmParams p;
        p.dtype = t;
        p.out_dtype = out;
        p.rows = s.rows;
        p.in = s.in;
        p.out = s.out;
        p.x = dx.ptr;
        p.w = dw.ptr;
        p.y = dy.ptr;
        p.accumulate = acc;
        ASSERT_EQ(cuda::gemm(blas.h, p), CUBLAS_STATUS_SUCCESS);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const auto got = decode(download(dy, want.size() * elem_size(out)), out);
        // Products of rounded inputs are exact in fp32; only the fp32 sum order differs (~sqrt(K)
        // ulps of |want|), then one rounding to the output dtype: tolerance(out) covers both.
        SCOPED_TRACE(::testing::Message() << s.rows << "x" << s.in << "->" << s.out << " out "
                                          << dtype_name(out) << (acc ? " +=" : ""));
        expect_close(got, want, out == DType::kF32 ? 1e-4f : tolerance(out));
      }
    }
  }
}

TEST_P(CudaGlue, ConvertAndBiasMatchHostRounding) {
  const DType t = GetParam();
  const int64_t rows = 7, cols = 300;
  const auto x = random_values(rows * cols, 21);
  DeviceBuffer d32(x.size() * 4), dt(x.size() * elem_size(t)), back(x.size() * 4);
  upload(d32, x.data(), x.size() * 4);
  ASSERT_EQ(cuda::convert(DType::kF32, d32.ptr, t, dt.ptr, rows * cols, 3.0f, nullptr), cudaSuccess);
  std::vector<float> scaled(x.size());
  for (size_t i = 0; i < x.size(); ++i) scaled[i] = x[i] * 3.0f;
  const auto want = round_to(scaled, t);  // one round-to-nearest-even, as the kernel does
  expect_close(decode(download(dt, x.size() * elem_size(t)), t), want, 1e-7f);
  ASSERT_EQ(cuda::convert(t, dt.ptr, DType::kF32, back.ptr, rows * cols, 0.5f, nullptr), cudaSuccess);
  std::vector<float> half_back(want.size());
  for (size_t i = 0; i < want.size(); ++i) half_back[i] = want[i] * 0.5f;  // exact: a power of two
  expect_close(decode(download(back, x.size() * 4), DType::kF32), half_back, 1e-7f);

  const auto bias = random_values(cols, 22);
  DeviceBuffer db(cols * 4);
  upload(db, bias.data(), cols * 4);
  ASSERT_EQ(cuda::add_bias(t, dt.ptr, static_cast<const float*>(db.ptr), rows, cols, nullptr), cudaSuccess);
  std::vector<float> biased(want.size());
  for (size_t i = 0; i < want.size(); ++i) biased[i] = want[i] + bias[i % cols];
  expect_close(decode(download(dt, x.size() * elem_size(t)), t), round_to(biased, t), 1e-7f);
}

TEST_P(CudaGlue, RmsNormFromF32MatchesCpu) {
  const DType t = GetParam();
  cpu::ThreadPool pool(1);
  for (int64_t cols : {576, 2048}) {
    const int64_t rows = 9;
    auto x = random_values(rows * cols, 31);
    for (float& v : x) v *= 40.0f;  // residual streams grow well past 1
    const auto w = random_values(cols, 32);
    std::vector<float> want(x.size());
    cpu::rmsnorm(x.data(), w.data(), want.data(), rows, cols, 1e-5f, pool);
    DeviceBuffer dx(x.size() * 4), dw(cols * 4), dout(x.size() * elem_size(t));
    upload(dx, x.data(), x.size() * 4);
    upload(dw, w.data(), cols * 4);
    ASSERT_EQ(cuda::rmsnorm_f32_in(t, static_cast<const float*>(dx.ptr), static_cast<const float*>(dw.ptr), dout.ptr,
                                   rows, cols, 1e-5f, nullptr),
              cudaSuccess);
    expect_close(decode(download(dout, x.size() * elem_size(t)), t), want, tolerance(t));
  }
}

TEST_P(CudaGlue, LaunchersRejectBadArguments) {
  const DType t = GetParam();
  Cublas blas;
  cuda::GemmParams p;
  p.dtype = t;
  p.out_dtype = t == DType::kF16 ? DType::kBF16 : DType::kF16;  // neither the input dtype nor f32
  p.rows = 1, p.in = 8, p.out = 8;
  int dummy = 0;
  p.x = p.w = &dummy;
  p.y = &dummy;
  EXPECT_EQ(cuda::gemm(blas.h, p), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cuda::add_bias(t, nullptr, nullptr, 1, 8, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::convert(t, nullptr, t, nullptr, 4, 1.0f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rmsnorm_f32_in(t, nullptr, nullptr, nullptr, 1, 8, 1e-5f, nullptr), cudaErrorInvalidValue);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CudaGlue, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace jarvis
