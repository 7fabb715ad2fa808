// The ring across processes: two real jarvis-worker processes (layers 10..19 and 20..29) on
// localhost over UCX, rank 0 in this test process. Logits must equal the one-rank run bit for bit
// (same argument as pipeline_ring_test.cpp: raw floats on the wire, batch-invariant kernels).
// Then a worker is killed: rank 0 must get a PipelineError quickly, not hang. Last, the ring
// statistics over real processes show a shaped link's round trip.
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "engine/cluster/model_identity.h"
#include "engine/cluster/rendezvous.h"
#include "pipeline_workload.h"
#include "transport/measured_link.h"
#include "transport/ucx/ucx_link.h"

extern char** environ;

namespace jarvis {
namespace {

using namespace pipeline_test;
using Clock = std::chrono::steady_clock;

// A jarvis-worker child; killed on destruction if still running.
class WorkerProcess {
 public:
  WorkerProcess(int rank, int first, int end, uint16_t next_port, const std::string& port_file,
                std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {JARVIS_WORKER_BIN,
                                     "--model", model_path(),
                                     "--first-layer", std::to_string(first),
                                     "--end-layer", std::to_string(end),
                                     "--listen", "127.0.0.1:0",
                                     "--next", "127.0.0.1:" + std::to_string(next_port),
                                     "--kv-blocks", std::to_string(kNumBlocks),
                                     "--page-size", std::to_string(kPageSize),
                                     "--threads", "1",
                                     "--connect-timeout", "20",
                                     "--port-file", port_file,
                                     "--rank", std::to_string(rank),
                                     "--ranks", "3"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~WorkerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Exit status, -signal, or -1000 when still running after `timeout` (then it is killed).
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      }
      if (Clock::now() > deadline) return -1000;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

 private:
  pid_t pid_ = -1;
};

// The port a worker wrote once listening (it renames the file into place, so it is whole).
uint16_t wait_for_port(const std::string& path, WorkerProcess& w) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    std::ifstream in(path);
    int port = 0;
    if (in >> port && port > 0) return static_cast<uint16_t>(port);
    int st = 0;
    if (::waitpid(w.pid(), &st, WNOHANG) == w.pid()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "worker did not write " << path;
  return 0;
}

ShardSpec s0_shard() {
  ShardSpec s;
  s.end_layer = 10;
  return s;
}

// Rank 0's end of a 3-rank ring of real jarvis-worker processes (layers [10, 20) and [20, 30)),
// connected and past the start-up rendezvous. Use as ASSERT_NO_FATAL_FAILURE(ring.start()).
struct WorkerRing {
  void start(std::vector<std::string> w1_extra = {}) {
    char dir_template[] = "/tmp/jarvis_pipeline_XXXXXX";
    dir = ::mkdtemp(dir_template);
    listener = std::make_unique<transport::UcxListener>("127.0.0.1", 0);
    // The last worker first: it connects to rank 0; the first worker then connects to it.
    w2 = std::make_unique<WorkerProcess>(2, 20, 30, listener->port(), dir + "/w2.port");
    const uint16_t p2 = wait_for_port(dir + "/w2.port", *w2);
    ASSERT_NE(p2, 0);
    w1 = std::make_unique<WorkerProcess>(1, 10, 20, p2, dir + "/w1.port", std::move(w1_extra));
    const uint16_t p1 = wait_for_port(dir + "/w1.port", *w1);
    ASSERT_NE(p1, 0);
    // Accept and connect at once: w2 accepts its upstream only after rank 0 accepted it.
    auto accepted = std::async(std::launch::async, [&] { return listener->accept(std::chrono::seconds(20)); });
    to_next = transport::ucx_connect("127.0.0.1", p1);
    from_last = accepted.get();
    // Start-up check round the ring (engine/cluster/rendezvous.h), as jarvis-serve does.
    const std::vector<RankHello> hellos =
        rendezvous_ring(RankHello::make(0, 3, s0_shard(), model_fingerprint(model_path())), from_last.get(),
                        to_next.get(), {}, std::chrono::seconds(20));
    ASSERT_EQ(hellos.size(), 3u);
    EXPECT_EQ(hellos[2].shard.first_layer, 20);
  }

  ~WorkerRing() {
    std::remove((dir + "/w1.port").c_str());
    std::remove((dir + "/w2.port").c_str());
    if (!dir.empty()) ::rmdir(dir.c_str());
  }

