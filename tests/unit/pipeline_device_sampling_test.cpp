// Rank 0 of a pipeline ring sampling where its head is (a GPU in production), on the CPU: rank 0's
// shard is a CpuShard behind a double that claims device sampling and samples with
// sample_request_on_host (the reference every device must match), so the engine, PipelineExecutor
// and PipelineRunner take the device path end to end over a three-rank ring (workers on threads,
// in-process links). Tokens, logprobs, top logprobs and prompt logprobs must equal the one-rank
// engine's and the plain ring's exactly, with three micro-batches in flight and with one: every
// path computes the same logits bit for bit (pipeline_ring_test.cpp says why no rounding enters;
// batch_invariance_test.cpp that a row's logits do not depend on its batch) and samples them with
// the same float operations from the same uniform draws, so exact equality is the right check.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "csrc/model/cpu_shard.h"
#include "csrc/sampling/sample_request.h"
#include "csrc/tokenizer/tokenizer.h"
#include "engine/engine.h"
#include "engine/pipeline/pipeline_executor.h"
#include "engine/pipeline/stage_worker.h"
#include "engine/step_runner.h"
#include "engine_collector.h"
#include "kernels/cpu/thread_pool.h"
#include "pipeline_workload.h"
#include "transport/inproc_link.h"

namespace jarvis {
namespace {

using namespace pipeline_test;

constexpr int kBlocks = 96;

// A CPU shard that claims to sample on its device: sample_logits computes the rows' logits and
// samples them on the host with the reference, counting the rows.
class SamplingShard : public ShardForward {
 public:
  SamplingShard(const Model& m, int blocks) : pool_(1), inner_(m, blocks, kPageSize, pool_) {}
  const ModelConfig& config() const override { return inner_.config(); }
  const ShardSpec& shard() const override { return inner_.shard(); }
  int num_blocks() const override { return inner_.num_blocks(); }
  int page_size() const override { return inner_.page_size(); }
  std::string device_name() const override { return "cpu (sampling)"; }
  void embed(const int32_t* t, int n, float* h) override { inner_.embed(t, n, h); }
  void forward_layers(const BatchView& b, float* h) override { inner_.forward_layers(b, h); }
  void compute_logits(const float* h, int n, float* l) override { inner_.compute_logits(h, n, l); }
  bool samples_on_device() const override { return true; }
  void sample_logits(const float* hidden, const std::vector<SampleRequest>& requests, SampleResult* out) override {
    const int v = config().vocab_size;
    std::vector<float> logits(requests.size() * static_cast<size_t>(v));
    inner_.compute_logits(hidden, static_cast<int>(requests.size()), logits.data());
    for (size_t i = 0; i < requests.size(); ++i) {
      out[i] = sample_request_on_host(requests[i], logits.data() + i * static_cast<size_t>(v), v);
    }
    *sampled += static_cast<int>(requests.size());
  }
  std::shared_ptr<int> sampled = std::make_shared<int>(0);  // outlives the shard (the engine owns it)

 private:
  cpu::ThreadPool pool_;
  CpuShard inner_;
};

// Forwards everything, the sampling hooks included, and records how many steps were in the ring
// at once and how many went with sample requests.
class CountingExecutor : public StepExecutor {
 public:
  explicit CountingExecutor(std::unique_ptr<StepExecutor> inner) : inner_(std::move(inner)) {}
  int max_in_flight() const override { return inner_->max_in_flight(); }
  void submit(const ScheduledStep& step, const std::vector<int>& rows) override {
    inner_->submit(step, rows);
    count(false);
  }
  bool samples_on_device() const override { return inner_->samples_on_device(); }
  void submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                      const std::vector<SampleRequest>& requests) override {
    inner_->submit_sampled(step, rows, requests);
    count(true);
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
  int sampled_steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sampled_steps_;
  }

 private:
  void count(bool sampled) {
    std::lock_guard<std::mutex> lock(mu_);
    max_outstanding_ = std::max(max_outstanding_, ++outstanding_);
    sampled_steps_ += sampled;
  }
  std::unique_ptr<StepExecutor> inner_;
  mutable std::mutex mu_;
  int outstanding_ = 0, max_outstanding_ = 0, sampled_steps_ = 0;
};

// Ranks 1 ([10, 20)) and 2 ([20, 30)) on threads; destroying the executor stops them in turn.
struct Workers {
  std::unique_ptr<Model> m1, m2;
  std::unique_ptr<StageWorker> w1, w2;
  std::thread t1, t2;
  std::unique_ptr<transport::Link> to_next, from_last;

