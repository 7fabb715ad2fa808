// Generation for one sequence on one rank that holds the whole model: chunked prefill, then one
// decode step per token, sampling, stop conditions and timings. Each step is described as a
// BatchView so the same model calls serve the continuous-batching scheduler later.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "csrc/model/kv_cache.h"
#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "csrc/sampling/sampler.h"
#include "csrc/tokenizer/tokenizer.h"
#include "engine/block_manager.h"
#include "engine/token_stream.h"

namespace jarvis {

struct GenerationOptions {
  SamplingParams sampling;
  int max_tokens = 256;            // >= 1
  std::vector<std::string> stop;   // stop strings; the text returned ends before the first one
  int prefill_chunk = 512;         // prompt tokens per prefill step, >= 1
  bool ignore_eos = false;         // keep going past end-of-generation tokens (benchmarks)
};

// Return false to stop generation (FinishReason::kCancelled).
using TokenCallback = std::function<bool(const StreamEvent&)>;

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;  // prompt in, logits of its last token out
  double ttft_seconds = 0;     // start to first sampled token
  double decode_seconds = 0;   // first token to the end: generated_tokens - 1 decode steps
  double total_seconds = 0;

  double prompt_tokens_per_second() const;
  double decode_tokens_per_second() const;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids, including a final end-of-generation token
  std::string text;             // their text, cut before a stop string, control tokens left out
  FinishReason finish = FinishReason::kMaxTokens;
  GenerationStats stats;
};

class Generator {
 public:
  // The model must hold every layer, the embedding and the head. The KV cache is allocated here:
  // num_blocks pages of page_size tokens.
  Generator(const Model& model, const Tokenizer& tokenizer, cpu::ThreadPool& pool, int num_blocks,
            int page_size);
  // The same on any backend (a GPU shard from make_cuda_shard): `shard` holds the KV cache and
  // must hold every layer, the embedding and the head; it must outlive the generator.
  Generator(ShardForward& shard, const Tokenizer& tokenizer);

  // Positions one sequence can use: the model's context length, bounded by the KV cache.
  int context_length() const { return context_length_; }

  // Throws InvalidArgument for bad options, an empty prompt or one that does not fit.
  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                            const TokenCallback& on_token = {});

 private:
  Generator(std::unique_ptr<ShardForward> owned, const Tokenizer& tokenizer);
  void check_shard();
  // Runs `n` tokens at positions [start, start + n) through the model; when `logits` is set,
  // writes the logits of the last one there.
  void step(const int32_t* tokens, int n, int start, float* logits);

  std::unique_ptr<ShardForward> owned_;  // the CPU shard of the first constructor
  ShardForward& shard_;
  const Tokenizer& tokenizer_;
  BlockManager blocks_;
  int context_length_;
  std::vector<float> hidden_;
};

}  // namespace jarvis
