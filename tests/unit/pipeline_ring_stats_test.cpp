// Ring statistics through a real 3-rank ring in one process (rank 0 and two StageWorkers on
// threads, measured in-process links): kStats rounds go with the steps and while the ring is
// idle (also with a kFree echo pending), every rank's entry is there in ring order with its
// layers and step count, and the link counters of neighbouring ranks agree exactly (what one end
// sent, the other received).
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "pipeline_workload.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/inproc_link.h"
#include "transport/measured_link.h"

namespace jarvis {
namespace {

using namespace pipeline_test;
using namespace std::chrono_literals;

std::unique_ptr<transport::Link> measured(std::unique_ptr<transport::Link> l) {
  transport::MeasuredLinkOptions o;
  o.ping_interval = 10ms;
  o.poll = 5ms;
  return transport::make_measured_link(std::move(l), o);
}

ScheduledStep one_seq_step(std::vector<int32_t> tokens, int start_pos) {
  ScheduledStep st;
  ScheduledSeq q;
  q.seq_id = 1;
  q.tokens = std::move(tokens);
  q.start_pos = start_pos;
  q.block_table = {0, 1};
  q.sample = true;
  st.seqs.push_back(q);
  return st;
}

TEST(PipelineRingStats, RoundsCarryEveryRankAndLinkCountersAgree) {
  std::unique_ptr<Model> m0 = load_model(model_path(), shard(0, 10, true));
  std::unique_ptr<Model> m1 = load_model(model_path(), shard(10, 20, false));
  std::unique_ptr<Model> m2 = load_model(model_path(), shard(20, 30, false));
  StageWorker w1(*m1, kNumBlocks, kPageSize, 1), w2(*m2, kNumBlocks, kPageSize, 1);
  auto [r0_out, w1_in] = transport::make_inproc_link_pair();
  auto [w1_out, w2_in] = transport::make_inproc_link_pair();
  auto [w2_out, r0_in] = transport::make_inproc_link_pair();
  std::unique_ptr<transport::Link> to_next = measured(std::move(r0_out)), from_last = measured(std::move(r0_in));
  StageWorkerResult res1, res2;
  auto spawn = [](StageWorker& w, std::unique_ptr<transport::Link> in, std::unique_ptr<transport::Link> out,
                  StageWorkerResult& r) {
    return std::thread([&w, &r, in = measured(std::move(in)), out = measured(std::move(out))]() mutable {
      r = w.run(*in, *out);
      out.reset();
    });
  };
  std::thread t1 = spawn(w1, std::move(w1_in), std::move(w1_out), res1);
  std::thread t2 = spawn(w2, std::move(w2_in), std::move(w2_out), res2);

  std::mutex mu;
  std::vector<RingStats> rounds;
  PipelineOptions opts;
  opts.recv_timeout = 20s;
  opts.stats_interval = 50ms;
  opts.on_stats = [&](const RingStats& s) {
    std::lock_guard<std::mutex> lk(mu);
    rounds.push_back(s);
  };
  constexpr int kDecode = 6;
  {
    PipelineRunner runner(*m0, kNumBlocks, kPageSize, 1, *to_next, *from_last, opts);
    runner.handshake();
    PipelineResult r = runner.run(one_seq_step({1, 2, 3, 4, 5}, 0), {4});
    for (int i = 0; i < kDecode; ++i) {
      std::this_thread::sleep_for(20ms);  // steps spread over several stats intervals
      r = runner.run(one_seq_step({argmax(r.logits.data(), runner.vocab())}, 5 + i), {0});
    }
    runner.free_sequences({1});  // its echo is pending: an idle round must consume it first
    const size_t after_traffic = [&] {
      std::lock_guard<std::mutex> lk(mu);
      return rounds.size();
    }();
    // Idle now: the runner's own thread keeps the rounds coming.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(mu);
        if (rounds.size() >= after_traffic + 2) break;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no ring statistics while idle";
      std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(runner.last_ring_stats().has_value());
  }
  to_next.reset();
  t1.join();
  t2.join();
  from_last.reset();
  ASSERT_TRUE(res1.ok) << res1.reason;
  ASSERT_TRUE(res2.ok) << res2.reason;

  std::lock_guard<std::mutex> lk(mu);
  ASSERT_GE(rounds.size(), 3u);
  const RingStats& last = rounds.back();  // an idle round: nothing else in the ring
  ASSERT_EQ(last.ranks.size(), 3u);
  const uint64_t steps = 1 + kDecode;
  const uint32_t layers[3][2] = {{0, 10}, {10, 20}, {20, 30}};
  for (uint32_t k = 0; k < 3; ++k) {
    const StageRankStats& s = last.ranks[k];
    EXPECT_EQ(s.rank, k);
    EXPECT_EQ(s.first_layer, layers[k][0]);
    EXPECT_EQ(s.end_layer, layers[k][1]);
    EXPECT_EQ(s.steps, steps) << k;
    EXPECT_EQ(s.tokens, 5u + kDecode) << k;
    EXPECT_GT(s.busy_ns, 0u) << k;
    EXPECT_GE(s.wall_ns, s.busy_ns) << k;
    EXPECT_GT(s.rtt_samples, 0u) << k;
    EXPECT_GT(s.rtt_min_ns, 0u) << k;
    // A worker's sent counters were read before it passed this round's record on, the next
    // rank's received ones after it arrived: they differ by exactly that record (20 bytes of
    // header and count, 112 per entry already in it). Rank 0 reads its own counters when the
    // round is back, after sending the record: there they agree.
    const StageRankStats& next = last.ranks[(k + 1) % 3];
    const uint64_t in_transit = k == 0 ? 0 : 1;
    EXPECT_EQ(next.received_messages, s.sent_messages + in_transit) << k;
    EXPECT_EQ(next.received_bytes, s.sent_bytes + in_transit * (20 + 112 * k)) << k;
  }
  EXPECT_EQ(res1.stats.steps, steps);
  // Busy time grows between rounds and the counters never go back.
  for (size_t i = 1; i < rounds.size(); ++i) {
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_GE(rounds[i].ranks[k].busy_ns, rounds[i - 1].ranks[k].busy_ns);
      EXPECT_GE(rounds[i].ranks[k].sent_bytes, rounds[i - 1].ranks[k].sent_bytes);
    }
  }
}

}  // namespace
}  // namespace jarvis
