// Stage workers on GPUs with NCCL between them (engine/pipeline/device_hop.h): the ring's hidden
// states must come back the same whether the worker-to-worker hop goes device to device over
// NCCL or through host memory in the record. SmolLM2 layers [10, 20) and [20, 30) on two
// workers, a hand-driven rank 0 in front (rows made up: the transport, not the model, is under
// test; the model on the GPU is checked in tests/gpu/model/cuda_model_test.cpp).
// Needs two CUDA devices for the NCCL hop and skips, saying so, with fewer; the single-GPU tests
// here check the CudaModel's device-resident calls and that two workers on one GPU keep the host
// path (NCCL refuses one GPU twice in a communicator).
// Rank 0 too (PipelineRunner over a CudaModel, rank0_device_hop.h): on cuda:0 with a worker on
// cuda:1 its hop goes over NCCL and the logits match the host path and one rank on one GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "engine/pipeline/pipeline_runner.h"
#include "engine/pipeline/stage_message.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/inproc_link.h"

namespace jarvis {
namespace {

#ifndef JARVIS_SOURCE_DIR
#define JARVIS_SOURCE_DIR "."
#endif

constexpr int kPage = 16, kBlocks = 32;

int cuda_devices() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

std::string model_path() {
  if (const char* p = std::getenv("JARVIS_TEST_MODEL")) return p;
  return std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

bool file_exists(const std::string& p) { return std::ifstream(p).good(); }

#define SKIP_UNLESS_GPUS(n)                                                                                      \
  do {                                                                                                           \
    const int have_ = cuda_devices();                                                                            \
    if (have_ < (n)) {                                                                                           \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), found " << have_                                      \
                   << ((n) > 1 ? " (NCCL between two GPU ranks needs two GPUs; the lent test machines have one)"  \
                               : "")                                                                             \
                   << ": skipped";                                                                               \
    }                                                                                                            \
    if (!file_exists(model_path())) {                                                                            \
      GTEST_SKIP() << "model file " << model_path() << " not found (set JARVIS_TEST_MODEL): skipped";           \
    }                                                                                                            \
  } while (0)

ShardSpec layers(int first, int end) {
  ShardSpec s;
  s.first_layer = first;
  s.end_layer = end;
  s.has_embedding = false;
  s.has_head = false;
  return s;
}

std::unique_ptr<ShardForward> gpu_shard(const Model& m, int device) {
  CudaShardOptions o;
  o.device = device;
  o.dtype = GpuDType::kF32;
  o.page_size = kPage;
  o.num_blocks = kBlocks;
  return make_cuda_shard(m, o);
}

StageLimits limits(int hidden) {
  StageLimits l;
  l.hidden = hidden;
  l.num_blocks = kBlocks;
  l.page_size = kPage;
  return l;
}

// A prefill of two sequences, then a decode step of both.
std::vector<BatchView> steps() {
  BatchView prefill;
  prefill.seqs.push_back({1, 9, 0, {0}, true});
  prefill.seqs.push_back({2, 20, 0, {1, 2}, true});
  BatchView decode;
  decode.seqs.push_back({1, 1, 9, {0}, true});
  decode.seqs.push_back({2, 1, 20, {1, 2}, true});
  return {prefill, decode};
}

std::vector<float> made_up_hidden(int n, int hidden, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> h(static_cast<size_t>(n) * hidden);
  for (float& x : h) x = d(rng);
  return h;
}

struct RingRun {
  std::vector<std::vector<float>> rows;  // every step's returned rows (all of its tokens)
  bool nccl_1_to_2 = false;
  std::string error;
};

// Rank 0 (this thread, layers [0, 10) on paper) -> worker 1 -> worker 2 -> rank 0, over in-process links.
RingRun run_ring(ShardForward& s1, ShardForward& s2, bool nccl, int n_layers) {
  StageWorker w1(s1), w2(s2);
  w1.set_nccl(nccl);
  w2.set_nccl(nccl);
  auto [r0_out, w1_in] = transport::make_inproc_link_pair();
  auto [w1_out, w2_in] = transport::make_inproc_link_pair();
  auto [w2_out, r0_in] = transport::make_inproc_link_pair();
  StageWorkerResult res1, res2;
  auto spawn = [](StageWorker& w, std::unique_ptr<transport::Link> in, std::unique_ptr<transport::Link> out,
                  StageWorkerResult& r) {
    return std::thread([&w, &r, in = std::move(in), out = std::move(out)]() mutable {
      r = w.run(*in, *out);
      out.reset();
    });
  };
  std::thread t1 = spawn(w1, std::move(w1_in), std::move(w1_out), res1);
  std::thread t2 = spawn(w2, std::move(w2_in), std::move(w2_out), res2);
  const int hidden = s1.config().hidden;
  RingRun run;
  auto round = [&](const std::vector<uint8_t>& rec) {
    r0_out->send(rec);
    return decode_stage_record(r0_in->recv(std::chrono::seconds(120)).payload, limits(hidden));
  };
  StageHello h;
  h.n_layers = n_layers;
  h.hidden = hidden;
  h.num_blocks = kBlocks;
  h.page_size = kPage;
  h.tail_rank = 0;
  h.ranges = {{0, 10}};
  StageRecord back = round(encode_stage_hello(0, h));
  if (back.kind != StageKind::kHello) run.error = back.error;
  int step_id = 1;
  for (const BatchView& b : steps()) {
    if (!run.error.empty()) break;
    const int n = b.total_tokens();
    const std::vector<float> in = made_up_hidden(n, hidden, step_id);
    std::vector<int> all(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
    back = round(encode_stage_step(static_cast<uint64_t>(step_id++), 0, b, in.data(), hidden, kPage, all));
    if (back.kind != StageKind::kStep) run.error = back.error;
    run.rows.push_back(back.hidden);
  }
  run.nccl_1_to_2 = w1.nccl_out() && w2.nccl_in();  // read after a step went round (ordered by the links)
  r0_out.reset();
  t1.join();
  t2.join();
  r0_in.reset();
  if (run.error.empty() && !res1.ok) run.error = res1.reason;
  if (run.error.empty() && !res2.ok) run.error = res2.reason;
  return run;
}

// Both paths run the same kernels on the same devices over the same inputs; only how the rows
// travel differs, and both ways copy them bit for bit. So they should agree exactly; 1e-6
// (normalised) leaves room only for a library reduction whose order varies between runs, while
// a lost, stale or misplaced row gives an error near 1.
double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

void expect_same(const RingRun& a, const RingRun& b) {
  ASSERT_TRUE(a.error.empty()) << a.error;
  ASSERT_TRUE(b.error.empty()) << b.error;
  ASSERT_EQ(a.rows.size(), b.rows.size());
  for (size_t s = 0; s < a.rows.size(); ++s) {
    ASSERT_EQ(a.rows[s].size(), b.rows[s].size());
    ASSERT_FALSE(a.rows[s].empty());
    EXPECT_LT(rel_error(a.rows[s], b.rows[s]), 1e-6) << "step " << s;
  }
}

TEST(NcclStageWorker, TwoGpusMoveHiddenStatesOverNcclAsTheHostPathWould) {
  SKIP_UNLESS_GPUS(2);
  std::unique_ptr<Model> m1 = load_model(model_path(), layers(10, 20));
  std::unique_ptr<Model> m2 = load_model(model_path(), layers(20, -1));
  std::unique_ptr<ShardForward> s1 = gpu_shard(*m1, 0), s2 = gpu_shard(*m2, 1);
  const int n_layers = m1->config().n_layers;
  const RingRun host = run_ring(*s1, *s2, false, n_layers);
  EXPECT_FALSE(host.nccl_1_to_2);
  const RingRun nccl = run_ring(*s1, *s2, true, n_layers);
  EXPECT_TRUE(nccl.nccl_1_to_2) << "cuda:0 -> cuda:1 should have used NCCL";
  expect_same(nccl, host);
}

TEST(NcclStageWorker, TwoWorkersOnOneGpuKeepTheHostPath) {
  SKIP_UNLESS_GPUS(1);
  std::unique_ptr<Model> m1 = load_model(model_path(), layers(10, 20));
  std::unique_ptr<Model> m2 = load_model(model_path(), layers(20, -1));
  std::unique_ptr<ShardForward> s1 = gpu_shard(*m1, 0), s2 = gpu_shard(*m2, 0);
  ASSERT_TRUE(s1->has_device_hidden());
  EXPECT_EQ(s1->device_uuid(), s2->device_uuid());
  const RingRun a = run_ring(*s1, *s2, true, m1->config().n_layers);
  EXPECT_FALSE(a.nccl_1_to_2);  // would have failed in ncclCommInitRank ("duplicate GPU")
  const RingRun b = run_ring(*s1, *s2, false, m1->config().n_layers);
  expect_same(a, b);
}

// The device-resident calls against the host ones on the same shard: upload, layers in place,
// download must give what forward_layers gives.
TEST(NcclStageWorker, DeviceResidentLayersMatchTheHostCall) {
  SKIP_UNLESS_GPUS(1);
  std::unique_ptr<Model> m = load_model(model_path(), layers(10, 20));
  std::unique_ptr<ShardForward> s = gpu_shard(*m, 0);
  const int hidden = m->config().hidden;
  for (const BatchView& b : steps()) {
    const int n = b.total_tokens();
    std::vector<float> host = made_up_hidden(n, hidden, n);
    std::vector<float> dev_out(host.size());
    s->hidden_to_device(host.data(), n);
    s->forward_layers_device(b);
    s->hidden_to_host(dev_out.data(), n);
    s->forward_layers(b, host.data());  // rewrites the same K/V slots with the same values
    EXPECT_LT(rel_error(dev_out, host), 1e-6);
    ASSERT_NE(s->device_hidden(n), nullptr);
  }
  EXPECT_THROW(s->forward_layers_device([] {
    BatchView big;
    big.seqs.push_back({1, 4000, 0, std::vector<int32_t>(250, 0), true});
    return big;
  }()), Error);  // more tokens than device_hidden() was sized for (or than the cache holds)
}

// ---- Rank 0 on a GPU: its hop to rank 1 (PipelineRunner, rank0_device_hop.h) ----

ShardSpec rank0_layers(int end) {
  ShardSpec s;
  s.first_layer = 0;
  s.end_layer = end;
  s.has_embedding = true;
  s.has_head = true;
  return s;
}

// The scheduler's form of steps(), with token ids.
std::vector<ScheduledStep> engine_steps() {
  auto seq = [](int64_t id, int n, int start, std::vector<int32_t> blocks) {
    ScheduledSeq q;
    q.seq_id = id;
    q.start_pos = start;
    q.block_table = std::move(blocks);
    q.sample = true;
    for (int i = 0; i < n; ++i) q.tokens.push_back(static_cast<int32_t>((97 * (i + start) + 31 * id + 5) % 4096));
    return q;
  };
  ScheduledStep prefill, decode;
  prefill.seqs = {seq(1, 9, 0, {0}), seq(2, 20, 0, {1, 2})};
  decode.seqs = {seq(1, 1, 9, {0}), seq(2, 1, 20, {1, 2})};
  return {prefill, decode};
}

struct Rank0Run {
  std::vector<std::vector<float>> logits;  // per step, of its sampled rows
  bool nccl_0_to_1 = false;
  std::string error;
};

// Rank 0 (PipelineRunner over a CudaModel with layers [0, 15) on `device0`) -> the worker -> rank 0.
Rank0Run run_rank0_ring(const Model& m0, int device0, ShardForward& worker_shard, bool nccl) {
  StageWorker w(worker_shard);
  w.set_nccl(nccl);
  auto [r0_out, w_in] = transport::make_inproc_link_pair();
  auto [w_out, r0_in] = transport::make_inproc_link_pair();
  StageWorkerResult res;
  std::thread t([&w, &res, in = std::move(w_in), out = std::move(w_out)]() mutable {
    res = w.run(*in, *out);
    out.reset();
  });
  Rank0Run run;
  try {
    PipelineOptions o;
    o.recv_timeout = std::chrono::seconds(120);
    o.stats_interval = std::chrono::milliseconds(0);
    PipelineRunner runner(gpu_shard(m0, device0), *r0_out, *r0_in, o);
    runner.set_nccl(nccl);
    runner.handshake();
    run.nccl_0_to_1 = runner.nccl_out() && w.nccl_in();
    for (const ScheduledStep& s : engine_steps()) run.logits.push_back(runner.run(s, PipelineRunner::sample_rows(s)).logits);
  } catch (const std::exception& e) {
    run.error = e.what();
  }
  r0_out.reset();
  t.join();
  r0_in.reset();
  if (run.error.empty() && !res.ok) run.error = res.reason;
  return run;
}

// One rank on one GPU: embedding, all layers and the head in one CudaModel.
std::vector<std::vector<float>> one_rank_logits(const Model& full, int device) {
  std::unique_ptr<ShardForward> s = gpu_shard(full, device);
  const int hidden = full.config().hidden, vocab = full.config().vocab_size;
  std::vector<std::vector<float>> out;
  for (const ScheduledStep& step : engine_steps()) {
    std::vector<int32_t> tokens;
    for (const ScheduledSeq& q : step.seqs) tokens.insert(tokens.end(), q.tokens.begin(), q.tokens.end());
    const int n = static_cast<int>(tokens.size());
    std::vector<float> h(static_cast<size_t>(n) * hidden);
    s->embed(tokens.data(), n, h.data());
    s->forward_layers(step.batch_view(), h.data());
    const std::vector<int> rows = PipelineRunner::sample_rows(step);
    std::vector<float> sel;
    for (int r : rows) sel.insert(sel.end(), h.begin() + static_cast<long>(r) * hidden, h.begin() + static_cast<long>(r + 1) * hidden);
    std::vector<float> logits(rows.size() * static_cast<size_t>(vocab));
    s->compute_logits(sel.data(), static_cast<int>(rows.size()), logits.data());
    out.push_back(logits);
  }
  return out;
}

// NCCL against the host path: the same kernels on the same devices, rows copied bit for bit, so
// 1e-6 as expect_same. Against one rank on one GPU: the same f32 kernels over the same shapes,
// on another device of the same kind; 1e-5 leaves room for cuBLAS picking other kernels there,
// while a misrouted or stale row gives an error near 1.
void expect_same_logits(const Rank0Run& a, const std::vector<std::vector<float>>& want, double tol) {
  ASSERT_TRUE(a.error.empty()) << a.error;
  ASSERT_EQ(a.logits.size(), want.size());
  for (size_t s = 0; s < want.size(); ++s) {
    ASSERT_EQ(a.logits[s].size(), want[s].size());
    ASSERT_FALSE(want[s].empty());
    EXPECT_LT(rel_error(a.logits[s], want[s]), tol) << "step " << s;
  }
}

TEST(NcclStageWorker, RankZeroOnOneGpuSendsToAWorkerOnAnotherOverNccl) {
  SKIP_UNLESS_GPUS(2);
  std::unique_ptr<Model> m0 = load_model(model_path(), rank0_layers(15));
  std::unique_ptr<Model> m1 = load_model(model_path(), layers(15, -1));
  std::unique_ptr<Model> full = load_model(model_path(), rank0_layers(-1));
  std::unique_ptr<ShardForward> s1 = gpu_shard(*m1, 1);
  const Rank0Run host = run_rank0_ring(*m0, 0, *s1, false);
  EXPECT_FALSE(host.nccl_0_to_1);
  const Rank0Run nccl = run_rank0_ring(*m0, 0, *s1, true);
  EXPECT_TRUE(nccl.nccl_0_to_1) << "rank 0 on cuda:0 -> rank 1 on cuda:1 should have used NCCL";
  expect_same_logits(nccl, host.logits, 1e-6);
  expect_same_logits(nccl, one_rank_logits(*full, 0), 1e-5);
}

TEST(NcclStageWorker, RankZeroAndAWorkerOnOneGpuKeepTheHostPath) {
  SKIP_UNLESS_GPUS(1);
  std::unique_ptr<Model> m0 = load_model(model_path(), rank0_layers(15));
  std::unique_ptr<Model> m1 = load_model(model_path(), layers(15, -1));
  std::unique_ptr<Model> full = load_model(model_path(), rank0_layers(-1));
  std::unique_ptr<ShardForward> s1 = gpu_shard(*m1, 0);
  const Rank0Run run = run_rank0_ring(*m0, 0, *s1, true);
  EXPECT_FALSE(run.nccl_0_to_1);  // one GPU twice: NCCL would refuse it
  expect_same_logits(run, one_rank_logits(*full, 0), 1e-5);
}

// embed_device leaves in the device buffer exactly what embed returns.
TEST(NcclStageWorker, EmbedOnTheDeviceMatchesTheHostCall) {
  SKIP_UNLESS_GPUS(1);
  std::unique_ptr<Model> m = load_model(model_path(), rank0_layers(2));
  std::unique_ptr<ShardForward> s = gpu_shard(*m, 0);
  const std::vector<int32_t> tokens = {0, 1, 17, 4095, m->config().vocab_size - 1};
  const int n = static_cast<int>(tokens.size()), hidden = m->config().hidden;
  std::vector<float> host(static_cast<size_t>(n) * hidden), dev(host.size());
  s->embed(tokens.data(), n, host.data());
  s->embed_device(tokens.data(), n);
  s->hidden_to_host(dev.data(), n);
  EXPECT_EQ(dev, host);  // the same gather and scale: bit for bit
  const int32_t bad = m->config().vocab_size;
  EXPECT_THROW(s->embed_device(&bad, 1), InvalidArgument);
}

}  // namespace
}  // namespace jarvis
