// Rank 0 of the ring through any ShardForward (PipelineRunner's shard constructor), the path a GPU
// rank 0 takes: here a CPU shard behind a pass-through that counts calls, with the worker also
// over a ShardForward (StageWorker's shard constructor). Logits must equal one rank's StepRunner
// bit for bit, as for the Model constructor (pipeline_ring_test.cpp says why no rounding enters).
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "csrc/model/cpu_shard.h"
#include "engine/pipeline/stage_worker.h"
#include "pipeline_workload.h"
#include "transport/inproc_link.h"

namespace jarvis {
namespace {

using namespace pipeline_test;

// Forwards to a CpuShard and counts what rank 0 asks of its device.
class CountingShard : public ShardForward {
 public:
  CountingShard(const Model& m, int blocks, cpu::ThreadPool& pool) : inner_(m, blocks, kPageSize, pool) {}
  const ModelConfig& config() const override { return inner_.config(); }
  const ShardSpec& shard() const override { return inner_.shard(); }
  int num_blocks() const override { return inner_.num_blocks(); }
  int page_size() const override { return inner_.page_size(); }
  std::string device_name() const override { return "counting cpu"; }
  void embed(const int32_t* t, int n, float* h) override {
    ++embeds;
    inner_.embed(t, n, h);
  }
  void forward_layers(const BatchView& b, float* h) override {
    ++layers;
    inner_.forward_layers(b, h);
  }
  void compute_logits(const float* h, int n, float* l) override {
    ++logits;
    inner_.compute_logits(h, n, l);
  }
  int embeds = 0, layers = 0, logits = 0;

 private:
  CpuShard inner_;
};

TEST(PipelineRank0Shard, AnyShardForwardRunsRankZero) {
  std::unique_ptr<Model> full = load_model(model_path());
  StepRunner reference(*full, kNumBlocks, kPageSize, 1);
  std::unique_ptr<Model> m0 = load_model(model_path(), shard(0, 12, true));
  std::unique_ptr<Model> m1 = load_model(model_path(), shard(12, -1, false));
  cpu::ThreadPool pool0(1), pool1(1);
  auto counting = std::make_unique<CountingShard>(*m0, kNumBlocks, pool0);
  CountingShard* rank0 = counting.get();
  CpuShard worker_shard(*m1, kNumBlocks, kPageSize, pool1);
  StageWorker worker(worker_shard);

  auto [r0_out, w_in] = transport::make_inproc_link_pair();
  auto [w_out, r0_in] = transport::make_inproc_link_pair();
  StageWorkerResult wr;
  std::thread t([&worker, &wr, in = std::move(w_in), out = std::move(w_out)]() mutable {
    wr = worker.run(*in, *out);
    out.reset();
  });
  PipelineOptions opts;
  opts.max_in_flight = 2;
  opts.recv_timeout = std::chrono::seconds(20);
  WorkloadStats s;
  {
    PipelineRunner ring(std::move(counting), *r0_out, *r0_in, opts);
    EXPECT_EQ(ring.shard().device_name(), "counting cpu");
    EXPECT_EQ(ring.vocab(), full->config().vocab_size);
    EXPECT_EQ(ring.handshake(), (std::vector<std::pair<int, int>>{{0, 12}, {12, 30}}));
    s = run_workload(ring, reference, 2, 3, 4, 6);
    EXPECT_EQ(rank0->embeds, s.steps);  // every step embedded and run on rank 0's shard...
    EXPECT_EQ(rank0->layers, s.steps);
    EXPECT_GT(rank0->logits, 0);        // ...and the head (rank 0 holds the tail) too
  }
  r0_out.reset();
  t.join();
  EXPECT_GT(s.compared_rows, 10);
  EXPECT_TRUE(wr.ok) << wr.reason;
}

TEST(PipelineRank0Shard, RankZeroNeedsTheEmbedding) {
  std::unique_ptr<Model> m = load_model(model_path(), shard(0, 10, true));
  std::unique_ptr<Model> mid = load_model(model_path(), shard(10, 20, false));
  cpu::ThreadPool pool(1);
  auto [a, b] = transport::make_inproc_link_pair();
  EXPECT_THROW(PipelineRunner(nullptr, *a, *b), InvalidArgument);
  EXPECT_THROW(PipelineRunner(std::make_unique<CpuShard>(*mid, kNumBlocks, kPageSize, pool), *a, *b),
               InvalidArgument);
  PipelineOptions opts;
  opts.stats_interval = std::chrono::milliseconds(0);
  PipelineRunner ok(std::make_unique<CpuShard>(*m, 24, 8, pool), *a, *b, opts);
  EXPECT_EQ(ok.shard().num_blocks(), 24);  // the ring's KV layout is the shard's
  EXPECT_EQ(ok.shard().page_size(), 8);
}

}  // namespace
}  // namespace jarvis
