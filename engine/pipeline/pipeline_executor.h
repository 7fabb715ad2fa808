// The engine's StepExecutor over a pipeline ring: rank 0 (this process) embeds, runs its layers,
// and computes logits when the step comes back (PipelineRunner), on the CPU or a GPU. Up to
// PipelineOptions::max_in_flight steps (micro-batches) are in the ring at once.
// Owns the ring's links so they outlive the runner; destroying it closes rank 0's output link,
// which stops the workers one after another (see README.md, "Shutdown").
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "engine/pipeline/pipeline_runner.h"
#include "engine/step_executor.h"
#include "transport/link.h"

namespace jarvis {

class PipelineExecutor : public StepExecutor {
 public:
  // `from_last` may be null when rank 1 is also the last rank and `to_next` is bidirectional.
  // On the CPU (PipelineRunner's Model constructor):
  PipelineExecutor(const Model& model, int num_blocks, int page_size, int threads,
                   std::unique_ptr<transport::Link> to_next, std::unique_ptr<transport::Link> from_last,
                   PipelineOptions options = {});
  // Rank 0 on any backend (e.g. a GPU shard from make_cuda_shard); its KV layout is the ring's.
  PipelineExecutor(std::unique_ptr<ShardForward> rank0, std::unique_ptr<transport::Link> to_next,
                   std::unique_ptr<transport::Link> from_last, PipelineOptions options = {});

  // PipelineRunner::handshake(); PipelineError becomes ExecutorBroken.
  std::vector<std::pair<int, int>> handshake();
  // Any ring failure is thrown as ExecutorBroken with the runner's text.
  void submit(const ScheduledStep& step, const std::vector<int>& rows) override;
  const float* collect() override;
  void release(const std::vector<int64_t>& seq_ids) override;
  int max_in_flight() const override { return max_in_flight_; }
  int vocab() const override { return runner_->vocab(); }

  // Sampling on rank 0's device: when rank 0 holds the head and its shard samples there (a GPU),
  // unless PipelineOptions::device_sampling is off (PipelineRunner::samples_on_device). The
  // requests travel with their step; collect() returns the other rows' logits (nullptr when every
  // row was sampled: nothing is left to read) and samples() the results.
  bool samples_on_device() const override { return runner_->samples_on_device(); }
  void submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                      const std::vector<SampleRequest>& requests) override;
  const std::vector<SampleResult>& samples() const override { return samples_; }

 private:
  std::unique_ptr<transport::Link> to_next_, from_last_;
  std::unique_ptr<PipelineRunner> runner_;
  std::vector<float> logits_;
  std::vector<SampleResult> samples_;  // the collected step's, empty after a plain submit()
  int max_in_flight_ = 1;
  uint32_t next_micro_batch_ = 0;  // a label on the wire, cycling 0..max_in_flight-1
};

}  // namespace jarvis
