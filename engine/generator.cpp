#include "engine/generator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <string>

#include "csrc/model/cpu_shard.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

constexpr int64_t kSeqId = 0;  // the one sequence this generator runs

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Frees the sequence's blocks however generation ends (exceptions included).
struct SequenceGuard {
  BlockManager& blocks;
  ~SequenceGuard() { blocks.free(kSeqId); }
};

}  // namespace

double GenerationStats::prompt_tokens_per_second() const {
  return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0.0;
}

double GenerationStats::decode_tokens_per_second() const {
  return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0.0;
}

Generator::Generator(const Model& model, const Tokenizer& tokenizer, cpu::ThreadPool& pool, int num_blocks,
                     int page_size)
    : Generator(std::make_unique<CpuShard>(model, num_blocks, page_size, pool), tokenizer) {}

Generator::Generator(std::unique_ptr<ShardForward> owned, const Tokenizer& tokenizer)
    : owned_(std::move(owned)), shard_(*owned_), tokenizer_(tokenizer),
      blocks_(shard_.num_blocks(), shard_.page_size()) {
  check_shard();
}

Generator::Generator(ShardForward& shard, const Tokenizer& tokenizer)
    : shard_(shard), tokenizer_(tokenizer), blocks_(shard.num_blocks(), shard.page_size()) {
  check_shard();
}

void Generator::check_shard() {
  const ShardSpec& s = shard_.shard();
  const ModelConfig& c = shard_.config();
  if (s.first_layer != 0 || s.end_layer != c.n_layers || !s.has_embedding || !s.has_head) {
    throw InvalidArgument("Generator needs the whole model on one rank (embedding, all layers, head)");
  }
  const int64_t cache_positions = static_cast<int64_t>(shard_.num_blocks()) * shard_.page_size();
  const int model_context = c.context_length > 0 ? c.context_length : INT32_MAX;
  context_length_ = static_cast<int>(std::min<int64_t>(cache_positions, model_context));
}

void Generator::step(const int32_t* tokens, int n, int start, float* logits) {
  blocks_.ensure_capacity(kSeqId, start + n);
  BatchView batch;
  SequenceSlice slice;
  slice.seq_id = kSeqId;
  slice.n_tokens = n;
  slice.start_pos = start;
  slice.block_table = blocks_.block_table(kSeqId);
  slice.want_logits = logits != nullptr;
  batch.seqs.push_back(std::move(slice));

  const int hidden = shard_.config().hidden;
  shard_.embed(tokens, n, hidden_.data());
  shard_.forward_layers(batch, hidden_.data());
  if (logits) shard_.compute_logits(hidden_.data() + static_cast<size_t>(n - 1) * hidden, 1, logits);
}

GenerationResult Generator::generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                     const TokenCallback& on_token) {
  if (options.max_tokens < 1) {
    throw InvalidArgument("max_tokens must be >= 1, got " + std::to_string(options.max_tokens));
  }
  if (options.prefill_chunk < 1) {
    throw InvalidArgument("prefill chunk must be >= 1, got " + std::to_string(options.prefill_chunk));
  }
  if (prompt.empty()) throw InvalidArgument("the prompt has no tokens");
  const int n_prompt = static_cast<int>(prompt.size());
  if (n_prompt > context_length_) {
    throw InvalidArgument("the prompt has " + std::to_string(n_prompt) + " tokens, the context holds " +
                          std::to_string(context_length_));
  }
  const int vocab = shard_.config().vocab_size;
  for (int32_t id : prompt) {
    if (id < 0 || id >= vocab) throw InvalidArgument("prompt token id " + std::to_string(id) + " outside the vocabulary");
  }
  Sampler sampler(options.sampling);
  StopConditions conditions;
  conditions.max_tokens = options.max_tokens;
  conditions.stop = options.stop;
  conditions.ignore_eos = options.ignore_eos;
  conditions.prompt_tokens = n_prompt;
  conditions.context_length = context_length_;
  TokenStream stream(tokenizer_, conditions);

  blocks_.free(kSeqId);
  SequenceGuard guard{blocks_};
  hidden_.resize(static_cast<size_t>(std::min(options.prefill_chunk, n_prompt)) * shard_.config().hidden);
  std::vector<float> logits(static_cast<size_t>(vocab));

  GenerationResult result;
  result.stats.prompt_tokens = n_prompt;
  const Clock::time_point start = Clock::now();
  for (int pos = 0; pos < n_prompt; pos += options.prefill_chunk) {
    const int n = std::min(options.prefill_chunk, n_prompt - pos);
    const bool last = pos + n == n_prompt;
    step(prompt.data() + pos, n, pos, last ? logits.data() : nullptr);
  }
  result.stats.prefill_seconds = seconds_since(start);

  Clock::time_point first_token;
  std::vector<int32_t>& generated = result.tokens;
  for (;;) {
    SampleResult s = sampler.sample(logits.data(), vocab, prompt, generated);
    generated.push_back(s.token);
    if (generated.size() == 1) {
      first_token = Clock::now();
      result.stats.ttft_seconds = std::chrono::duration<double>(first_token - start).count();
    }

    StreamEvent event = stream.push(std::move(s));
    bool finished = stream.finished();
    result.finish = stream.finish();
    result.text += event.text;
    if (on_token && !on_token(event) && !finished) {
      result.finish = FinishReason::kCancelled;
      finished = true;
    }
    if (finished) break;
    step(&generated.back(), 1, n_prompt + static_cast<int>(generated.size()) - 1, logits.data());
  }

  result.stats.generated_tokens = static_cast<int>(generated.size());
  result.stats.decode_seconds = seconds_since(first_token);
  result.stats.total_seconds = seconds_since(start);
  return result;
}

}  // namespace jarvis
