#include "csrc/cuda/device_memory.h"

#include "csrc/cuda/cuda_error.h"

namespace jarvis {

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::grow(size_t bytes, const char* what) {
  if (bytes <= bytes_ && ptr_) return;
  release();
  const cudaError_t e = cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    ptr_ = nullptr;
    throw DeviceOutOfMemory("out of device memory: " + std::string(what) + " asked for " + format_bytes(bytes) +
                            ", " + device_memory_summary());
  }
  if (e != cudaSuccess) ptr_ = nullptr;
  cuda_check(e, what, __FILE__, __LINE__);
  bytes_ = bytes;
}

void DeviceBuffer::release() {
  if (ptr_) cudaFree(ptr_);  // errors here are a prior sticky fault, already reported
  ptr_ = nullptr;
  bytes_ = 0;
}

CudaStream::CudaStream() { JARVIS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }

CudaStream::~CudaStream() {
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaStream::synchronize() const { JARVIS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

CublasHandle::CublasHandle(cudaStream_t stream) {
  JARVIS_CUDA_CHECK(cublasCreate(&handle_));
  const cublasStatus_t s = cublasSetStream(handle_, stream);
  if (s != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle_);
    JARVIS_CUDA_CHECK(s);
  }
}

CublasHandle::~CublasHandle() {
  if (handle_) cublasDestroy(handle_);
}

}  // namespace jarvis
