#include "engine/pipeline/pipeline_executor.h"

namespace jarvis {

PipelineExecutor::PipelineExecutor(const Model& model, int num_blocks, int page_size, int threads,
                                   std::unique_ptr<transport::Link> to_next,
                                   std::unique_ptr<transport::Link> from_last, PipelineOptions options)
    : to_next_(std::move(to_next)), from_last_(std::move(from_last)), max_in_flight_(options.max_in_flight) {
  if (!to_next_) throw InvalidArgument("PipelineExecutor: no link to rank 1");
  transport::Link& back = from_last_ ? *from_last_ : *to_next_;
  runner_ = std::make_unique<PipelineRunner>(model, num_blocks, page_size, threads, *to_next_, back, options);
}

PipelineExecutor::PipelineExecutor(std::unique_ptr<ShardForward> rank0, std::unique_ptr<transport::Link> to_next,
                                   std::unique_ptr<transport::Link> from_last, PipelineOptions options)
    : to_next_(std::move(to_next)), from_last_(std::move(from_last)), max_in_flight_(options.max_in_flight) {
  if (!to_next_) throw InvalidArgument("PipelineExecutor: no link to rank 1");
  transport::Link& back = from_last_ ? *from_last_ : *to_next_;
  runner_ = std::make_unique<PipelineRunner>(std::move(rank0), *to_next_, back, options);
}

std::vector<std::pair<int, int>> PipelineExecutor::handshake() {
  try {
    return runner_->handshake();
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline handshake: ") + e.what());
  }
}

void PipelineExecutor::submit(const ScheduledStep& step, const std::vector<int>& rows) {
  try {
    runner_->submit(step, rows, next_micro_batch_);
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline: ") + e.what());
  }
  next_micro_batch_ = (next_micro_batch_ + 1) % static_cast<uint32_t>(max_in_flight_);
}

void PipelineExecutor::submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                                      const std::vector<SampleRequest>& requests) {
  try {
    runner_->submit_sampled(step, rows, next_micro_batch_, requests);
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline: ") + e.what());
  }
  next_micro_batch_ = (next_micro_batch_ + 1) % static_cast<uint32_t>(max_in_flight_);
}

const float* PipelineExecutor::collect() {
  try {
    PipelineResult r = runner_->collect();
    logits_ = std::move(r.logits);
    samples_ = std::move(r.samples);
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline: ") + e.what());
  }
  return logits_.empty() ? nullptr : logits_.data();
}

void PipelineExecutor::release(const std::vector<int64_t>& seq_ids) {
  if (seq_ids.empty()) return;
  try {
    runner_->free_sequences(seq_ids);
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline: ") + e.what());
  }
}

}  // namespace jarvis
