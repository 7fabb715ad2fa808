#include "csrc/model/model.h"

#include <string>

#include "csrc/model/llama_block.h"
#include "csrc/util/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_matrix.h"

namespace jarvis {
namespace {

size_t vec_bytes(const std::vector<float>& v) { return v.size() * sizeof(float); }

cpu::RopeFreqParams rope_params(const ModelConfig& c, const std::vector<float>& freqs) {
  cpu::RopeFreqParams p;
  p.rope_dim = c.rope_dim;
  p.theta = c.rope_theta;
  p.factor = c.rope_scaling.factor;
  p.low_freq_factor = c.rope_scaling.low_freq_factor;
  p.high_freq_factor = c.rope_scaling.high_freq_factor;
  p.original_context = c.rope_scaling.original_context;
  switch (c.rope_scaling.type) {
    case RopeScaling::Type::kNone: p.scaling = cpu::RopeFreqParams::Scaling::kNone; break;
    case RopeScaling::Type::kLinear: p.scaling = cpu::RopeFreqParams::Scaling::kLinear; break;
    case RopeScaling::Type::kLlama3: p.scaling = cpu::RopeFreqParams::Scaling::kLlama3; break;
  }
  // A file that carries explicit divisors already encodes its scaling; applying the metadata's
  // llama3 rule on top would scale twice.
  if (!freqs.empty()) {
    p.freq_divisors = freqs.data();
    if (p.scaling == cpu::RopeFreqParams::Scaling::kLlama3) p.scaling = cpu::RopeFreqParams::Scaling::kNone;
  }
  return p;
}

}  // namespace

size_t ModelWeights::bytes() const {
  size_t b = embedding.bytes() + vec_bytes(output_norm) + lm_head.bytes() + vec_bytes(rope_freqs);
  for (const LayerWeights& l : layers) {
    b += vec_bytes(l.attn_norm) + l.wq.bytes() + l.wk.bytes() + l.wv.bytes() + l.wo.bytes() +
         vec_bytes(l.bq) + vec_bytes(l.bk) + vec_bytes(l.bv) + vec_bytes(l.ffn_norm) +
         l.w_gate.bytes() + l.w_up.bytes() + l.w_down.bytes();
  }
  return b;
}

Model::Model(ModelConfig config, ShardSpec shard, ModelWeights weights, TokenizerData tokenizer)
    : config_(std::move(config)), shard_(shard), weights_(std::move(weights)),
      tokenizer_(std::move(tokenizer)) {
  if (shard_.end_layer < 0) shard_.end_layer = config_.n_layers;
  if (shard_.first_layer < 0 || shard_.first_layer > shard_.end_layer || shard_.end_layer > config_.n_layers) {
    throw InvalidArgument("shard layers [" + std::to_string(shard_.first_layer) + ", " +
                          std::to_string(shard_.end_layer) + ") outside the model's " +
                          std::to_string(config_.n_layers) + " layers");
  }
  if (static_cast<int>(weights_.layers.size()) != n_shard_layers()) {
    throw InvalidArgument("shard has " + std::to_string(n_shard_layers()) + " layers but " +
                          std::to_string(weights_.layers.size()) + " were loaded");
  }
  rope_inv_freq_ = cpu::rope_inv_freq(rope_params(config_, weights_.rope_freqs));
}

KvCache Model::make_kv_cache(int num_blocks, int page_size) const {
  return KvCache(n_shard_layers(), num_blocks, page_size, config_.n_kv_heads, config_.head_dim);
}

void Model::embed(const int32_t* tokens, int n, float* hidden) const {
  if (!shard_.has_embedding || weights_.embedding.empty()) {
    throw InvalidArgument("embed: this shard does not hold the embedding");
  }
  const int64_t h = config_.hidden;
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= weights_.embedding.rows()) {
      throw InvalidArgument("token id " + std::to_string(tokens[i]) + " outside the vocabulary of " +
                            std::to_string(weights_.embedding.rows()));
    }
    // One row decoded per token: the matrix stays in its block type (a Q8_0 tied head here).
    weights_.embedding.dequantize_rows(tokens[i], 1, hidden + i * h);
    if (config_.embedding_scale != 1.0f) cpu::scale(config_.embedding_scale, hidden + i * h, h);
  }
}

