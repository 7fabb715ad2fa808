// The stage workers' device path without GPUs: shards that say they keep their hidden state on a
// "GPU" (host memory here) and a DeviceLink stand-in that moves bytes through memory, in a ring of
// three workers behind a hand-driven rank 0. Checked: the hello sets NCCL up exactly on the hops
// device_hop.h names (worker to worker, different GPUs), records in device form carry the right
// rows, the result equals the same arithmetic done directly, and a transfer that never arrives
// ends in a kError reaching rank 0 instead of a hang. The real NCCL version of this runs on two
// GPUs: tests/gpu/pipeline/nccl_stage_worker_test.cpp.
// Rank 0 on a fake GPU too (PipelineRunner, rank0_device_hop.h): its hop to rank 1 takes NCCL
// exactly where the decision table says, its logits equal the host path's and the arithmetic
// done directly (one rank), and a lost or failed transfer is a PipelineError within the timeout.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/pipeline/pipeline_runner.h"
#include "engine/pipeline/stage_message.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/inproc_link.h"

namespace jarvis {
namespace {

constexpr int kLayers = 6, kHidden = 8, kBlocks = 16, kPage = 4;

// Layer l maps x to x/2 + l + 1: exact in float for these values, and different per layer, so a
// row that skipped, repeated or swapped a stage shows.
void apply_layers(float* x, size_t n, int first, int end) {
  for (int l = first; l < end; ++l) {
    for (size_t i = 0; i < n; ++i) x[i] = x[i] * 0.5f + static_cast<float>(l + 1);
  }
}

// Rank 0's embedding and head, as plain formulas the tests recompute: token t's row is
// (t - 3) / 4 + c / 2 (exact in float); logit v of a row is row[v % hidden] * (v + 1) (exact too).
constexpr int kVocab = 16;
float embed_value(int32_t t, int c) { return static_cast<float>(t - 3) * 0.25f + static_cast<float>(c) * 0.5f; }
float logit_value(const float* row, int v) { return row[v % kHidden] * static_cast<float>(v + 1); }

class FakeShard : public ShardForward {
 public:
  // rank0: holds the embedding and the head (PipelineRunner's shard), layers [0, end).
  FakeShard(int first, int end, bool gpu, uint8_t uuid, bool rank0 = false) : gpu_(gpu) {
    config_.n_layers = kLayers;
    config_.hidden = kHidden;
    config_.vocab_size = kVocab;
    shard_.first_layer = first;
    shard_.end_layer = end;
    shard_.has_embedding = rank0;
    shard_.has_head = rank0;
    uuid_[3] = uuid;
  }
  const ModelConfig& config() const override { return config_; }
  const ShardSpec& shard() const override { return shard_; }
  int num_blocks() const override { return kBlocks; }
  int page_size() const override { return kPage; }
  std::string device_name() const override { return gpu_ ? "fake-gpu" : "cpu"; }
  void embed(const int32_t* t, int n, float* hidden) override {
    if (!shard_.has_embedding) throw InvalidArgument("no embedding");
    ++embeds;
    for (int i = 0; i < n; ++i) {
      for (int c = 0; c < kHidden; ++c) hidden[i * kHidden + c] = embed_value(t[i], c);
    }
  }
  void forward_layers(const BatchView& b, float* hidden) override {
    ++host_calls;
    apply_layers(hidden, static_cast<size_t>(b.total_tokens()) * kHidden, shard_.first_layer, shard_.end_layer);
  }
  void compute_logits(const float* hidden, int n, float* logits) override {
    if (!shard_.has_head) throw InvalidArgument("no head");
    for (int r = 0; r < n; ++r) {
      for (int v = 0; v < kVocab; ++v) logits[r * kVocab + v] = logit_value(hidden + r * kHidden, v);
    }
  }

  bool has_device_hidden() const override { return gpu_; }
  int device_ordinal() const override { return gpu_ ? 0 : -1; }
  std::array<uint8_t, 16> device_uuid() const override { return uuid_; }
  float* device_hidden(int n) override {
    if (dev_.size() < static_cast<size_t>(n) * kHidden) dev_.resize(static_cast<size_t>(n) * kHidden);
    return dev_.data();
  }
  void forward_layers_device(const BatchView& b) override {
    ++device_calls;
    apply_layers(dev_.data(), static_cast<size_t>(b.total_tokens()) * kHidden, shard_.first_layer, shard_.end_layer);
  }
  void hidden_to_device(const float* h, int n) override {
    std::memcpy(device_hidden(n), h, static_cast<size_t>(n) * kHidden * sizeof(float));
  }
  void hidden_to_host(float* h, int n) override {
    std::memcpy(h, dev_.data(), static_cast<size_t>(n) * kHidden * sizeof(float));
  }

