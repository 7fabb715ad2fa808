// Host side of device sampling (csrc/sampling/sample_request.h) and the engine's device-sampling
// path. References: a std::map count of the history, std::mt19937_64 for the uniform stream, and
// the unchanged Sampler::sample (itself checked against independent softmax/sort references in
// sampler_test.cpp) for the request path; the engine's built-in CPU runner for the device path.
#include "csrc/sampling/sample_request.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "csrc/util/error.h"
#include "engine/engine.h"
#include "engine/step_runner.h"
#include "engine_collector.h"
#include "sampling_shard.h"

namespace jarvis {
namespace {

std::vector<int32_t> random_ids(std::mt19937& rng, int n, int vocab) {
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = d(rng);
  return v;
}

std::vector<float> random_logits(std::mt19937& rng, int vocab, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) x = d(rng);
  return v;
}

SamplingParams penalised() {
  SamplingParams p;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  return p;
}

TEST(PenaltyHistory, OneEntryPerDistinctTokenWithCounts) {
  std::mt19937 rng(7);
  const std::vector<int32_t> prompt = random_ids(rng, 200, 50), generated = random_ids(rng, 120, 50);
  std::map<int32_t, std::pair<int, bool>> want;  // id -> (generated count, in prompt)
  for (int32_t id : prompt) want[id].second = true;
  for (int32_t id : generated) ++want[id].first;
  const std::vector<TokenHistory> got = penalty_history(penalised(), prompt, generated, 50);
  ASSERT_EQ(got.size(), want.size());
  size_t i = 0;
  for (const auto& [id, cp] : want) {  // std::map: ascending ids
    EXPECT_EQ(got[i].token, id);
    EXPECT_EQ(got[i].generated_count, cp.first) << "token " << id;
    EXPECT_EQ(got[i].in_prompt, cp.second) << "token " << id;
    ++i;
  }
}

TEST(PenaltyHistory, EmptyWithoutPenaltiesAndChecksIds) {
  EXPECT_TRUE(penalty_history(SamplingParams{}, {1, 2, 3}, {4}, 10).empty());
  EXPECT_THROW(penalty_history(penalised(), {1, 10}, {}, 10), InvalidArgument);
  EXPECT_THROW(penalty_history(penalised(), {}, {-1}, 10), InvalidArgument);
}

TEST(PenaltyHistory, CompactPenaltiesEqualTheSequenceOnes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    SamplingParams p = penalised();
    if (trial % 3 == 1) p.repetition_penalty = 1.0f;
    if (trial % 3 == 2) p.presence_penalty = p.frequency_penalty = 0.0f;
    const std::vector<int32_t> prompt = random_ids(rng, 64, 300), generated = random_ids(rng, trial * 5, 300);
    std::vector<float> a = random_logits(rng, 300, 3.0f), b = a;
    apply_penalties(p, a.data(), 300, prompt, generated);
    apply_penalties(p, b.data(), 300, penalty_history(p, prompt, generated, 300));
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "trial " << trial;
  }
}

TEST(SampleRequest, DrawUniformIsTheSeededStream) {
  SamplingParams p;
  p.seed = 1234;
  Sampler s(p);
  std::mt19937_64 ref(1234);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.draw_uniform(), static_cast<double>(ref() >> 11) * 0x1.0p-53);
  p.temperature = 0.0f;
  Sampler greedy(p);
  EXPECT_EQ(greedy.draw_uniform(), 0.0);
}

// A request built from one Sampler and sampled on the host gives what sample() gives from a twin
// Sampler (same seed), token after token: the same draws, penalties and truncation.
TEST(SampleRequest, RequestPathEqualsSampler) {
  std::vector<SamplingParams> params(7);
  params[0].temperature = 0.0f;
  params[1].temperature = 0.8f;
  params[2].top_k = 5;
  params[3].top_p = 0.7f;
  params[4].min_p = 0.1f;
  params[4].temperature = 1.5f;
  params[5] = penalised();
  params[5].top_k = 40;
  params[5].top_p = 0.9f;
  params[6].logprobs = 5;
  params[6].repetition_penalty = 0.8f;
  std::mt19937 rng(3);
  const int vocab = 500;
  for (size_t k = 0; k < params.size(); ++k) {
    params[k].seed = 99 + k;
    Sampler direct(params[k]), via_request(params[k]);
    const std::vector<int32_t> prompt = random_ids(rng, 30, vocab);
    std::vector<int32_t> generated;
    for (int step = 0; step < 30; ++step) {
      const std::vector<float> logits = random_logits(rng, vocab, 2.0f);
      const SampleResult a = direct.sample(logits.data(), vocab, prompt, generated);
      const SampleResult b =
          sample_request_on_host(make_sample_request(via_request, prompt, generated, vocab), logits.data(), vocab);
      ASSERT_EQ(a.token, b.token) << "params " << k << " step " << step;
      EXPECT_EQ(a.logprob, b.logprob);
      ASSERT_EQ(a.top_logprobs.size(), b.top_logprobs.size());
      for (size_t i = 0; i < a.top_logprobs.size(); ++i) {
        EXPECT_EQ(a.top_logprobs[i].token, b.top_logprobs[i].token);
        EXPECT_EQ(a.top_logprobs[i].logprob, b.top_logprobs[i].logprob);
      }
      generated.push_back(a.token);
    }
  }
}

