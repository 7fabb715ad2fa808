// A loaded (possibly partial) model and its forward pass on the CPU backend.
//
// The pass is split at the pipeline boundaries so a rank runs only its part:
//   embed (head) -> forward_layers (every rank, its own layers) -> logits (tail).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/model/forward_step.h"
#include "csrc/model/kv_cache.h"
#include "csrc/model/load_options.h"
#include "csrc/model/weights.h"
#include "csrc/tokenizer/tokenizer_data.h"

namespace jarvis {

namespace cpu { class ThreadPool; }

class Model {
 public:
  Model(ModelConfig config, ShardSpec shard, ModelWeights weights, TokenizerData tokenizer);

  const ModelConfig& config() const { return config_; }
  const ShardSpec& shard() const { return shard_; }  // end_layer resolved
  const ModelWeights& weights() const { return weights_; }
  const TokenizerData& tokenizer_data() const { return tokenizer_; }
  int n_shard_layers() const { return shard_.end_layer - shard_.first_layer; }
  // RoPE inverse frequencies [rope_dim / 2], scaling applied: what other backends build their
  // cos/sin tables from, so every backend rotates by the same angles.
  const std::vector<double>& rope_inv_freq() const { return rope_inv_freq_; }

  // A KV cache sized for this shard's layers.
  KvCache make_kv_cache(int num_blocks, int page_size) const;

  // hidden[n, hidden] = embedding rows of tokens (times embedding_scale). Needs has_embedding.
  void embed(const int32_t* tokens, int n, float* hidden) const;

  // Runs the shard's layers over hidden[batch.total_tokens(), hidden] in place, writing the new
  // tokens' K/V into the cache pages named by each slice's block table. Throws InvalidArgument
  // when a block table does not cover its slice or names a block the cache does not have.
  void forward_layers(const BatchView& batch, float* hidden, KvCache& kv, cpu::ThreadPool& pool) const;

  // logits[n_rows, vocab] from hidden rows (final norm + lm_head). Needs has_head.
  void compute_logits(const float* hidden, int n_rows, float* logits, cpu::ThreadPool& pool) const;

 private:
  ModelConfig config_;
  ShardSpec shard_;
  ModelWeights weights_;
  TokenizerData tokenizer_;
  std::vector<double> rope_inv_freq_;  // [rope_dim / 2], scaling applied
  // Forward calls on one Model are serialised: they share the step plan and scratch buffers,
  // which are kept between calls so decode steps do not allocate.
  mutable std::mutex step_mu_;
  mutable StepPlan plan_;
  mutable Workspace ws_;
};

// Loads a GGUF file or an HF directory (config.json + *.safetensors + tokenizer.json),
// only the tensors of `shard`, weights held as `options` says. Throws ModelFileError for anything
// unusable (a tensor type the kernels do not multiply included).
std::unique_ptr<Model> load_model(const std::string& path, const ShardSpec& shard = ShardSpec::full(),
                                  const LoadOptions& options = {});

}  // namespace jarvis
