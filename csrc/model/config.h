// Architecture hyper-parameters of a decoder-only model, whatever file it came from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jarvis {

enum class Arch { kLlama, kQwen2, kGemma };

// How RoPE pairs the dimensions of a head. GGUF `llama` files store Q/K permuted for
// interleaved pairs (2i, 2i+1); HF checkpoints and GGUF qwen2/gemma rotate halves (i, i+d/2).
enum class RopeStyle { kInterleaved, kNeox };

enum class Activation { kSilu, kGeluTanh };  // SwiGLU (llama, qwen2) / GeGLU (gemma)

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;
  // llama3 only
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_context = 8192;
};

// Bytes the weights take held as the file stores them (WeightFormat::kNative): matrices in their
// block types, vectors as float32. Filled by the config readers from tensor headers alone, so memory
// accounting (engine/cluster/placement.h) needs no weights. Empty `layer`: not known (a synthetic
// config); accounting then counts 4 bytes per element.
struct NativeWeightBytes {
  std::vector<int64_t> layer;  // [n_layers]: one transformer block
  int64_t embedding = 0;       // the token embedding matrix
  int64_t head = 0;            // final norm + untied lm_head (the norm alone when tied)
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name;  // as the file names it ("llama", "qwen2", "gemma")
  std::string model_name;
  int n_layers = 0;
  int hidden = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int ffn_hidden = 0;
  int vocab_size = 0;
  int context_length = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int rope_dim = 0;  // dimensions rotated per head (== head_dim for the supported models)
  RopeStyle rope_style = RopeStyle::kNeox;
  RopeScaling rope_scaling;
  Activation activation = Activation::kSilu;
  bool qkv_bias = false;
  bool tied_embeddings = false;
  float embedding_scale = 1.0f;  // gemma multiplies embeddings by sqrt(hidden)
  NativeWeightBytes native_bytes;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Which part of the model a rank holds: layers [first_layer, end_layer), plus the embedding
// (head of the pipeline) and/or the final norm + lm_head (tail).
struct ShardSpec {
  int first_layer = 0;
  int end_layer = -1;  // -1: through the last layer
  bool has_embedding = true;
  bool has_head = true;

  static ShardSpec full() { return ShardSpec{}; }
};

}  // namespace jarvis
