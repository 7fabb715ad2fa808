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

void StepRunner::submit(const ScheduledStep& step, const std::vector<int>& rows) {
  if (pending_) throw InvalidArgument("StepRunner: a step is already submitted and not collected");
  const int n = step.total_tokens();
  for (int r : rows) {
    if (r < 0 || r >= n) throw InvalidArgument("StepRunner: logits row outside the step");
  }
  const size_t hidden = static_cast<size_t>(model_.config().hidden);
  tokens_.clear();
  for (const ScheduledSeq& s : step.seqs) tokens_.insert(tokens_.end(), s.tokens.begin(), s.tokens.end());
  hidden_.resize(static_cast<size_t>(n) * hidden);
  model_.embed(tokens_.data(), n, hidden_.data());
  model_.forward_layers(step.batch_view(), hidden_.data(), kv_, pool_);
  has_rows_ = !rows.empty();
  if (has_rows_) {
    selected_.resize(rows.size() * hidden);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(selected_.data() + i * hidden, hidden_.data() + static_cast<size_t>(rows[i]) * hidden,
                  hidden * sizeof(float));
    }
    logits_.resize(rows.size() * static_cast<size_t>(vocab()));
    model_.compute_logits(selected_.data(), static_cast<int>(rows.size()), logits_.data(), pool_);
  }
  pending_ = true;  // only once it all succeeded: a failed step leaves nothing to collect
}

const float* StepRunner::collect() {
  if (!pending_) throw InvalidArgument("StepRunner: collect() with no step submitted");
  pending_ = false;
  return has_rows_ ? logits_.data() : nullptr;
}

}  // namespace jarvis