  int host_calls = 0, device_calls = 0, embeds = 0;

 private:
  bool gpu_;
  ModelConfig config_;
  ShardSpec shard_;
  std::array<uint8_t, 16> uuid_{};
  std::vector<float> dev_;
};

// The in-memory "NCCL": rank 0 of a pair registers a channel and sends its key over the control
// link, as NcclLink sends its unique id; rank 1 looks it up.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<uint8_t>> q;
  bool drop_next = false;  // the next send vanishes: a peer dying mid-transfer
  bool fail_sends = false;  // sends throw LinkBroken: the transfer failed at the sender
};

std::mutex g_mu;
std::map<uint64_t, std::shared_ptr<Channel>> g_channels;
uint64_t g_next_key = 1;

class MemDeviceLink : public transport::DeviceLink {
 public:
  MemDeviceLink(std::shared_ptr<Channel> c, std::chrono::nanoseconds timeout) : c_(std::move(c)), timeout_(timeout) {}
  void send(const void* data, size_t bytes) override {
    std::lock_guard<std::mutex> lk(c_->mu);
    if (c_->fail_sends) throw transport::LinkBroken("transfer failed: peer gone");
    if (c_->drop_next) {
      c_->drop_next = false;
      return;
    }
    const auto* p = static_cast<const uint8_t*>(data);
    c_->q.emplace_back(p, p + bytes);
    c_->cv.notify_all();
  }
  void recv(void* data, size_t bytes) override {
    std::unique_lock<std::mutex> lk(c_->mu);
    if (!c_->cv.wait_for(lk, timeout_, [&] { return !c_->q.empty(); })) {
      throw transport::LinkBroken("device transfer timed out");
    }
    if (c_->q.front().size() != bytes) throw transport::LinkBroken("device transfer of the wrong size");
    std::memcpy(data, c_->q.front().data(), bytes);
    c_->q.pop_front();
  }

