#include "csrc/cuda/cuda_error.h"

#include <cstdio>

namespace jarvis {

void throw_cuda_error(const char* call, const std::string& status, const char* file, int line) {
  // Clears a non-sticky error so the next call does not report it again; a sticky one (a kernel
  // fault) stays and every later call fails, which is what the caller must learn.
  cudaGetLastError();
  throw CudaError(std::string(call) + " failed: " + status + " at " + file + ":" + std::to_string(line));
}

std::string format_bytes(size_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  }
  return buf;
}

std::string device_memory_summary() {
  int device = -1;
  size_t free_b = 0, total_b = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return "device memory unknown";
  }
  return format_bytes(free_b) + " free of " + format_bytes(total_b) + " on cuda:" + std::to_string(device);
}

}  // namespace jarvis
