// The engine over a three-rank pipeline ring in one process, for the engine ring tests: worker
// ranks 1 and 2 (StageWorkers) on threads over in-process links, and an executor wrapper that
// records how many steps were in the ring at once.
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/pipeline/stage_worker.h"
#include "engine/step_executor.h"
#include "pipeline_workload.h"
#include "transport/inproc_link.h"

namespace jarvis::pipeline_test {

// Ranks 1 ([first, second)) and 2 ([second, end)) on threads, `blocks` KV blocks each. Rank 0
// takes to_next and from_last (a PipelineExecutor); destroying it closes its output link, which
// stops worker 1, whose closing output stops worker 2. join() (and the destructor) wait for that.
struct WorkerThreads {
  std::unique_ptr<Model> m1, m2;
  std::unique_ptr<StageWorker> w1, w2;
  std::thread t1, t2;
  std::unique_ptr<transport::Link> to_next, from_last;

  WorkerThreads(int first, int second, int blocks) {
    m1 = load_model(model_path(), shard(first, second, false));
    m2 = load_model(model_path(), shard(second, -1, false));
    w1 = std::make_unique<StageWorker>(*m1, blocks, kPageSize, 1);
    w2 = std::make_unique<StageWorker>(*m2, blocks, kPageSize, 1);
    auto [r0_out, w1_in] = transport::make_inproc_link_pair();
    auto [w1_out, w2_in] = transport::make_inproc_link_pair();
    auto [w2_out, r0_in] = transport::make_inproc_link_pair();
    t1 = spawn(*w1, std::move(w1_in), std::move(w1_out));
    t2 = spawn(*w2, std::move(w2_in), std::move(w2_out));
    to_next = std::move(r0_out);
    from_last = std::move(r0_in);
  }
  ~WorkerThreads() { join(); }
  void join() {
    to_next.reset();  // still here when no executor took it: stops worker 1, then 2
    if (t1.joinable()) t1.join();
    if (t2.joinable()) t2.join();
  }
  static std::thread spawn(StageWorker& w, std::unique_ptr<transport::Link> in, std::unique_ptr<transport::Link> out) {
    return std::thread([&w, in = std::move(in), out = std::move(out)]() mutable {
      w.run(*in, *out);
      out.reset();
    });
  }
};

// Rank 0's engine settings: one thread, `blocks` KV blocks of kPageSize positions, up to 16
// sequences, prompts in chunks of `prefill_chunk` tokens.
inline EngineConfig ring_engine_config(int blocks, int prefill_chunk) {
  EngineConfig c;
  c.threads = 1;
  c.page_size = kPageSize;
  c.kv_blocks = blocks;
  c.max_num_seqs = 16;
  c.prefill_chunk = prefill_chunk;
  return c;
}

// Forwards everything, the sampling hooks included, and records how many steps were in the ring
// at once, the most sequences one step carried, and how many steps went with sample requests.
class CountingExecutor : public StepExecutor {
 public:
  explicit CountingExecutor(std::unique_ptr<StepExecutor> inner) : inner_(std::move(inner)) {}
  int max_in_flight() const override { return inner_->max_in_flight(); }
  void submit(const ScheduledStep& step, const std::vector<int>& rows) override {
    inner_->submit(step, rows);
    count(step, false);
  }
  bool samples_on_device() const override { return inner_->samples_on_device(); }
  void submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                      const std::vector<SampleRequest>& requests) override {
    inner_->submit_sampled(step, rows, requests);
    count(step, true);
  }
  const std::vector<SampleResult>& samples() const override { return inner_->samples(); }
  const float* collect() override {
    const float* logits = inner_->collect();
    std::lock_guard<std::mutex> lock(mu_);
    --outstanding_;
    return logits;
  }
  void release(const std::vector<int64_t>& ids) override { inner_->release(ids); }
  int vocab() const override { return inner_->vocab(); }
  int max_outstanding() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_outstanding_;
  }
  int max_seqs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_seqs_;
  }
  int sampled_steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sampled_steps_;
  }

 private:
  void count(const ScheduledStep& step, bool sampled) {
    std::lock_guard<std::mutex> lock(mu_);
    max_outstanding_ = std::max(max_outstanding_, ++outstanding_);
    max_seqs_ = std::max(max_seqs_, static_cast<int>(step.seqs.size()));
    sampled_steps_ += sampled;
  }
  std::unique_ptr<StepExecutor> inner_;
  mutable std::mutex mu_;
  int outstanding_ = 0, max_outstanding_ = 0, max_seqs_ = 0, sampled_steps_ = 0;
};

}  // namespace jarvis::pipeline_test
