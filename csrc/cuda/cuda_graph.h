// Owner of an instantiated CUDA graph (cudaGraphExec_t): destroyed with its owner, movable.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace jarvis {

class GraphExec {
 public:
  GraphExec() = default;
  ~GraphExec() { reset(); }
  GraphExec(GraphExec&& o) noexcept : exec_(std::exchange(o.exec_, nullptr)) {}
  GraphExec& operator=(GraphExec&& o) noexcept {
    if (this != &o) reset(std::exchange(o.exec_, nullptr));
    return *this;
  }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;

  void reset(cudaGraphExec_t e = nullptr) {
    if (exec_) cudaGraphExecDestroy(exec_);
    exec_ = e;
  }
  cudaGraphExec_t get() const { return exec_; }
  explicit operator bool() const { return exec_ != nullptr; }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace jarvis
