#include "engine/pipeline/pipeline_executor.h"

namespace jarvis {

PipelineExecutor::PipelineExecutor(const Model& model, int num_blocks, int page_size, int threads,
                                   std::unique_ptr<transport::Link> to_next,
                                   std::unique_ptr<transport::Link> from_last, PipelineOptions options)
    : to_next_(std::move(to_next)), from_last_(std::move(from_last)) {
  if (!to_next_) throw InvalidArgument("PipelineExecutor: no link to rank 1");
  transport::Link& back = from_last_ ? *from_last_ : *to_next_;
  runner_ = std::make_unique<PipelineRunner>(model, num_blocks, page_size, threads, *to_next_, back, options);
}

std::vector<std::pair<int, int>> PipelineExecutor::handshake() {
  try {
    return runner_->handshake();
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline handshake: ") + e.what());
  }
}

const float* PipelineExecutor::run(const ScheduledStep& step, const std::vector<int>& rows) {
  try {
    PipelineResult r = runner_->run(step, rows);
    logits_ = std::move(r.logits);
  } catch (const PipelineError& e) {
    throw ExecutorBroken(std::string("pipeline: ") + e.what());
  }
  return rows.empty() ? nullptr : logits_.data();
}

}  // namespace jarvis
