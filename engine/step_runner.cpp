#include "engine/step_runner.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "csrc/model/cpu_shard.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

void check_whole_model(const ShardSpec& s, const ModelConfig& c) {
  if (s.first_layer != 0 || s.end_layer != c.n_layers || !s.has_embedding || !s.has_head) {
    throw InvalidArgument("the engine needs the whole model on one rank (embedding, all layers, head)");
  }
}

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

StepRunner::StepRunner(const Model& model, int num_blocks, int page_size, int threads)
    : pool_(std::make_unique<cpu::ThreadPool>(resolve_threads(threads))) {
  check_whole_model(model.shard(), model.config());
  shard_ = std::make_unique<CpuShard>(model, num_blocks, page_size, *pool_);
}

StepRunner::StepRunner(std::unique_ptr<ShardForward> shard) : shard_(std::move(shard)) {
  if (!shard_) throw InvalidArgument("StepRunner: no shard");
  check_whole_model(shard_->shard(), shard_->config());
}

void StepRunner::submit(const ScheduledStep& step, const std::vector<int>& rows) {
  if (pending_) throw InvalidArgument("StepRunner: a step is already submitted and not collected");
  const int n = step.total_tokens();
  for (int r : rows) {
    if (r < 0 || r >= n) throw InvalidArgument("StepRunner: logits row outside the step");
  }
  const size_t hidden = static_cast<size_t>(shard_->config().hidden);
  tokens_.clear();
  for (const ScheduledSeq& s : step.seqs) tokens_.insert(tokens_.end(), s.tokens.begin(), s.tokens.end());
  hidden_.resize(static_cast<size_t>(n) * hidden);
  shard_->embed(tokens_.data(), n, hidden_.data());
  shard_->forward_layers(step.batch_view(), hidden_.data());
  has_rows_ = !rows.empty();
  if (has_rows_) {
    selected_.resize(rows.size() * hidden);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::memcpy(selected_.data() + i * hidden, hidden_.data() + static_cast<size_t>(rows[i]) * hidden,
                  hidden * sizeof(float));
    }
    logits_.resize(rows.size() * static_cast<size_t>(vocab()));
    shard_->compute_logits(selected_.data(), static_cast<int>(rows.size()), logits_.data());
  }
  pending_ = true;  // only once it all succeeded: a failed step leaves nothing to collect
}

const float* StepRunner::collect() {
  if (!pending_) throw InvalidArgument("StepRunner: collect() with no step submitted");
  pending_ = false;
  return has_rows_ ? logits_.data() : nullptr;
}

}  // namespace jarvis
