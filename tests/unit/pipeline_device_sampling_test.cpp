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

#include "csrc/sampling/sample_request.h"
#include "csrc/tokenizer/tokenizer.h"
#include "engine/engine.h"
#include "engine/pipeline/pipeline_executor.h"
#include "engine/step_runner.h"
#include "engine_collector.h"
#include "engine_ring.h"
#include "pipeline_workload.h"
#include "sampling_shard.h"
#include "transport/inproc_link.h"

namespace jarvis {
namespace {

using namespace pipeline_test;

constexpr int kBlocks = 96;

using engine_test::SamplingShard;

// Prefill chunks of 8 tokens: prompts (and their prompt-logprob rows) cross several steps.
EngineConfig config() { return ring_engine_config(kBlocks, 8); }

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
    WorkerThreads w(10, 20, kBlocks);
    PipelineOptions o;
    o.max_in_flight = c.micro_batches;
    o.device_sampling = c.device_sampling;
    std::shared_ptr<int> sampled = std::make_shared<int>(0);
    std::unique_ptr<PipelineExecutor> exec;
    if (c.sampling_shard) {
      auto s = std::make_unique<SamplingShard>(*rank0, kBlocks, kPageSize);
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
  PipelineRunner runner(std::make_unique<SamplingShard>(*m, kBlocks, kPageSize), *a, *b, o);
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
  PipelineRunner runner(std::make_unique<SamplingShard>(*m, kBlocks, kPageSize), *a, *b, o);
  EXPECT_TRUE(runner.samples_on_device());
  ScheduledStep step;
  SampleRequest outside, first;
  outside.row = 2;
  EXPECT_THROW(runner.submit_sampled(step, {0, 1}, 0, {outside}), InvalidArgument);
  EXPECT_THROW(runner.submit_sampled(step, {0, 1}, 0, {first, first}), InvalidArgument);
  EXPECT_EQ(runner.in_flight(), 0);
  o.device_sampling = false;
  auto [c, d] = transport::make_inproc_link_pair();
  PipelineRunner off(std::make_unique<SamplingShard>(*m, kBlocks, kPageSize), *c, *d, o);
  EXPECT_FALSE(off.samples_on_device());
  EXPECT_THROW(off.submit_sampled(step, {0}, 0, {first}), InvalidArgument);
}

// The one-rank switch: StepRunner(shard, false) leaves sampling to the host.
TEST(PipelineDeviceSampling, StepRunnerSwitch) {
  std::unique_ptr<Model> full = load_model(model_path());
  StepRunner on(std::make_unique<SamplingShard>(*full, 8, kPageSize));
  EXPECT_TRUE(on.samples_on_device());
  StepRunner off(std::make_unique<SamplingShard>(*full, 8, kPageSize), false);
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
