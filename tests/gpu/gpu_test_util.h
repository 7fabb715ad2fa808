// Helpers shared by the GPU tests: device detection, dtype encoding on the host, device buffers.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include "kernels/cpu/dequant.h"
#include "kernels/cuda/cuda_check.h"

namespace jarvis::gpu_test {

using cuda::DType;

inline bool have_cuda_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

inline uint16_t fp32_to_bf16(float f) {  // round to nearest even, as __float2bfloat16_rn
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline size_t elem_size(DType t) { return t == DType::kF32 ? 4 : 2; }

// Host values rounded to the device dtype, so the CPU reference sees exactly what the GPU sees.
inline std::vector<uint8_t> encode(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * elem_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = t == DType::kF16 ? cpu::fp32_to_fp16(v[i]) : fp32_to_bf16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

inline std::vector<float> decode(const std::vector<uint8_t>& b, DType t) {
  std::vector<float> out(b.size() / elem_size(t));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(&out[i], b.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      out[i] = t == DType::kF16 ? cpu::fp16_to_fp32(h) : cpu::bf16_to_fp32(h);
    }
  }
  return out;
}

inline std::vector<float> round_to(const std::vector<float>& v, DType t) { return decode(encode(v, t), t); }

// Relative tolerance: one rounding of the output to the dtype (2^-24, 2^-11, 2^-8) plus float
// accumulation-order differences, with a factor of 4 of headroom.
inline float tolerance(DType t) { return t == DType::kF32 ? 1e-5f : t == DType::kF16 ? 4e-3f : 3e-2f; }

inline const char* dtype_name(DType t) { return t == DType::kF32 ? "f32" : t == DType::kF16 ? "f16" : "bf16"; }

struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes) { EXPECT_EQ(cudaMalloc(&ptr, bytes == 0 ? 1 : bytes), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(ptr); }
  void* ptr = nullptr;
};

inline void* upload(DeviceBuffer& d, const void* src, size_t bytes) {
  EXPECT_EQ(cudaMemcpy(d.ptr, src, bytes, cudaMemcpyHostToDevice), cudaSuccess);
  return d.ptr;
}

inline std::vector<uint8_t> download(const DeviceBuffer& d, size_t bytes) {
  std::vector<uint8_t> out(bytes);
  EXPECT_EQ(cudaMemcpy(out.data(), d.ptr, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

inline std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rel_tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel_tol * (1.0f + std::fabs(want[i]))) << "at " << i;
  }
}

}  // namespace jarvis::gpu_test

namespace jarvis::cuda {
// GoogleTest prints parameters through this (found by argument-dependent lookup), so test names
// read "... # GetParam() = f16" rather than a byte dump.
inline void PrintTo(DType t, std::ostream* os) { *os << gpu_test::dtype_name(t); }
}  // namespace jarvis::cuda