 private:
  std::shared_ptr<Channel> c_;
  std::chrono::nanoseconds timeout_;
};

std::unique_ptr<transport::DeviceLink> make_mem_link(transport::Link& control, int rank, int,
                                                     std::chrono::nanoseconds timeout) {
  if (rank == 0) {
    auto c = std::make_shared<Channel>();
    uint64_t key = 0;
    {
      std::lock_guard<std::mutex> lk(g_mu);
      key = g_next_key++;
      g_channels[key] = c;
    }
    control.send(transport::MessageType::kData, 0, &key, sizeof(key));
    return std::make_unique<MemDeviceLink>(c, timeout);
  }
  const transport::Message m = control.recv(timeout);
  uint64_t key = 0;
  if (m.payload.size() != sizeof(key)) throw transport::FrameError("not a channel key");
  std::memcpy(&key, m.payload.data(), sizeof(key));
  std::lock_guard<std::mutex> lk(g_mu);
  return std::make_unique<MemDeviceLink>(g_channels.at(key), timeout);
}

StageLimits limits() {
  StageLimits l;
  l.hidden = kHidden;
  l.num_blocks = kBlocks;
  l.page_size = kPage;
  return l;
}

struct WorkerSpec {
  int first, end;
  bool gpu;
  uint8_t uuid;
  bool nccl = true;
};

// Rank 0 (layers [0, 1), driven by the test) and workers after it.
class Ring {
 public:
  explicit Ring(const std::vector<WorkerSpec>& specs) {
    auto [r0_out, first_in] = transport::make_inproc_link_pair();
    to_first_ = std::move(r0_out);
    std::unique_ptr<transport::Link> in = std::move(first_in);
    results_.resize(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      shards_.push_back(std::make_unique<FakeShard>(specs[i].first, specs[i].end, specs[i].gpu, specs[i].uuid));
      workers_.push_back(std::make_unique<StageWorker>(*shards_.back()));
      workers_.back()->set_device_link_factory(make_mem_link);
      workers_.back()->set_nccl(specs[i].nccl);
      workers_.back()->set_device_timeout(std::chrono::milliseconds(500));
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      auto [out, next_in] = transport::make_inproc_link_pair();
      StageWorker& w = *workers_[i];
      StageWorkerResult& r = results_[i];
      threads_.emplace_back([&w, &r, in = std::move(in), out = std::move(out)]() mutable {
        r = w.run(*in, *out);
        out.reset();
      });
      in = std::move(next_in);
    }
    from_last_ = std::move(in);
  }
  ~Ring() { shut_down(); }
  void shut_down() {
    to_first_.reset();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  StageRecord round(const std::vector<uint8_t>& record) {
    to_first_->send(record);
    const transport::Message m = from_last_->recv(std::chrono::seconds(10));
    return decode_stage_record(m.payload, limits());
  }
  StageRecord hello() {
    StageHello h;
    h.n_layers = kLayers;
    h.hidden = kHidden;
    h.num_blocks = kBlocks;
    h.page_size = kPage;
    h.tail_rank = 0;
    h.ranges = {{0, 1}};
    return round(encode_stage_hello(1, h));
  }

  std::vector<std::unique_ptr<FakeShard>> shards_;
  std::vector<std::unique_ptr<StageWorker>> workers_;
  std::vector<StageWorkerResult> results_;
  std::vector<std::thread> threads_;
  std::unique_ptr<transport::Link> to_first_, from_last_;
};

BatchView step_batch(int step) {
  BatchView b;
  b.seqs.push_back({1, 3 + step, 0, {0, 1, 2}, true});
  b.seqs.push_back({2, 1, 4 + step, {3, 4, 5}, true});
  return b;
}

// Three steps round the ring; every returned row must equal layers [1, 6) applied directly.
void run_steps(Ring& ring) {
  for (int step = 0; step < 3; ++step) {
    const BatchView b = step_batch(step);
    const int n = b.total_tokens();
    std::vector<float> h(static_cast<size_t>(n) * kHidden);
    for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i % 13) - 6.0f + 0.25f * step;
    const std::vector<int> rows = {0, n - 1};
    const StageRecord back = ring.round(encode_stage_step(10 + step, 0, b, h.data(), kHidden, kPage, rows));
    ASSERT_EQ(back.kind, StageKind::kStep) << back.error;
    ASSERT_TRUE(back.trimmed);
    ASSERT_EQ(back.hidden.size(), rows.size() * kHidden);
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<float> want(h.begin() + rows[r] * kHidden, h.begin() + (rows[r] + 1) * kHidden);
      apply_layers(want.data(), want.size(), 1, kLayers);
      for (int c = 0; c < kHidden; ++c) EXPECT_EQ(back.hidden[r * kHidden + c], want[c]) << "step " << step;
    }
  }
}

TEST(PipelineDevicePath, DistinctGpusMoveRowsDeviceToDevice) {
  Ring ring({{1, 2, true, 1}, {2, 4, true, 2}, {4, 6, true, 3}});
  const StageRecord hello = ring.hello();
  ASSERT_EQ(hello.kind, StageKind::kHello) << hello.error;
  ASSERT_EQ(hello.hello.devices.size(), 4u);
  EXPECT_FALSE(hello.hello.devices[0].cuda);  // rank 0 stated none
  EXPECT_TRUE(hello.hello.devices[2].cuda && hello.hello.devices[2].nccl);
  run_steps(ring);
  // Read after a step went round: a worker sets its output hop up after forwarding the hello,
  // and the step's path through the links orders that before these reads.
  // Rank 0's hops stay on the host; 1 -> 2 and 2 -> 3 go device to device.
  EXPECT_FALSE(ring.workers_[0]->nccl_in());
  EXPECT_TRUE(ring.workers_[0]->nccl_out());
  EXPECT_TRUE(ring.workers_[1]->nccl_in());
  EXPECT_TRUE(ring.workers_[1]->nccl_out());
  EXPECT_TRUE(ring.workers_[2]->nccl_in());
  EXPECT_FALSE(ring.workers_[2]->nccl_out());
  for (const auto& s : ring.shards_) {
    EXPECT_EQ(s->device_calls, 3);
    EXPECT_EQ(s->host_calls, 0);
  }
  ring.shut_down();
  for (const StageWorkerResult& r : ring.results_) EXPECT_TRUE(r.ok) << r.reason;
}

