// Rank 0 on a (fake) GPU: PipelineRunner's hop to rank 1 (rank0_device_hop.h) with the doubles of
// pipeline_device_fakes.h. Checked: the hop takes NCCL exactly where the decision table says (and
// both ends agree), logits over NCCL equal the host path's and the arithmetic done directly (one
// rank), a two-rank ring over one link works, and a lost transfer, a failed send, an NCCL setup
// failure and a worker refusing the hello are each a PipelineError within the bound, never a hang.
// The real NCCL version: tests/gpu/pipeline/nccl_stage_worker_test.cpp (RankZero*).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/pipeline/pipeline_runner.h"
#include "pipeline_device_fakes.h"

namespace jarvis {
namespace {

using namespace device_fakes;

// The scheduler's form of step_batch(step), with tokens.
ScheduledStep scheduled_step(int step) {
  ScheduledStep s;
  const BatchView b = step_batch(step);
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    ScheduledSeq q;
    q.seq_id = b.seqs[i].seq_id;
    q.start_pos = b.seqs[i].start_pos;
    q.block_table = b.seqs[i].block_table;
    q.sample = true;
    for (int t = 0; t < b.seqs[i].n_tokens; ++t) q.tokens.push_back((5 * t + 3 * step + 7 * static_cast<int>(i)) % kVocab);
    s.seqs.push_back(std::move(q));
  }
  return s;
}

// One rank, done directly: embedding, all layers, head, for the step's sampled rows.
std::vector<float> reference_logits(const ScheduledStep& step) {
  std::vector<int32_t> tokens;
  for (const ScheduledSeq& q : step.seqs) tokens.insert(tokens.end(), q.tokens.begin(), q.tokens.end());
  std::vector<float> out;
  for (int row : PipelineRunner::sample_rows(step)) {
    float x[kHidden];
    for (int c = 0; c < kHidden; ++c) x[c] = embed_value(tokens[static_cast<size_t>(row)], c);
    apply_layers(x, kHidden, 0, kLayers);
    for (int v = 0; v < kVocab; ++v) out.push_back(logit_value(x, v));
  }
  return out;
}

struct Rank0Spec {
  bool gpu = true;
  uint8_t uuid = 1;
  bool nccl = true;
};

// A PipelineRunner over a FakeShard holding layers [0, 1) in front of `ring`'s workers.
struct Rank0 {
  Rank0(Ring& ring, const Rank0Spec& spec, int max_in_flight = 3) {
    auto s = std::make_unique<FakeShard>(0, 1, spec.gpu, spec.uuid, true);
    shard = s.get();
    PipelineOptions o;
    o.max_in_flight = max_in_flight;
    o.recv_timeout = std::chrono::milliseconds(10000);
    o.stats_interval = std::chrono::milliseconds(0);
    runner = std::make_unique<PipelineRunner>(std::move(s), *ring.to_first_, *ring.from_last_, o);
    // Remembers the channel rank 0 makes, so a test can lose or break its transfers.
    runner->set_device_link_factory([this](transport::Link& c, int rank, int device, std::chrono::nanoseconds t) {
      auto link = make_mem_link(c, rank, device, t);
      // From the link itself: the workers' hops register channels concurrently, so "the newest
      // key" may be theirs.
      channel = static_cast<MemDeviceLink&>(*link).channel();
      return link;
    });
    runner->set_nccl(spec.nccl);
    runner->set_device_timeout(std::chrono::milliseconds(500));
  }
  FakeShard* shard = nullptr;
  std::shared_ptr<Channel> channel;
  std::unique_ptr<PipelineRunner> runner;  // destroyed before the Ring it borrows links from
};

// Three steps in flight at once, then collected: logits must equal the direct arithmetic exactly
// (every value is exact in float, so no tolerance is needed). Returns them all.
std::vector<float> run_rank0_steps(PipelineRunner& runner) {
  std::vector<float> all;
  std::vector<ScheduledStep> steps;
  for (int step = 0; step < 3; ++step) {
    steps.push_back(scheduled_step(step));
    runner.submit(steps.back(), PipelineRunner::sample_rows(steps.back()), static_cast<uint32_t>(step));
  }
  for (int step = 0; step < 3; ++step) {
    const PipelineResult r = runner.collect();
    EXPECT_EQ(r.micro_batch, static_cast<uint32_t>(step));
    EXPECT_EQ(r.logits, reference_logits(steps[static_cast<size_t>(step)])) << "step " << step;
    all.insert(all.end(), r.logits.begin(), r.logits.end());
  }
  return all;
}

TEST(PipelineRank0Nccl, RankZeroOnAGpuSendsItsRowsToRankOneOverNccl) {
  std::vector<std::vector<float>> by_path;
  for (const bool nccl : {true, false}) {
    Ring ring({{1, 3, true, 2}, {3, 6, true, 3}});
    Rank0 r0(ring, {true, 1, nccl});
    EXPECT_TRUE(r0.runner->device().cuda);
    EXPECT_EQ(r0.runner->device().nccl, nccl);
    EXPECT_EQ(r0.runner->handshake(), (std::vector<std::pair<int, int>>{{0, 1}, {1, 3}, {3, 6}}));
    EXPECT_EQ(r0.runner->nccl_out(), nccl);
    by_path.push_back(run_rank0_steps(*r0.runner));
    EXPECT_EQ(ring.workers_[0]->nccl_in(), nccl);  // both ends agreed
    EXPECT_TRUE(ring.workers_[0]->nccl_out());     // worker -> worker is NCCL either way
    // Rank 0's layers ran on its device buffer exactly when the hop is NCCL.
    EXPECT_EQ(r0.shard->device_calls, nccl ? 3 : 0);
    EXPECT_EQ(r0.shard->host_calls, nccl ? 0 : 3);
    EXPECT_EQ(r0.shard->embeds, 3);
    EXPECT_EQ(ring.shards_[0]->device_calls, 3);
    r0.runner.reset();
    ring.shut_down();
    for (const StageWorkerResult& r : ring.results_) EXPECT_TRUE(r.ok) << r.reason;
  }
  ASSERT_EQ(by_path.size(), 2u);
  EXPECT_FALSE(by_path[0].empty());
  EXPECT_EQ(by_path[0], by_path[1]);  // NCCL and the host path: the same logits, bit for bit
}

TEST(PipelineRank0Nccl, RankZeroKeepsTheHostPathWhereTheTableSays) {
  struct Case {
    const char* what;
    Rank0Spec r0;
    WorkerSpec w1;
  };
  const std::vector<Case> cases = {
      {"rank 0 on a CPU", {false, 0, true}, {1, 3, true, 2}},
      {"rank 1 on a CPU", {true, 1, true}, {1, 3, false, 0}},
      {"one GPU twice", {true, 5, true}, {1, 3, true, 5}},
      {"NCCL off at rank 0", {true, 1, false}, {1, 3, true, 2}},
      {"NCCL off at rank 1", {true, 1, true}, {1, 3, true, 2, false}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Ring ring({c.w1, {3, 6, false, 0}});
    Rank0 r0(ring, c.r0);
    r0.runner->handshake();
    EXPECT_FALSE(r0.runner->nccl_out());
    run_rank0_steps(*r0.runner);
    EXPECT_FALSE(ring.workers_[0]->nccl_in());
    EXPECT_EQ(r0.shard->device_calls, 0);
    EXPECT_EQ(r0.shard->host_calls, 3);
  }
}

TEST(PipelineRank0Nccl, TwoRanksOverOneLinkTakeNcclOutAndTheHostBack) {
  // A two-rank ring whose rank 0 and rank 1 share one bidirectional link: the answer, the NCCL
  // setup, the device-form steps and the trimmed rows back all travel on it in order.
  auto [r0_end, w_end] = transport::make_inproc_link_pair();
  FakeShard w_shard(1, kLayers, true, 2);
  StageWorker worker(w_shard);
  worker.set_device_link_factory(make_mem_link);
  worker.set_device_timeout(std::chrono::milliseconds(500));
  StageWorkerResult wr;
  std::thread t([&] { wr = worker.run(*w_end, *w_end); });
  {
    auto s = std::make_unique<FakeShard>(0, 1, true, 1, true);
    FakeShard* shard = s.get();
    PipelineOptions o;
    o.max_in_flight = 3;
    o.stats_interval = std::chrono::milliseconds(0);
    PipelineRunner runner(std::move(s), *r0_end, *r0_end, o);
    runner.set_device_link_factory(make_mem_link);
    runner.set_device_timeout(std::chrono::milliseconds(500));
    EXPECT_EQ(runner.handshake(), (std::vector<std::pair<int, int>>{{0, 1}, {1, kLayers}}));
    EXPECT_TRUE(runner.nccl_out());
    run_rank0_steps(runner);
    EXPECT_TRUE(worker.nccl_in());
    EXPECT_FALSE(worker.nccl_out());  // the way back to rank 0
    EXPECT_EQ(shard->device_calls, 3);
    EXPECT_EQ(w_shard.device_calls, 3);
    r0_end.reset();
  }
  t.join();
  EXPECT_TRUE(wr.ok) << wr.reason;
}

TEST(PipelineRank0Nccl, ALostTransferFromRankZeroIsAPipelineErrorWithinTheTimeout) {
  Ring ring({{1, 3, true, 2}, {3, 6, true, 3}});
  Rank0 r0(ring, {}, 1);
  r0.runner->handshake();
  ASSERT_TRUE(r0.runner->nccl_out());
  ASSERT_NE(r0.channel, nullptr);
  {
    std::lock_guard<std::mutex> lk(r0.channel->mu);
    r0.channel->drop_next = true;  // rank 1 never gets the rows
  }
  const ScheduledStep s = scheduled_step(0);
  const auto t0 = std::chrono::steady_clock::now();
  r0.runner->submit(s, PipelineRunner::sample_rows(s));
  try {
    r0.runner->collect();
    ADD_FAILURE() << "collect() returned although rank 1 never got the rows";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));  // the 500 ms device timeout
  EXPECT_THROW(r0.runner->submit(s, PipelineRunner::sample_rows(s)), PipelineError);  // broken for good
  r0.runner.reset();
  ring.shut_down();
  EXPECT_FALSE(ring.results_[0].ok);
}

TEST(PipelineRank0Nccl, AFailedSendFromRankZeroIsAPipelineError) {
  Ring ring({{1, 6, true, 2}});
  Rank0 r0(ring, {}, 1);
  r0.runner->handshake();
  ASSERT_TRUE(r0.runner->nccl_out());
  // The peer's end gone: rank 0's transfer fails (a real NcclLink: an NCCL error or its timeout).
  {
    std::lock_guard<std::mutex> lk(r0.channel->mu);
    r0.channel->fail_sends = true;
  }
  const ScheduledStep s = scheduled_step(0);
  try {
    r0.runner->submit(s, PipelineRunner::sample_rows(s));
    ADD_FAILURE() << "submit() succeeded although the transfer failed";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("peer gone"), std::string::npos) << e.what();
  }
}

