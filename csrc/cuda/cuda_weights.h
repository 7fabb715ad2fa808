// A shard's weights on the device: matrices in the compute dtype, norm weights and biases in
// fp32 (the kernels read them as float). Same shapes as csrc/model/weights.h.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "csrc/cuda/device_memory.h"
#include "csrc/model/config.h"
#include "csrc/model/weights.h"
#include "kernels/cuda/cuda_check.h"

namespace jarvis {

struct CudaLayerWeights {
  DeviceBuffer attn_norm;             // [hidden] f32
  DeviceBuffer wq, wk, wv, wo;        // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  DeviceBuffer bq, bk, bv;            // qwen2 only, f32: [q_dim], [kv_dim], [kv_dim]
  DeviceBuffer ffn_norm;              // [hidden] f32
  DeviceBuffer w_gate, w_up, w_down;  // [ffn, hidden] x2, [hidden, ffn]
};

struct CudaWeights {
  DeviceBuffer embedding;  // [vocab, hidden]; when the shard has the embedding or a tied head
  std::vector<CudaLayerWeights> layers;
  DeviceBuffer output_norm;  // [hidden] f32; when the shard has the head
  DeviceBuffer lm_head;      // [vocab, hidden]; empty when tied (then `embedding` is the head)
  size_t bytes = 0;

  const DeviceBuffer& head() const { return lm_head.get() ? lm_head : embedding; }
};

// Uploads `w` (fp32 on the host), converting matrices to `dtype` on the device through a bounded
// staging buffer. Throws InvalidArgument on a shape that disagrees with the config,
// DeviceOutOfMemory when a tensor does not fit.
CudaWeights upload_weights(const ModelConfig& c, const ShardSpec& shard, const ModelWeights& w,
                           cuda::DType dtype, cudaStream_t stream);

}  // namespace jarvis
