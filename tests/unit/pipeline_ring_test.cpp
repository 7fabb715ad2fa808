// The pipeline ring in one process: rank 0 (embedding, first layers, head) and two stage workers
// on threads, linked by in-process links, over the real default model. Any split must give the
// same logits as the whole model on one rank, bit for bit: the hidden state crosses the links as
// raw floats, every rank runs the same kernels on the same rows, and the kernels are batch
// invariant (tests/unit/batch_invariance_test.cpp), so there is no rounding to allow for.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "pipeline_workload.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/inproc_link.h"

namespace jarvis {
namespace {

using namespace pipeline_test;

// Rank 0 plus two workers on threads, ring of in-process links; torn down in order on destruction.
struct InprocRing {
  std::unique_ptr<Model> rank0_model, w1_model, w2_model;
  std::unique_ptr<StageWorker> w1, w2;
  std::unique_ptr<transport::Link> to_next, from_last;
  std::unique_ptr<PipelineRunner> runner;
  std::thread t1, t2;
  StageWorkerResult r1, r2;

  // Worker 2 holds [w2_first, w2_end) (default: the rest after worker 1); worker 1 has w1_blocks.
  // rank0_head: rank 0 holds the tail (final norm + lm_head); w2_tail: worker 2 does.
  InprocRing(int a, int b, int max_in_flight, int w2_first = -1, int w2_end = -1, int w1_blocks = kNumBlocks,
             bool rank0_head = true, bool w2_tail = false) {
    ShardSpec s0 = shard(0, a, true);
    s0.has_head = rank0_head;
    rank0_model = load_model(model_path(), s0);
    w1_model = load_model(model_path(), shard(a, a + b, false));
    ShardSpec s2 = shard(w2_first < 0 ? a + b : w2_first, w2_end, false);
    s2.has_head = w2_tail;
    w2_model = load_model(model_path(), s2);
    w1 = std::make_unique<StageWorker>(*w1_model, w1_blocks, kPageSize, 1);
    w2 = std::make_unique<StageWorker>(*w2_model, kNumBlocks, kPageSize, 1);
    auto [r0_out, w1_in] = transport::make_inproc_link_pair();
    auto [w1_out, w2_in] = transport::make_inproc_link_pair();
    auto [w2_out, r0_in] = transport::make_inproc_link_pair();
    to_next = std::move(r0_out);
    from_last = std::move(r0_in);
    t1 = spawn(*w1, std::move(w1_in), std::move(w1_out), r1);
    t2 = spawn(*w2, std::move(w2_in), std::move(w2_out), r2);
    PipelineOptions opts;
    opts.max_in_flight = max_in_flight;
    opts.recv_timeout = std::chrono::seconds(20);
    runner = std::make_unique<PipelineRunner>(*rank0_model, kNumBlocks, kPageSize, 1, *to_next, *from_last, opts);
  }
  // Closing rank 0's output stops worker 1, whose closing output stops worker 2.
  void shut_down() {
    runner.reset();
    to_next.reset();
    if (t1.joinable()) t1.join();
    if (t2.joinable()) t2.join();
    from_last.reset();
  }
  ~InprocRing() { shut_down(); }