void Model::forward_layers(const BatchView& batch, float* hidden, KvCache& kv, cpu::ThreadPool& pool) const {
  if (kv.n_layers() != n_shard_layers() || kv.n_kv_heads() != config_.n_kv_heads ||
      kv.head_dim() != config_.head_dim) {
    throw InvalidArgument("forward_layers: KV cache shape does not match this shard");
  }
  std::lock_guard<std::mutex> lock(step_mu_);
  StepPlan& plan = plan_;
  plan.n_tokens = batch.total_tokens();
  plan.positions.resize(plan.n_tokens);
  plan.sequences.clear();
  int64_t offset = 0;
  for (const SequenceSlice& s : batch.seqs) {
    if (s.n_tokens < 0 || s.start_pos < 0) throw InvalidArgument("forward_layers: negative slice size or position");
    const int64_t needed = (static_cast<int64_t>(s.start_pos) + s.n_tokens + kv.page_size() - 1) / kv.page_size();
    if (static_cast<int64_t>(s.block_table.size()) < needed) {
      throw InvalidArgument("sequence " + std::to_string(s.seq_id) + ": block table has " +
                            std::to_string(s.block_table.size()) + " blocks, positions up to " +
                            std::to_string(s.start_pos + s.n_tokens) + " need " + std::to_string(needed));
    }
    for (int64_t b = 0; b < needed; ++b) {
      if (s.block_table[b] < 0 || s.block_table[b] >= kv.num_blocks()) {
        throw InvalidArgument("sequence " + std::to_string(s.seq_id) + ": block id " +
                              std::to_string(s.block_table[b]) + " outside the cache's " +
                              std::to_string(kv.num_blocks()) + " blocks");
      }
    }
    for (int i = 0; i < s.n_tokens; ++i) plan.positions[offset + i] = s.start_pos + i;
    cpu::PagedSequence ps;
    ps.token_offset = offset;
    ps.n_tokens = s.n_tokens;
    ps.start_pos = s.start_pos;
    ps.block_table = s.block_table.data();
    plan.sequences.push_back(ps);
    offset += s.n_tokens;
  }
  if (plan.n_tokens == 0) return;
  plan.rope_cos_sin.resize(static_cast<size_t>(plan.n_tokens) * config_.rope_dim);
  cpu::rope_cos_sin(plan.positions.data(), rope_inv_freq_, plan.rope_cos_sin.data(), plan.n_tokens);
  ws_.reserve(config_, plan.n_tokens);
  for (int l = 0; l < n_shard_layers(); ++l) {
    llama_block_forward(config_, weights_.layers[l], plan, l, hidden, kv, ws_, pool);
  }
}

void Model::compute_logits(const float* hidden, int n_rows, float* logits, cpu::ThreadPool& pool) const {
  if (!shard_.has_head || weights_.output_norm.empty()) {
    throw InvalidArgument("compute_logits: this shard does not hold the head");
  }
  const Matrix& head = weights_.lm_head.empty() ? weights_.embedding : weights_.lm_head;
  if (head.empty()) throw InvalidArgument("compute_logits: tied head but no embedding loaded");
  std::lock_guard<std::mutex> lock(step_mu_);
  ws_.reserve(config_, n_rows);
  cpu::rmsnorm(hidden, weights_.output_norm.data(), ws_.norm.data(), n_rows, config_.hidden,
               config_.norm_eps, pool);
  cpu::qmatmul(ws_.norm.data(), n_rows, head, logits, pool);
}

}  // namespace jarvis
