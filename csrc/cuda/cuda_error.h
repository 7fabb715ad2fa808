// CUDA and cuBLAS failures as engine errors: one macro checks either status type and throws a
// CudaError naming the call, the status and where it was made. Out-of-memory failures of our own
// allocations throw DeviceOutOfMemory, which says what was asked and what the device had free.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "csrc/util/error.h"

namespace jarvis {

class CudaError : public Error {
 public:
  using Error::Error;
};

class DeviceOutOfMemory : public CudaError {
 public:
  using CudaError::CudaError;
};

[[noreturn]] void throw_cuda_error(const char* call, const std::string& status, const char* file, int line);

inline void cuda_check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) {
    throw_cuda_error(call, std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")", file, line);
  }
}

inline void cuda_check(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw_cuda_error(call, std::string(cublasGetStatusName(s)) + " (" + cublasGetStatusString(s) + ")", file, line);
  }
}

// "1.5 GiB free of 80.0 GiB on cuda:0": what an out-of-memory message reports.
std::string device_memory_summary();

std::string format_bytes(size_t bytes);

}  // namespace jarvis

#define JARVIS_CUDA_CHECK(call) ::jarvis::cuda_check((call), #call, __FILE__, __LINE__)