  std::string dir;
  std::unique_ptr<transport::UcxListener> listener;
  std::unique_ptr<WorkerProcess> w2, w1;
  std::unique_ptr<transport::Link> to_next, from_last;
};

TEST(PipelineWorkerProcess, TwoUcxWorkersMatchOneRankAndAKilledWorkerIsReported) {
  std::unique_ptr<Model> rank0 = load_model(model_path(), s0_shard());
  std::unique_ptr<Model> full = load_model(model_path());
  StepRunner reference(*full, kNumBlocks, kPageSize, 2);
  WorkerRing ring;
  ASSERT_NO_FATAL_FAILURE(ring.start());
  transport::Link& to_next = *ring.to_next;
  transport::Link& from_last = *ring.from_last;

  PipelineOptions opts;
  opts.max_in_flight = 3;
  opts.recv_timeout = std::chrono::seconds(20);
  {
    PipelineRunner runner(*rank0, kNumBlocks, kPageSize, 1, to_next, from_last, opts);
    EXPECT_EQ(runner.handshake(), (std::vector<std::pair<int, int>>{{0, 10}, {10, 20}, {20, 30}}));
    const auto t0 = Clock::now();
    const WorkloadStats s = run_workload(runner, reference, 3, 4, 4, 8);
    std::printf("UCX ring 10,10,10 M=3: %d steps, %d logit rows equal, %.2f s\n", s.steps, s.compared_rows,
                std::chrono::duration<double>(Clock::now() - t0).count());
    EXPECT_GT(s.compared_rows, 10);

    // A killed worker: the next step fails with PipelineError within the link's failure
    // detection (bootstrap socket: milliseconds), well before the receive timeout.
    ::kill(ring.w2->pid(), SIGKILL);
    ScheduledStep st;
    ScheduledSeq q;
    q.seq_id = 1;
    q.tokens = {1, 2};
    q.block_table = {0};
    q.sample = true;
    st.seqs.push_back(q);
    const auto t1 = Clock::now();
    EXPECT_THROW(runner.run(st, {1}), PipelineError);
    const double secs = std::chrono::duration<double>(Clock::now() - t1).count();
    std::printf("killed last worker noticed by rank 0 after %.3f s\n", secs);
    EXPECT_LT(secs, 10.0);
  }
  EXPECT_EQ(ring.w2->wait(std::chrono::seconds(5)), -SIGKILL);
  // Closing rank 0's output ends worker 1 (its downstream is dead too: either way it must exit).
  ring.to_next.reset();
  ring.from_last.reset();
  EXPECT_NE(ring.w1->wait(std::chrono::seconds(10)), -1000) << "worker 1 did not exit";
}

// A clean shutdown: closing rank 0's output stops both workers with exit status 0. Worker 1 also
// shapes its link to worker 2 with a 30 ms delay, which a record's round trip must show.
TEST(PipelineWorkerProcess, ShapedWorkerLinkAndCleanShutdown) {
  WorkerRing ring;
  ASSERT_NO_FATAL_FAILURE(ring.start({"--link-delay", "1-2:30ms,*:0ms"}));
  const auto t0 = Clock::now();
  ring.to_next->send(encode_stage_free(1, {5}));  // one record round the ring proves it is connected
  // The last worker measures its output link: its pings may come before the record.
  transport::Message m = ring.from_last->recv(std::chrono::seconds(10));
  while (m.type == transport::MessageType::kPing) m = ring.from_last->recv(std::chrono::seconds(10));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::printf("round trip with a 30 ms hop: %.1f ms\n", ms);
  EXPECT_GE(ms, 30.0);  // the shaper never delivers early; no upper bound on a loaded machine
  StageLimits lim;
  lim.hidden = 576;
  lim.num_blocks = kNumBlocks;
  lim.page_size = kPageSize;
  EXPECT_EQ(decode_stage_record(m.payload, lim).seq_ids, std::vector<int64_t>{5});
  ring.to_next.reset();
  EXPECT_EQ(ring.w1->wait(std::chrono::seconds(10)), 0);
  EXPECT_EQ(ring.w2->wait(std::chrono::seconds(10)), 0);
}

// Ring statistics across processes: with worker 1 shaping its link to worker 2 by 5 ms, the idle
// statistics rounds report that link's round trip at 5 ms or more (the ping is delayed one way,
// the pong comes back unshaped) and the unshaped links' well below it.
TEST(PipelineWorkerProcess, StatisticsRoundsReportTheShapedLinksRoundTrip) {
  std::unique_ptr<Model> rank0 = load_model(model_path(), s0_shard());
  WorkerRing ring;
  ASSERT_NO_FATAL_FAILURE(ring.start({"--link-delay", "1-2:5ms"}));
  auto to_next = transport::make_measured_link(std::move(ring.to_next));
  auto from_last = transport::make_measured_link(std::move(ring.from_last));
  PipelineOptions opts;
  opts.stats_interval = std::chrono::milliseconds(100);
  {
    PipelineRunner runner(*rank0, kNumBlocks, kPageSize, 1, *to_next, *from_last, opts);
    runner.handshake();
    // Pings go every 500 ms: wait for rounds that carry at least two per link.
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    std::optional<RingStats> s;
    for (;;) {
      s = runner.last_ring_stats();
      bool ready = s.has_value() && s->ranks.size() == 3;
      for (size_t k = 0; ready && k < 3; ++k) ready = s->ranks[k].rtt_samples >= 2;
      if (ready) break;
      ASSERT_LT(Clock::now(), deadline) << "no round trips in the ring statistics";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double rtt_ms[3] = {s->ranks[0].rtt_min_ns / 1e6, s->ranks[1].rtt_min_ns / 1e6, s->ranks[2].rtt_min_ns / 1e6};
    std::printf("link RTT min: 0-1 %.3f ms, 1-2 %.3f ms (5 ms shaped), 2-0 %.3f ms\n", rtt_ms[0], rtt_ms[1], rtt_ms[2]);
    EXPECT_GE(rtt_ms[1], 5.0);
    // Unshaped local links: microseconds; 4 ms leaves room for a loaded machine's scheduling.
    EXPECT_LT(rtt_ms[0], 4.0);
    EXPECT_LT(rtt_ms[2], 4.0);
    EXPECT_EQ(s->ranks[1].first_layer, 10u);
    EXPECT_EQ(s->ranks[2].end_layer, 30u);
  }
  to_next.reset();
  EXPECT_EQ(ring.w1->wait(std::chrono::seconds(10)), 0);
  EXPECT_EQ(ring.w2->wait(std::chrono::seconds(10)), 0);
}

}  // namespace
}  // namespace jarvis