  Workers() {
    m1 = load_model(model_path(), shard(10, 20, false));
    m2 = load_model(model_path(), shard(20, -1, false));
    w1 = std::make_unique<StageWorker>(*m1, kBlocks, kPageSize, 1);
    w2 = std::make_unique<StageWorker>(*m2, kBlocks, kPageSize, 1);
    auto [r0_out, w1_in] = transport::make_inproc_link_pair();
    auto [w1_out, w2_in] = transport::make_inproc_link_pair();
    auto [w2_out, r0_in] = transport::make_inproc_link_pair();
    t1 = spawn(*w1, std::move(w1_in), std::move(w1_out));
    t2 = spawn(*w2, std::move(w2_in), std::move(w2_out));
    to_next = std::move(r0_out);
    from_last = std::move(r0_in);
  }
  ~Workers() {
    to_next.reset();  // unused (the executor was never made): stops worker 1, then 2
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

EngineConfig config() {
  EngineConfig c;
  c.threads = 1;
  c.page_size = kPageSize;
  c.kv_blocks = kBlocks;
  c.max_num_seqs = 16;
  c.prefill_chunk = 8;  // prompts (and their prompt-logprob rows) cross several steps
  return c;
}

SamplingParams penalised(uint64_t seed) {
  SamplingParams p;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.seed = seed;
  return p;
}

constexpr int kTokens = 6;

std::vector<Request> requests(const Tokenizer& tok) {
  const char* prompts[] = {"The capital of France is", "Once upon a time", "1, 2, 3,", "Hello",
                           "Write a few words about the sea.", "def fibonacci(n):", "List three colors:",
                           "The quick brown fox jumps over the lazy dog because"};
  std::vector<Request> rs(8);
  for (int i = 0; i < 8; ++i) {
    rs[i].id = "r" + std::to_string(i);
    rs[i].prompt = tok.encode(prompts[i], false, false);
    rs[i].options.max_tokens = kTokens;
    rs[i].options.ignore_eos = true;
    rs[i].options.sampling.seed = 42 + i;
    rs[i].options.sampling.logprobs = 3;
    switch (i % 4) {
      case 0:  // greedy
        rs[i].options.sampling.temperature = 0.0f;
        break;
      case 1:  // seeded top-k / top-p
        rs[i].options.sampling.temperature = 0.8f;
        rs[i].options.sampling.top_k = 40;
        rs[i].options.sampling.top_p = 0.9f;
        break;
      case 2:  // seeded penalties
        rs[i].options.sampling = penalised(7 + i);
        rs[i].options.sampling.logprobs = 3;
        break;
      default:  // seeded plain sampling
        break;
    }
  }
  rs[3].options.prompt_logprobs = 2;  // their prompt rows come back as logits beside sampled rows
  rs[7].options.prompt_logprobs = 1;
  return rs;
}

struct Outputs {
  std::map<std::string, std::vector<StreamEvent>> tokens;
  std::map<std::string, std::vector<PromptTokenLogprob>> prompt;
};

Outputs run_all(Engine& engine, const std::vector<Request>& reqs) {
  Outputs out;
  std::mutex mu;
  engine_test::Collector done;
  for (const Request& r : reqs) {
    const std::string id = r.id;
    UpdateCallback finish = done.callback(id);
    engine.submit(r, [&, id, finish](const RequestUpdate& u) {
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const StreamEvent& e : u.tokens) out.tokens[id].push_back(e);
        for (const PromptTokenLogprob& p : u.prompt_logprobs) out.prompt[id].push_back(p);
      }
      finish(u);
    });
  }
  EXPECT_TRUE(done.wait(static_cast<int>(reqs.size())));
  for (const Request& r : reqs) EXPECT_TRUE(done.get(r.id).error.empty()) << r.id << ": " << done.get(r.id).error;
  return out;
}

void expect_same(const Outputs& want, const Outputs& got, const std::string& what) {
  for (const auto& [id, events] : want.tokens) {
    ASSERT_EQ(events.size(), static_cast<size_t>(kTokens)) << id;
    const auto found = got.tokens.find(id);
    ASSERT_TRUE(found != got.tokens.end()) << what << " " << id;
    const std::vector<StreamEvent>& have = found->second;
    ASSERT_EQ(have.size(), events.size()) << what << " " << id;
    for (size_t k = 0; k < events.size(); ++k) {
      const StreamEvent &a = events[k], &b = have[k];
      EXPECT_EQ(a.token, b.token) << what << " " << id << " token " << k;
      EXPECT_EQ(a.logprob, b.logprob) << what << " " << id << " token " << k;
      ASSERT_EQ(a.top_logprobs.size(), b.top_logprobs.size()) << what << " " << id << " token " << k;
      for (size_t j = 0; j < a.top_logprobs.size(); ++j) {
        EXPECT_EQ(a.top_logprobs[j].token, b.top_logprobs[j].token) << what << " " << id << " token " << k;
        EXPECT_EQ(a.top_logprobs[j].logprob, b.top_logprobs[j].logprob) << what << " " << id << " token " << k;
      }
    }
  }
  ASSERT_EQ(want.prompt.size(), got.prompt.size()) << what;
  for (const auto& [id, entries] : want.prompt) {
    const std::vector<PromptTokenLogprob>& have = got.prompt.at(id);
    ASSERT_EQ(entries.size(), have.size()) << what << " " << id;
    for (size_t k = 0; k < entries.size(); ++k) {
      EXPECT_EQ(entries[k].token, have[k].token) << what << " " << id << " prompt token " << k;
      EXPECT_EQ(entries[k].logprob, have[k].logprob) << what << " " << id << " prompt token " << k;
      ASSERT_EQ(entries[k].top_logprobs.size(), have[k].top_logprobs.size()) << what << " " << id;
      for (size_t j = 0; j < entries[k].top_logprobs.size(); ++j) {
        EXPECT_EQ(entries[k].top_logprobs[j].token, have[k].top_logprobs[j].token) << what << " " << id;
        EXPECT_EQ(entries[k].top_logprobs[j].logprob, have[k].top_logprobs[j].logprob) << what << " " << id;
      }
    }
  }
}

TEST(PipelineDeviceSampling, RankZeroSamplingGivesWhatOneRankAndThePlainRingGive) {
  std::unique_ptr<Model> full = load_model(model_path());
  std::unique_ptr<Model> rank0 = load_model(model_path(), shard(0, 10, true));
  std::unique_ptr<Tokenizer> tok = Tokenizer::create(full->tokenizer_data());
  const std::vector<Request> reqs = requests(*tok);
  Outputs want;
  {
    Engine one(*full, *tok, config(), nullptr);
    want = run_all(one, reqs);
  }
  ASSERT_EQ(want.prompt.size(), 2u);
  ASSERT_FALSE(want.prompt["r3"].empty());

  struct Case {
    std::string name;
    bool sampling_shard;  // rank 0 claims device sampling
    bool device_sampling;  // PipelineOptions::device_sampling (the switch)
    int micro_batches;
  };
  const Case cases[] = {{"plain ring, M=3", false, true, 3},
                        {"device sampling, M=3", true, true, 3},
                        {"device sampling, M=1", true, true, 1},
                        {"device sampling switched off, M=3", true, false, 3}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Workers w;
    PipelineOptions o;
    o.max_in_flight = c.micro_batches;
    o.device_sampling = c.device_sampling;
    std::shared_ptr<int> sampled = std::make_shared<int>(0);
    std::unique_ptr<PipelineExecutor> exec;
    if (c.sampling_shard) {
      auto s = std::make_unique<SamplingShard>(*rank0, kBlocks);
      sampled = s->sampled;
      exec = std::make_unique<PipelineExecutor>(std::move(s), std::move(w.to_next), std::move(w.from_last), o);
    } else {
      exec = std::make_unique<PipelineExecutor>(*rank0, kBlocks, kPageSize, 1, std::move(w.to_next),
                                                std::move(w.from_last), o);
    }
    exec->handshake();
    const bool on_device = c.sampling_shard && c.device_sampling;
    EXPECT_EQ(exec->samples_on_device(), on_device);
    auto counting = std::make_unique<CountingExecutor>(std::move(exec));
    CountingExecutor* seen = counting.get();
    Outputs got;
    int max_outstanding = 0, sampled_steps = 0;
    {
      Engine ring(*rank0, *tok, config(), nullptr, std::move(counting));
      got = run_all(ring, reqs);
      EXPECT_TRUE(ring.stats().degraded.empty()) << ring.stats().degraded;
      max_outstanding = seen->max_outstanding();
      sampled_steps = seen->sampled_steps();
    }
    expect_same(want, got, c.name);
    // Every generated token was sampled on rank 0's "device" exactly when the path is on.
    EXPECT_EQ(*sampled, on_device ? static_cast<int>(reqs.size()) * kTokens : 0);
    EXPECT_EQ(sampled_steps > 0, on_device);
    EXPECT_EQ(max_outstanding, c.micro_batches) << "steps (each with its own requests) in the ring at once";
  }
}

// With the tail on the last rank the logits arrive as host floats: rank 0 has no head to sample
// with, so the host samples even when its shard could.
TEST(PipelineDeviceSampling, TailOnTheLastRankKeepsHostSampling) {
  ShardSpec s = shard(0, 10, true);
  s.has_head = false;
  std::unique_ptr<Model> m = load_model(model_path(), s);
  auto [a, b] = transport::make_inproc_link_pair();
  PipelineOptions o;
  o.stats_interval = std::chrono::milliseconds(0);
  PipelineRunner runner(std::make_unique<SamplingShard>(*m, kBlocks), *a, *b, o);
  EXPECT_TRUE(runner.shard().samples_on_device());
  EXPECT_FALSE(runner.samples_on_device());
  ScheduledStep step;
  EXPECT_THROW(runner.submit_sampled(step, {0}, 0, {SampleRequest{}}), InvalidArgument);
  EXPECT_EQ(runner.in_flight(), 0);
}

TEST(PipelineDeviceSampling, BadRequestsAreRefusedBeforeAnythingIsSent) {
  std::unique_ptr<Model> m = load_model(model_path(), shard(0, 10, true));
  auto [a, b] = transport::make_inproc_link_pair();
  PipelineOptions o;
  o.stats_interval = std::chrono::milliseconds(0);
  PipelineRunner runner(std::make_unique<SamplingShard>(*m, kBlocks), *a, *b, o);
  EXPECT_TRUE(runner.samples_on_device());
  ScheduledStep step;
  SampleRequest outside, first;
  outside.row = 2;
  EXPECT_THROW(runner.submit_sampled(step, {0, 1}, 0, {outside}), InvalidArgument);
  EXPECT_THROW(runner.submit_sampled(step, {0, 1}, 0, {first, first}), InvalidArgument);
  EXPECT_EQ(runner.in_flight(), 0);
  o.device_sampling = false;
  auto [c, d] = transport::make_inproc_link_pair();
  PipelineRunner off(std::make_unique<SamplingShard>(*m, kBlocks), *c, *d, o);
  EXPECT_FALSE(off.samples_on_device());
  EXPECT_THROW(off.submit_sampled(step, {0}, 0, {first}), InvalidArgument);
}

// The one-rank switch: StepRunner(shard, false) leaves sampling to the host.
TEST(PipelineDeviceSampling, StepRunnerSwitch) {
  std::unique_ptr<Model> full = load_model(model_path());
  StepRunner on(std::make_unique<SamplingShard>(*full, 8));
  EXPECT_TRUE(on.samples_on_device());
  StepRunner off(std::make_unique<SamplingShard>(*full, 8), false);
  EXPECT_FALSE(off.samples_on_device());
  ScheduledStep step;
  ScheduledSeq seq;
  seq.seq_id = 1;
  seq.tokens = {1, 2};
  seq.sample = true;
  seq.block_table = {0};
  step.seqs.push_back(seq);
  EXPECT_THROW(off.submit_sampled(step, {1}, {SampleRequest{}}), InvalidArgument);
  EXPECT_THROW(off.collect(), InvalidArgument);  // nothing was run
}

}  // namespace
}  // namespace jarvis
