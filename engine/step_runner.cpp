#include "engine/step_runner.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

StepRunner::StepRunner(const Model& model, int num_blocks, int page_size, int threads)
    : model_(model), pool_(resolve_threads(threads)), kv_(model.make_kv_cache(num_blocks, page_size)) {
  const ShardSpec& s = model.shard();
  if (s.first_layer != 0 || s.end_layer != model.config().n_layers || !s.has_embedding || !s.has_head) {
    throw InvalidArgument("the engine needs the whole model on one rank (embedding, all layers, head)");
  }
}

const float* StepRunner::run(const ScheduledStep& step, const std::vector<int>& rows) {
  const int n = step.total_tokens();
  const size_t hidden = static_cast<size_t>(model_.config().hidden);
  tokens_.clear();
  for (const ScheduledSeq& s : step.seqs) tokens_.insert(tokens_.end(), s.tokens.begin(), s.tokens.end());
  hidden_.resize(static_cast<size_t>(n) * hidden);
  model_.embed(tokens_.data(), n, hidden_.data());
  model_.forward_layers(step.batch_view(), hidden_.data(), kv_, pool_);
  if (rows.empty()) return nullptr;
  selected_.resize(rows.size() * hidden);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= n) throw InvalidArgument("StepRunner: logits row outside the step");
    std::memcpy(selected_.data() + i * hidden, hidden_.data() + static_cast<size_t>(rows[i]) * hidden,
                hidden * sizeof(float));
  }
  logits_.resize(rows.size() * static_cast<size_t>(vocab()));
  model_.compute_logits(selected_.data(), static_cast<int>(rows.size()), logits_.data(), pool_);
  return logits_.data();
}

}  // namespace jarvis