TEST(PipelineDevicePath, SameGpuCpuAndDisabledHopsKeepTheHostPath) {
  // 1 -> 2 share a GPU, 2 -> 3 is GPU -> CPU; 3 -> 4 has NCCL switched off at 4 (JARVIS_NCCL=0).
  Ring ring({{1, 2, true, 7}, {2, 3, true, 7}, {3, 4, false, 0}, {4, 5, true, 1}, {5, 6, true, 2, false}});
  const StageRecord hello = ring.hello();
  ASSERT_EQ(hello.kind, StageKind::kHello) << hello.error;
  run_steps(ring);
  for (const auto& w : ring.workers_) {
    EXPECT_FALSE(w->nccl_in());
    EXPECT_FALSE(w->nccl_out());
  }
  for (const auto& s : ring.shards_) EXPECT_EQ(s->device_calls, 0);
}

TEST(PipelineDevicePath, MixedHopsUploadAndDownloadAtTheirEnds) {
  // CPU -> GPU a -> GPU b -> CPU: only the middle hop is NCCL, so worker 2 uploads what came on
  // the host and worker 3 downloads for the host hop after it.
  Ring ring({{1, 2, false, 0}, {2, 3, true, 1}, {3, 5, true, 2}, {5, 6, false, 0}});
  ASSERT_EQ(ring.hello().kind, StageKind::kHello);
  run_steps(ring);
  EXPECT_TRUE(ring.workers_[1]->nccl_out());
  EXPECT_TRUE(ring.workers_[2]->nccl_in());
  EXPECT_FALSE(ring.workers_[2]->nccl_out());
  EXPECT_EQ(ring.shards_[1]->device_calls, 3);
  EXPECT_EQ(ring.shards_[2]->device_calls, 3);
  EXPECT_EQ(ring.shards_[3]->host_calls, 3);
}

TEST(PipelineDevicePath, ALostTransferIsAReportedFailureNotAHang) {
  Ring ring({{1, 3, true, 1}, {3, 6, true, 2}});
  ASSERT_EQ(ring.hello().kind, StageKind::kHello);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    for (auto& [key, c] : g_channels) c->drop_next = true;  // only this ring's channel has no data queued
  }
  const BatchView b = step_batch(0);
  std::vector<float> h(static_cast<size_t>(b.total_tokens()) * kHidden, 1.0f);
  const auto t0 = std::chrono::steady_clock::now();
  const StageRecord back = ring.round(encode_stage_step(5, 0, b, h.data(), kHidden, kPage, {0}));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));  // the 500 ms device timeout
  ASSERT_EQ(back.kind, StageKind::kError);
  EXPECT_NE(back.error.find("timed out"), std::string::npos) << back.error;
  ring.shut_down();
  EXPECT_FALSE(ring.results_[1].ok);
}

TEST(PipelineDevicePath, ADeviceFormRecordFromRankZeroIsRefused) {
  Ring ring({{1, 3, true, 1}, {3, 6, true, 2}});
  ASSERT_EQ(ring.hello().kind, StageKind::kHello);
  const StageRecord back = ring.round(encode_stage_step_device(9, 0, step_batch(0), kHidden, kPage, {0}));
  ASSERT_EQ(back.kind, StageKind::kError);
  EXPECT_NE(back.error.find("device"), std::string::npos) << back.error;
}


// ---- Rank 0 on a (fake) GPU: its hop to rank 1 (PipelineRunner, rank0_device_hop.h) ----

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
      std::lock_guard<std::mutex> lk(g_mu);
      channel = g_channels.at(g_next_key - 1);
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

TEST(PipelineDevicePath, RankZeroOnAGpuSendsItsRowsToRankOneOverNccl) {
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

TEST(PipelineDevicePath, RankZeroKeepsTheHostPathWhereTheTableSays) {
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

TEST(PipelineDevicePath, TwoRanksOverOneLinkTakeNcclOutAndTheHostBack) {
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

TEST(PipelineDevicePath, ALostTransferFromRankZeroIsAPipelineErrorWithinTheTimeout) {
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

TEST(PipelineDevicePath, AFailedSendFromRankZeroIsAPipelineError) {
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

TEST(PipelineDevicePath, NcclSetupFailureAtRankZeroIsAPipelineErrorNotAHang) {
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

TEST(PipelineDevicePath, AWorkerRefusingTheHelloIsReportedWhileRankZeroWaitsForItsAnswer) {
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
