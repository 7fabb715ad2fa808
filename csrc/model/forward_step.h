// What one forward step over a shard needs beyond the weights: the per-step plan (built once,
// used by every layer) and reusable scratch buffers (so decode steps do not allocate).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/attention.h"

namespace jarvis {

struct ModelConfig;

// Built once per step from the BatchView; every layer reuses it.
struct StepPlan {
  int n_tokens = 0;
  std::vector<int32_t> positions;             // [n_tokens]
  std::vector<float> rope_cos_sin;            // [n_tokens, rope_dim / 2, 2]
  std::vector<cpu::PagedSequence> sequences;  // point into the BatchView's block tables
};

// Activation scratch for one step, grown to the largest step seen and then kept.
struct Workspace {
  std::vector<float> norm;      // [n, hidden]
  std::vector<float> q;         // [n, q_dim]
  std::vector<float> k, v;      // [n, kv_dim]
  std::vector<float> attn;      // [n, q_dim]
  std::vector<float> gate;      // [n, ffn]: act(gate) * up (the residual adds go straight into hidden)

  void reserve(const ModelConfig& c, int n_tokens);
};

}  // namespace jarvis
