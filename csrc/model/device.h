// Where a shard runs (the --device flag: "cpu" or "cuda:N") and how a GPU shard is made. This
// header needs no CUDA: in a build without the CUDA backend make_cuda_shard throws, saying so.
#pragma once

#include <memory>
#include <string>

#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"

namespace jarvis {

struct DeviceSpec {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // cuda:N

  bool is_cuda() const { return kind == Kind::kCuda; }
  std::string str() const;
};

// "cpu", "cuda" (= cuda:0) or "cuda:N"; InvalidArgument otherwise.
DeviceSpec parse_device(const std::string& text);

// Weights and activations on the GPU; accumulation is fp32 in every case. kF32 is for debugging
// (it matches the CPU to float rounding), kF16 the default, kBF16 for models whose activations
// overflow fp16.
enum class GpuDType { kF16, kBF16, kF32 };

GpuDType parse_gpu_dtype(const std::string& text);  // "f16"/"fp16"/"float16", "bf16", "f32"
const char* gpu_dtype_name(GpuDType t);

struct CudaShardOptions {
  int device = 0;
  GpuDType dtype = GpuDType::kF16;
  // KV cache budget: this fraction of the device memory free once weights and scratch are in.
  double gpu_memory_fraction = 0.9;
  int page_size = 16;
  // 0: as many pages as the budget holds; otherwise exactly this many, and DeviceOutOfMemory
  // (saying what was asked and what is free) when they do not fit in the budget.
  int num_blocks = 0;
  // Scratch is sized for steps of up to this many tokens at load, so a long prefill later does
  // not find the memory taken by the KV cache; larger steps still work when memory is left.
  int max_step_tokens = 512;
  // Decode steps (every sequence one token) replay a CUDA graph captured once per batch-size
  // bucket instead of launching ~12 kernels per layer; off runs the same launches eagerly.
  bool cuda_graphs = true;
};

// True when this binary was built with the CUDA backend (-DJARVIS_CUDA=ON or AUTO with nvcc).
bool cuda_backend_built();

// Throws (Error, saying why) unless cuda:index exists and this binary can use it: cheap, so tools
// call it before a slow model load.
void check_cuda_device(int index);

// Uploads the shard of `model` (its weights stay on the host too) and allocates the KV cache on
// the device. Throws Error when the binary has no CUDA backend or the device does not exist,
// DeviceOutOfMemory when the weights or the cache do not fit.
std::unique_ptr<ShardForward> make_cuda_shard(const Model& model, const CudaShardOptions& options);

}  // namespace jarvis
