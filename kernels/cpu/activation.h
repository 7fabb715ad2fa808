// Gated feed-forward activations: out = act(gate) * up, element-wise.
#pragma once

#include <cstdint>

namespace jarvis::cpu {

class ThreadPool;

// SwiGLU (LLaMA, Qwen2): out[i] = gate[i] * sigmoid(gate[i]) * up[i]. out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n, ThreadPool& pool);

// GeGLU with the tanh approximation of GELU (Gemma's gelu_pytorch_tanh):
// out[i] = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) * up[i]. out may alias gate or up.
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, ThreadPool& pool);

}  // namespace jarvis::cpu