  static std::thread spawn(StageWorker& w, std::unique_ptr<transport::Link> in, std::unique_ptr<transport::Link> out,
                           StageWorkerResult& result) {
    return std::thread([&w, &result, in = std::move(in), out = std::move(out)]() mutable {
      result = w.run(*in, *out);
      out.reset();  // tells the next rank to stop
    });
  }
};

void expect_handshake_error(InprocRing& ring, const std::string& words);

void check_split(int a, int b, int max_in_flight, bool tail_last = false) {
  std::unique_ptr<Model> full = load_model(model_path());
  StepRunner reference(*full, kNumBlocks, kPageSize, 2);
  InprocRing ring(a, b, max_in_flight, -1, -1, kNumBlocks, !tail_last, tail_last);
  if (tail_last) {
    // Rank 0 loads no head weights; the last rank does (tied model: token_embd is its lm_head).
    EXPECT_TRUE(ring.rank0_model->weights().output_norm.empty());
    EXPECT_TRUE(ring.rank0_model->weights().lm_head.empty());
    EXPECT_FALSE(ring.w2_model->weights().output_norm.empty());
    cpu::ThreadPool pool(1);
    EXPECT_THROW(ring.rank0_model->compute_logits(nullptr, 0, nullptr, pool), InvalidArgument);
  }
  const std::vector<std::pair<int, int>> ranges = ring.runner->handshake();
  EXPECT_EQ(ranges, (std::vector<std::pair<int, int>>{{0, a}, {a, a + b}, {a + b, 30}}));
  const auto t0 = std::chrono::steady_clock::now();
  const WorkloadStats s = run_workload(*ring.runner, reference, max_in_flight, max_in_flight + 1, 4, 8);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ring.shut_down();
  std::printf("split %d,%d,%d M=%d%s: %d steps, %d logit rows equal, %d decode tokens, %.2f s\n", a, b,
              30 - a - b, max_in_flight, tail_last ? " tail on the last rank" : "", s.steps, s.compared_rows, s.decode_tokens, secs);
  EXPECT_GT(s.compared_rows, 10);
  EXPECT_TRUE(ring.r1.ok) << ring.r1.reason;
  EXPECT_TRUE(ring.r2.ok) << ring.r2.reason;
  EXPECT_EQ(ring.r1.stats.steps, static_cast<uint64_t>(s.steps));
  EXPECT_EQ(ring.r2.stats.steps, static_cast<uint64_t>(s.steps));
  EXPECT_EQ(ring.r1.stats.frees, static_cast<uint64_t>((max_in_flight + 1) * kSeqsPerGroup));
}

TEST(PipelineRing, EvenSplitThreeMicroBatchesMatchesOneRank) { check_split(10, 10, 3); }
TEST(PipelineRing, UnevenSplitOneLayerOnRankZero) { check_split(1, 28, 3); }
TEST(PipelineRing, UnevenSplitOneStepAtATime) { check_split(28, 1, 1); }
// The last rank computes the logits (jarvis-serve --tail last): still bit-identical to one rank.
TEST(PipelineRing, TailOnTheLastRankMatchesOneRank) { check_split(10, 10, 3, true); }
TEST(PipelineRing, TailOnTheLastRankOneLayerThere) { check_split(10, 19, 1, true); }

// Exactly one rank holds the tail, and it is rank 0 or the last rank.
TEST(PipelineRing, HandshakeRefusesNoTail) {
  InprocRing ring(10, 10, 1, -1, -1, kNumBlocks, false, false);
  expect_handshake_error(ring, "no rank holds it");
}

TEST(PipelineRing, HandshakeRefusesTwoTails) {
  InprocRing ring(10, 10, 1, -1, -1, kNumBlocks, true, true);
  expect_handshake_error(ring, "rank 0 holds the tail too");
}

TEST(PipelineRing, TailBeforeTheLastRankIsRefused) {
  std::unique_ptr<Model> m = load_model(model_path(), [] {
    ShardSpec s = shard(10, 20, false);
    s.has_head = true;
    return s;
  }());
  EXPECT_THROW(StageWorker(*m, kNumBlocks, kPageSize, 1), InvalidArgument);
}

// Sends one 5-token step into the ring past rank 0's runner, asking for rows 1 and 4, and decodes
// what the last rank sends back (`vocab` > 0: rank 0 accepts logits of that vocabulary).
StageRecord probe_rows_1_and_4(InprocRing& ring, int vocab) {
  ring.runner->handshake();
  BatchView b;
  b.seqs.push_back({1, 5, 0, {3}, true});
  const std::vector<float> hidden(5 * 576, 0.25f);
  ring.to_next->send(encode_stage_step(7, 0, b, hidden.data(), 576, kPageSize, {1, 4}));
  const transport::Message m = ring.from_last->recv(std::chrono::seconds(10));
  StageLimits lim;
  lim.hidden = 576;
  lim.num_blocks = kNumBlocks;
  lim.page_size = kPageSize;
  lim.vocab = vocab;
  return decode_stage_record(m.payload, lim);
}

// The last rank holding the tail sends back the logits of the rows, not hidden rows.
TEST(PipelineRing, TailRankReturnsLogitsOfTheRows) {
  InprocRing ring(10, 10, 1, -1, -1, kNumBlocks, false, true);
  const StageRecord r = probe_rows_1_and_4(ring, 49152);
  EXPECT_TRUE(r.has_logits);
  EXPECT_EQ(r.rows, (std::vector<int>{1, 4}));
  EXPECT_EQ(r.logits.size(), 2u * 49152);
  ring.shut_down();
}

// Two ranks over one bidirectional link: rank 0's to_next and from_last are the same Link, and so
// are the worker's in and out.
TEST(PipelineRing, TwoRanksOverOneLink) {
  std::unique_ptr<Model> full = load_model(model_path());
  StepRunner reference(*full, kNumBlocks, kPageSize, 2);
  std::unique_ptr<Model> m0 = load_model(model_path(), shard(0, 15, true));
  std::unique_ptr<Model> m1 = load_model(model_path(), shard(15, -1, false));
  StageWorker worker(*m1, kNumBlocks, kPageSize, 1);
  auto [r0, w] = transport::make_inproc_link_pair();
  StageWorkerResult wr;
  std::thread t([&worker, &wr, link = std::move(w)]() mutable { wr = worker.run(*link, *link); });
  {
    PipelineOptions opts;
    opts.max_in_flight = 2;
    PipelineRunner runner(*m0, kNumBlocks, kPageSize, 1, *r0, *r0, opts);
    EXPECT_EQ(runner.handshake(), (std::vector<std::pair<int, int>>{{0, 15}, {15, 30}}));
    const WorkloadStats s = run_workload(runner, reference, 2, 3, 3, 8);
    EXPECT_GT(s.compared_rows, 5);
  }
  r0.reset();
  t.join();
  EXPECT_TRUE(wr.ok) << wr.reason;
}

// A ring that does not fit is refused before the first step, saying what does not fit.
void expect_handshake_error(InprocRing& ring, const std::string& words) {
  try {
    ring.runner->handshake();
    ADD_FAILURE() << "handshake accepted a ring that does not fit";
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
  ring.shut_down();
}

TEST(PipelineRing, HandshakeRefusesAGapBetweenRanks) {
  InprocRing ring(10, 10, 1, 21);
  expect_handshake_error(ring, "do not follow on");
}

TEST(PipelineRing, HandshakeRefusesARingShortOfTheLastLayer) {
  InprocRing ring(10, 10, 1, 20, 29);
  expect_handshake_error(ring, "does not cover");
}

TEST(PipelineRing, HandshakeRefusesAnotherKvLayout) {
  InprocRing ring(10, 10, 1, -1, -1, kNumBlocks / 2);
  expect_handshake_error(ring, "KV layout mismatch");
}

// The last rank sends back only the rows rank 0 computes logits for.
TEST(PipelineRing, LastRankReturnsOnlyTheLogitRows) {
  InprocRing ring(10, 10, 1);
  const StageRecord r = probe_rows_1_and_4(ring, 0);
  EXPECT_TRUE(r.trimmed);
  EXPECT_EQ(r.rows, (std::vector<int>{1, 4}));
  EXPECT_EQ(r.hidden.size(), 2u * 576);
  ring.shut_down();
}

// A worker that fails (here: a record naming a block its cache lacks) reports the cause to rank 0,
// which throws PipelineError with it; the ring then shuts down without hanging.
TEST(PipelineRing, WorkerErrorReachesRankZero) {
  InprocRing ring(10, 10, 1);
  ScheduledStep st;
  ScheduledSeq q;
  q.seq_id = 1;
  q.tokens = {1, 2, 3};
  q.block_table = {0};
  q.sample = true;
  st.seqs.push_back(q);
  // Rank 0 checks tables against its own cache first; give the worker a smaller view of the world
  // by sending a record by hand instead.
  const std::vector<float> hidden(3 * 576, 0.5f);
  BatchView bad = st.batch_view();
  bad.seqs[0].block_table = {kNumBlocks + 5};
  ring.to_next->send(encode_stage_step(1, 0, bad, hidden.data(), 576, kPageSize));
  auto m = ring.from_last->recv(std::chrono::seconds(10));
  StageLimits lim;
  lim.hidden = 576;
  lim.num_blocks = kNumBlocks;
  lim.page_size = kPageSize;
  const StageRecord r = decode_stage_record(m.payload, lim);
  EXPECT_EQ(r.kind, StageKind::kError);
  EXPECT_NE(r.error.find("layers [10, 20)"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("block id"), std::string::npos) << r.error;
  // The failed worker closed its output: the ring is down and says so instead of hanging.
  EXPECT_THROW(ring.runner->run(st, {2}), PipelineError);
  ring.shut_down();
  EXPECT_FALSE(ring.r1.ok);
}

}  // namespace
}  // namespace jarvis
