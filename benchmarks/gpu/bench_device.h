// What the GPU benchmarks share: the device's nominal peaks (from its clocks and bus width) and
// device-time measurement of back-to-back launches between two CUDA events. Header only, so that
// run_all.sh's direct g++ build (one benchmark .cpp at a time) needs nothing more.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <string>

namespace jarvis::bench {

struct Device {
  std::string name;
  int sms = 0, major = 0;
  size_t l2 = 0;              // L2 cache bytes
  double peak_bw = 0;         // bytes/s from the memory clock and bus width
  double peak_fp32 = 0;       // FLOP/s of the SIMT fp32 pipes
  double peak_tensor16 = 0;   // dense fp16/bf16 tensor-core FLOP/s (what a tuned kernel targets)
};

// False, with the skip line printed, when there is no CUDA device to measure.
inline bool cuda_device_found() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device found: benchmark skipped\n");
    return false;
  }
  return true;
}

// The current device's name, size and nominal peaks.
inline Device query_device() {
  Device d;
  int dev = 0, mem_khz = 0, bus_bits = 0, clock_khz = 0, l2 = 0;
  cudaGetDevice(&dev);
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, dev);
  d.name = prop.name;
  d.sms = prop.multiProcessorCount;
  d.major = prop.major;
  cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev);
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev);
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
  d.l2 = static_cast<size_t>(l2);
  d.peak_bw = 2.0 * mem_khz * 1e3 * bus_bits / 8;  // double data rate
  d.peak_fp32 = d.sms * 128.0 * 2 * clock_khz * 1e3;
  // Dense fp16 tensor FLOP per SM per clock: 2048 on sm_80 (A100 312 TF), 4096 on sm_90 (H100 989 TF).
  d.peak_tensor16 = d.sms * (d.major >= 9 ? 4096.0 : 2048.0) * clock_khz * 1e3;
  return d;
}

// Device milliseconds per call of `launch(i)` for i in [0, iters), launched back to back on
// `stream` between two events (warm-up is the caller's); the first error stops it and is returned.
template <class Launch>
cudaError_t time_launches(cudaStream_t stream, int iters, const Launch& launch, double& ms_per_call) {
  cudaEvent_t t0 = nullptr, t1 = nullptr;
  cudaError_t err = cudaEventCreate(&t0);
  if (err == cudaSuccess) err = cudaEventCreate(&t1);
  if (err == cudaSuccess) err = cudaEventRecord(t0, stream);
  for (int i = 0; err == cudaSuccess && i < iters; ++i) err = launch(i);
  if (err == cudaSuccess) err = cudaEventRecord(t1, stream);
  if (err == cudaSuccess) err = cudaEventSynchronize(t1);
  float total_ms = 0;
  if (err == cudaSuccess) err = cudaEventElapsedTime(&total_ms, t0, t1);
  if (t0) cudaEventDestroy(t0);
  if (t1) cudaEventDestroy(t1);
  ms_per_call = static_cast<double>(total_ms) / iters;
  return err;
}

}  // namespace jarvis::bench
