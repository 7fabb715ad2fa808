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

StepRunner::StepRunner(std::unique_ptr<ShardForward> shard, bool device_sampling)
    : shard_(std::move(shard)), device_sampling_(device_sampling) {
  if (!shard_) throw InvalidArgument("StepRunner: no shard");
  check_whole_model(shard_->shard(), shard_->config());
}

void StepRunner::submit(const ScheduledStep& step, const std::vector<int>& rows) {
  submit_sampled(step, rows, {});
}

void StepRunner::submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                                const std::vector<SampleRequest>& requests) {
  if (pending_) throw InvalidArgument("StepRunner: a step is already submitted and not collected");
  const int n = step.total_tokens();
  for (int r : rows) {
    if (r < 0 || r >= n) throw InvalidArgument("StepRunner: logits row outside the step");
  }
  if (!requests.empty() && !samples_on_device()) {
    throw InvalidArgument("StepRunner: sample requests, but this runner does not sample on its device");
  }
  std::vector<char> on_device(requests.empty() ? 0 : rows.size(), 0);
  for (const SampleRequest& q : requests) {
    if (q.row < 0 || q.row >= static_cast<int>(rows.size()) || on_device[q.row]) {
      throw InvalidArgument("StepRunner: a sample request names a missing or repeated row");
    }
    on_device[q.row] = 1;
  }
  const size_t hidden = static_cast<size_t>(shard_->config().hidden);
  tokens_.clear();
  for (const ScheduledSeq& s : step.seqs) tokens_.insert(tokens_.end(), s.tokens.begin(), s.tokens.end());
  hidden_.resize(static_cast<size_t>(n) * hidden);
  shard_->embed(tokens_.data(), n, hidden_.data());
  shard_->forward_layers(step.batch_view(), hidden_.data());
  has_rows_ = !rows.empty();
  samples_.clear();
  auto gather = [&](const std::vector<int>& step_rows) {
    selected_.resize(step_rows.size() * hidden);
    for (size_t i = 0; i < step_rows.size(); ++i) {
      std::memcpy(selected_.data() + i * hidden, hidden_.data() + static_cast<size_t>(step_rows[i]) * hidden,
                  hidden * sizeof(float));
    }
  };
  const size_t v = static_cast<size_t>(vocab());
  if (has_rows_) logits_.resize(rows.size() * v);
  if (requests.empty()) {
    if (has_rows_) {
      gather(rows);
      shard_->compute_logits(selected_.data(), static_cast<int>(rows.size()), logits_.data());
    }
  } else {
    // Rows read on the host (prompt logprobs) come back as logits, into their places in logits_.
    std::vector<int> host_rows, host_index;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!on_device[i]) host_rows.push_back(rows[i]), host_index.push_back(static_cast<int>(i));
    }
    if (!host_rows.empty()) {
      gather(host_rows);
      host_logits_.resize(host_rows.size() * v);
      shard_->compute_logits(selected_.data(), static_cast<int>(host_rows.size()), host_logits_.data());
      for (size_t i = 0; i < host_rows.size(); ++i) {
        std::memcpy(logits_.data() + static_cast<size_t>(host_index[i]) * v, host_logits_.data() + i * v,
                    v * sizeof(float));
      }
    }
    std::vector<int> device_rows;
    for (const SampleRequest& q : requests) device_rows.push_back(rows[q.row]);
    gather(device_rows);
    samples_.resize(requests.size());
    shard_->sample_logits(selected_.data(), requests, samples_.data());
  }
  pending_ = true;  // only once it all succeeded: a failed step leaves nothing to collect
}

const float* StepRunner::collect() {
  if (!pending_) throw InvalidArgument("StepRunner: collect() with no step submitted");
  pending_ = false;
  return has_rows_ ? logits_.data() : nullptr;
}

}  // namespace jarvis