// ---- The engine's device-sampling path, on the CPU ----

struct Events {
  std::mutex mu;
  std::map<std::string, std::vector<StreamEvent>> tokens;
  std::map<std::string, std::vector<PromptTokenLogprob>> prompt;
  UpdateCallback callback(const std::string& id) {
    return [this, id](const RequestUpdate& u) {
      std::lock_guard<std::mutex> lock(mu);
      for (const StreamEvent& e : u.tokens) tokens[id].push_back(e);
      for (const PromptTokenLogprob& p : u.prompt_logprobs) prompt[id].push_back(p);
    };
  }
};

TEST(EngineDeviceSampling, SameTokensAndLogprobsAsTheHostPath) {
  std::unique_ptr<Model> model =
      load_model(std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  std::unique_ptr<Tokenizer> tok = Tokenizer::create(model->tokenizer_data());
  EngineConfig c;
  c.threads = 1;
  c.page_size = 16;
  c.kv_blocks = 64;
  c.max_num_seqs = 4;
  auto requests = [&] {
    std::vector<Request> rs(4);
    const char* prompts[] = {"The capital of France is", "Once upon a time", "1, 2, 3,", "Hello"};
    for (int i = 0; i < 4; ++i) {
      rs[i].id = "r" + std::to_string(i);
      rs[i].prompt = tok->encode(prompts[i], false, false);
      rs[i].options.max_tokens = 6;
      rs[i].options.ignore_eos = true;
      rs[i].options.sampling.seed = 42 + i;
      rs[i].options.sampling.logprobs = 3;
    }
    rs[0].options.sampling.temperature = 0.0f;
    rs[1].options.sampling.top_k = 20;
    rs[1].options.sampling.top_p = 0.9f;
    rs[2].options.sampling = penalised();
    rs[2].options.sampling.seed = 7;
    rs[3].options.prompt_logprobs = 2;  // its prompt rows stay on the host path
    return rs;
  };
  // The requests through `e`, streamed into `events`, until all four finished.
  auto run = [&](Engine& e, Events& events) {
    engine_test::Collector done;
    for (Request& r : requests()) {
      const std::string id = r.id;
      e.submit(std::move(r), [&, id](const RequestUpdate& u) {
        events.callback(id)(u);
        done.callback(id)(u);
      });
    }
    ASSERT_TRUE(done.wait(4));
  };
  Events host, device;
  {
    Engine e(*model, *tok, c, nullptr);
    ASSERT_NO_FATAL_FAILURE(run(e, host));
  }
  auto shard = std::make_unique<engine_test::SamplingShard>(*model, c.kv_blocks, c.page_size);
  std::shared_ptr<int> sampled = shard->sampled;
  {
    Engine e(*model, *tok, c, nullptr, std::make_unique<StepRunner>(std::move(shard)));
    ASSERT_NO_FATAL_FAILURE(run(e, device));
  }
  EXPECT_EQ(*sampled, 4 * 6);
  for (int i = 0; i < 4; ++i) {
    const std::string id = "r" + std::to_string(i);
    ASSERT_EQ(host.tokens[id].size(), 6u) << id;
    ASSERT_EQ(device.tokens[id].size(), 6u) << id;
    for (size_t k = 0; k < 6; ++k) {
      const StreamEvent &a = host.tokens[id][k], &b = device.tokens[id][k];
      EXPECT_EQ(a.token, b.token) << id << " token " << k;
      EXPECT_EQ(a.logprob, b.logprob) << id << " token " << k;
      ASSERT_EQ(a.top_logprobs.size(), b.top_logprobs.size());
      for (size_t j = 0; j < a.top_logprobs.size(); ++j) EXPECT_EQ(a.top_logprobs[j].token, b.top_logprobs[j].token);
    }
  }
  ASSERT_EQ(host.prompt["r3"].size(), device.prompt["r3"].size());
  ASSERT_FALSE(host.prompt["r3"].empty());
  for (size_t k = 0; k < host.prompt["r3"].size(); ++k) {
    EXPECT_EQ(host.prompt["r3"][k].logprob, device.prompt["r3"][k].logprob) << "prompt token " << k;
  }
}

}  // namespace
}  // namespace jarvis
