// Runs one scheduled step through a shard that holds every layer, the embedding and the head, on
// the CPU or a GPU (csrc/model/shard_forward.h): embed the step's tokens, run the layers over the
// paged KV cache, and compute logits only for the rows someone reads (sampled last tokens, prompt
// rows whose logprobs were asked for).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "engine/scheduler.h"
#include "engine/step_executor.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis {

class StepRunner : public StepExecutor {
 public:
  // On the CPU: allocates the KV cache, num_blocks pages of page_size tokens. threads <= 0: all cores.
  StepRunner(const Model& model, int num_blocks, int page_size, int threads);
  // Over any whole-model shard (e.g. make_cuda_shard's); its KV cache has shard->num_blocks() pages.
  // device_sampling false: a shard that samples on its device is not asked to (logits go to the
  // host sampler; `jarvis-serve --device-sampling off`).
  explicit StepRunner(std::unique_ptr<ShardForward> shard, bool device_sampling = true);

  // Runs the step (one at a time: a second submit() before collect() is an InvalidArgument).
  // `rows` are indices into the step's tokens (concatenated in step order), ascending.
  void submit(const ScheduledStep& step, const std::vector<int>& rows) override;
  // The logits of the submitted step, [rows.size(), vocab], valid until the next submit().
  const float* collect() override;

  int vocab() const override { return shard_->config().vocab_size; }
  const ShardForward& shard() const { return *shard_; }

  // Sampling on the shard's device, when it has one (ShardForward::samples_on_device).
  bool samples_on_device() const override { return device_sampling_ && shard_->samples_on_device(); }
  void submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                      const std::vector<SampleRequest>& requests) override;
  const std::vector<SampleResult>& samples() const override { return samples_; }

 private:
  std::unique_ptr<cpu::ThreadPool> pool_;  // the CPU shard's threads; null for other devices
  std::unique_ptr<ShardForward> shard_;
  std::vector<int32_t> tokens_;
  std::vector<float> hidden_;    // [step tokens, hidden]
  std::vector<float> selected_;  // [rows, hidden]
  std::vector<float> logits_;    // [rows, vocab]
  std::vector<float> host_logits_;      // [rows not sampled on the device, vocab]
  std::vector<SampleResult> samples_;   // one per request of submit_sampled()
  bool device_sampling_ = true;  // the switch (constructor); the shard must also be able to
  bool pending_ = false;         // submitted, not yet collected
  bool has_rows_ = false;
};

}  // namespace jarvis
