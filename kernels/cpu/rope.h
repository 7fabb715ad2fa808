// Rotary position embeddings. Planned once per forward step (a cos/sin table for the step's
// positions), applied per layer to Q and K.
#pragma once

#include <cstdint>
#include <vector>

namespace jarvis::cpu {

// Which dimensions of a head form a rotated pair.
enum class RopePairing {
  kInterleaved,  // (2i, 2i+1): GGUF `llama` files (Q/K rows permuted by the converter)
  kNeox,         // (i, i + rope_dim/2): HF checkpoints, GGUF qwen2 / gemma
};

struct RopeFreqParams {
  int rope_dim = 0;       // rotated dimensions per head (even, <= head_dim)
  double theta = 10000.0; // base
  enum class Scaling { kNone, kLinear, kLlama3 } scaling = Scaling::kNone;
  double factor = 1.0;    // linear: positions / factor; llama3: low-frequency divisor
  double low_freq_factor = 1.0;   // llama3 only
  double high_freq_factor = 4.0;  // llama3 only
  double original_context = 8192; // llama3 only
  // Optional per-pair divisors (GGUF `rope_freqs.weight`, how llama.cpp stores Llama 3.1's
  // scaling); nullptr when absent. [rope_dim / 2]
  const float* freq_divisors = nullptr;
};

// inv_freq[i] = theta^(-2i/rope_dim), adjusted by the scaling. Size rope_dim / 2.
std::vector<double> rope_inv_freq(const RopeFreqParams& p);

// cos_sin[t, i] = (cos(pos[t] * inv_freq[i]), sin(...)) as interleaved float pairs. Angles are
// formed in double: at position 8k a float angle would already be off by ~1e-3 rad.
void rope_cos_sin(const int32_t* positions,    // [n]
                  const std::vector<double>& inv_freq,
                  float* cos_sin,              // [n, rope_dim / 2, 2]
                  int64_t n);

// Rotates the first rope_dim dimensions of every head of n tokens in place.
void rope_apply(float* x,              // [n, n_heads, head_dim]
                const float* cos_sin,  // [n, rope_dim / 2, 2]
                int64_t n, int n_heads, int head_dim, int rope_dim, RopePairing pairing);

}  // namespace jarvis::cpu
