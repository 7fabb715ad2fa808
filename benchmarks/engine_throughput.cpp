// Aggregate decode throughput of the serving engine at several concurrency levels: N greedy
// requests with distinct prompts are submitted at once; decode throughput counts the tokens
// generated after the last request got its first token (all N decoding together) over that
// time. Not run by CI; numbers go to benchmarks/RESULTS.md with the command line.
#include <CLI/CLI.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  double decode_tps = 0, total_tps = 0, ttft_max = 0, seconds = 0;
};

Run run(const jarvis::Model& model, const jarvis::Tokenizer& tok, const jarvis::EngineConfig& cfg, int n,
        int prompt_len, int max_tokens) {
  jarvis::Engine engine(model, tok, cfg, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, first_tokens = 0;
  int64_t tokens = 0, tokens_at_all_started = 0;
  Clock::time_point all_started;
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    jarvis::Request r;
    r.id = "b" + std::to_string(i);
    for (int k = 0; k < prompt_len; ++k) r.prompt.push_back(1000 + (i * 7919 + k * 104729) % 40000);
    r.options.max_tokens = max_tokens;
    r.options.ignore_eos = true;
    r.options.sampling.temperature = 0.0f;
    engine.submit(r, [&](const jarvis::RequestUpdate& u) {
      std::lock_guard<std::mutex> lock(mu);
      tokens += static_cast<int64_t>(u.tokens.size());
      if (u.generated_tokens == 1 && ++first_tokens == n) {
        all_started = Clock::now();
        tokens_at_all_started = tokens;
      }
      if (u.finished && ++done == n) cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == n; });
  const Clock::time_point end = Clock::now();
  Run out;
  out.seconds = std::chrono::duration<double>(end - t0).count();
  out.ttft_max = std::chrono::duration<double>(all_started - t0).count();
  out.decode_tps = (tokens - tokens_at_all_started) / std::chrono::duration<double>(end - all_started).count();
  out.total_tps = tokens / out.seconds;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Aggregate decode throughput of the engine at several concurrency levels"};
  std::string model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::vector<int> levels = {1, 4, 16};
  int prompt_len = 32, max_tokens = 64, threads = 2;
  app.add_option("-m,--model", model_path, "GGUF file or HF directory");
  app.add_option("-c,--concurrency", levels, "concurrent requests per run");
  app.add_option("--prompt-len", prompt_len, "prompt tokens per request");
  app.add_option("-n,--max-tokens", max_tokens, "tokens generated per request");
  app.add_option("-t,--threads", threads, "CPU threads");
  CLI11_PARSE(app, argc, argv);
  try {
    auto model = jarvis::load_model(model_path);
    auto tok = jarvis::Tokenizer::create(model->tokenizer_data());
    std::printf("%-12s %14s %14s %12s %10s\n", "concurrency", "decode tok/s", "total tok/s", "last TTFT s", "wall s");
    for (int n : levels) {
      jarvis::EngineConfig cfg;
      cfg.threads = threads;
      cfg.max_num_seqs = std::max(n, 1);
      cfg.max_batched_tokens = std::max(512, n);
      cfg.prefix_caching = false;
      const jarvis::ModelConfig& mc = model->config();
      cfg.kv_cache_bytes = static_cast<int64_t>(
          jarvis::KvCache::block_bytes(mc.n_layers, cfg.page_size, mc.n_kv_heads, mc.head_dim) *
          static_cast<size_t>(n * ((prompt_len + max_tokens) / cfg.page_size + 2)));
      const Run r = run(*model, *tok, cfg, n, prompt_len, max_tokens);
      std::printf("%-12d %14.1f %14.1f %12.3f %10.2f\n", n, r.decode_tps, r.total_tps, r.ttft_max, r.seconds);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jarvis-engine-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