TEST(PipelineRank0Nccl, NcclSetupFailureAtRankZeroIsAPipelineErrorNotAHang) {
  Ring ring({{1, 6, true, 2}});
  Rank0 r0(ring, {}, 1);
  r0.runner->set_device_link_factory([](transport::Link&, int, int, std::chrono::nanoseconds) -> std::unique_ptr<transport::DeviceLink> {
    throw transport::TransportError("ncclCommInitRankConfig failed: unhandled system error");
  });
  const auto t0 = std::chrono::steady_clock::now();
  try {
    r0.runner->handshake();
    ADD_FAILURE() << "handshake() succeeded without an NCCL link";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL link from rank 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unhandled system error"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  r0.runner.reset();
  ring.shut_down();
  EXPECT_FALSE(ring.results_[0].ok);  // rank 1 waited for the NCCL id within its 500 ms and failed
}

TEST(PipelineRank0Nccl, AWorkerRefusingTheHelloIsReportedWhileRankZeroWaitsForItsAnswer) {
  // Rank 1's layers do not follow rank 0's: it sends a kError round the ring instead of its
  // device answer. Rank 0 must report that at once, not after its (long) device timeout.
  Ring ring({{2, 6, true, 2}});
  Rank0 r0(ring, {}, 1);
  r0.runner->set_device_timeout(std::chrono::milliseconds(20000));
  const auto t0 = std::chrono::steady_clock::now();
  try {
    r0.runner->handshake();
    ADD_FAILURE() << "handshake() succeeded";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("do not follow on"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace jarvis
