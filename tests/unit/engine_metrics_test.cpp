// The engine feeds the serving metrics (metrics/serving_metrics.h) what happened, checked through
// the Prometheus text they render: counts that follow from the requests themselves (prompt and
// output lengths, one TTFT per request, one inter-token gap per token after the first, ...).
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <string>

#include "engine/engine.h"
#include "metrics/serving_metrics.h"

namespace jarvis {
namespace {

using namespace std::chrono_literals;

// Value of the first sample `name{...}` whose labels contain `labels` (e.g. finished_reason="stop").
double sample(const std::string& text, const std::string& name, const std::string& labels = "") {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0) continue;
    const size_t close = line.find('}');
    if (close == std::string::npos || line.substr(0, close).find(labels) == std::string::npos) continue;
    return std::stod(line.substr(close + 1));
  }
  ADD_FAILURE() << "no sample " << name << " {" << labels << "} in\n" << text;
  return -1;
}

struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  UpdateCallback callback() {
    return [this](const RequestUpdate& u) {
      if (!u.finished) return;
      std::lock_guard<std::mutex> lock(mu);
      ++done;
      cv.notify_all();
    };
  }
  bool wait(int n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 120s, [&] { return done >= n; });
  }
};

TEST(EngineMetrics, CountsFollowFromTheRequests) {
  auto model = load_model(std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  auto tok = Tokenizer::create(model->tokenizer_data());
  const ModelConfig& c = model->config();
  metrics::ServingMetrics m("smol");
  EngineConfig cfg;
  cfg.threads = 2;
  // 5 blocks of 16 tokens and three requests growing to 25-29 positions (2 blocks each): the
  // last one to arrive is preempted when the first ones cross into their second blocks.
  cfg.kv_cache_bytes = static_cast<int64_t>(5 * KvCache::block_bytes(c.n_layers, 16, c.n_kv_heads, c.head_dim));
  cfg.max_num_seqs = 3;
  cfg.max_batched_tokens = 64;
  cfg.prefix_caching = false;
  Waiter w;
  int64_t preemptions = 0;
  {
    Engine engine(*model, *tok, cfg, &m);
    const std::vector<int32_t> text = tok->encode("one two three four five six seven eight nine ten", false, false);
    for (int i = 0; i < 3; ++i) {
      Request r;
      r.id = "m" + std::to_string(i);
      r.prompt.assign(text.begin(), text.begin() + 5 + 2 * i);  // 5, 7, 9 tokens
      r.options.max_tokens = 20;
      r.options.ignore_eos = true;
      r.options.sampling.temperature = 0.0f;
      engine.submit(r, w.callback());
    }
    // Queued behind them (max_num_seqs 3) and cancelled before it could run.
    Request cancelled;
    cancelled.id = "gone";
    cancelled.prompt.assign(text.begin(), text.begin() + 4);
    cancelled.options.max_tokens = 60;
    cancelled.options.ignore_eos = true;
    engine.submit(cancelled, w.callback());
    engine.cancel("gone");
    ASSERT_TRUE(w.wait(4));
    engine.shutdown(1s);
    preemptions = engine.stats().preemptions;
  }
  const std::string text = m.render();
  EXPECT_EQ(sample(text, "jarvis:prompt_tokens_total"), 5 + 7 + 9);  // the cancelled one never prefilled
  EXPECT_EQ(sample(text, "jarvis:generation_tokens_total"), 3 * 20);
  EXPECT_EQ(sample(text, "jarvis:request_finished_total", "finished_reason=\"length\""), 3);
  EXPECT_EQ(sample(text, "jarvis:request_finished_total", "finished_reason=\"abort\""), 1);
  EXPECT_EQ(sample(text, "jarvis:request_finished_total", "finished_reason=\"stop\""), 0);
  EXPECT_EQ(sample(text, "jarvis:time_to_first_token_seconds_count"), 3);
  EXPECT_EQ(sample(text, "jarvis:e2e_request_latency_seconds_count"), 3);    // not for the aborted one
  EXPECT_EQ(sample(text, "jarvis:request_time_per_output_token_seconds_count"), 3);
  EXPECT_EQ(sample(text, "jarvis:request_queue_time_seconds_count"), 3);     // the aborted one never ran
  EXPECT_EQ(sample(text, "jarvis:inter_token_latency_seconds_count"), 3 * 19);
  EXPECT_GT(preemptions, 0);
  EXPECT_EQ(sample(text, "jarvis:num_preemptions_total"), preemptions);
  EXPECT_EQ(sample(text, "jarvis:num_requests_running"), 0);
  EXPECT_EQ(sample(text, "jarvis:num_requests_waiting"), 0);
  EXPECT_EQ(sample(text, "jarvis:kv_cache_usage_perc"), 0);
}

}  // namespace
}  // namespace jarvis
