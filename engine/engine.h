// The serving engine: continuous (iteration-level) batching of many requests over one model and
// one paged KV cache, run by a background thread. Requests join and leave the running batch at
// every step; prompts are prefilled in chunks so a long prompt does not stall running streams.
//
// Threading: submit/cancel/stats/shutdown may be called from any thread; update callbacks run on
// the engine thread and must not block (hand the data to the HTTP connection and return).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/sampling/sampler.h"
#include "csrc/tokenizer/tokenizer.h"
#include "csrc/util/error.h"
#include "engine/token_stream.h"

namespace jarvis {

namespace metrics { class ServingMetrics; }

struct EngineConfig {
  int threads = 0;                 // CPU threads for the forward pass; 0 = hardware concurrency
  int page_size = 16;              // tokens per KV block
  int64_t kv_cache_bytes = 0;      // KV memory budget; 0 = use kv_cache_fraction
  double kv_cache_fraction = 0.5;  // of the machine's available memory after loading, if bytes is 0
  int max_num_seqs = 64;           // running sequences at most
  int max_batched_tokens = 512;    // tokens per step (decode tokens + prefill chunk tokens)
  int prefill_chunk = 256;         // prompt tokens of one sequence per step at most
  int max_waiting = 256;           // queued requests beyond this are refused (QueueFull)
  bool prefix_caching = true;      // share KV blocks of identical prompt prefixes
  int kv_blocks = 0;               // > 0: exactly this many KV blocks (a pipeline ring's, fixed by
                                   // jarvis-serve for every rank); 0: derive from the budget above
};

// The waiting queue is full: the HTTP layer answers 429/503.
class QueueFull : public Error {
 public:
  using Error::Error;
};

// The engine is shutting down and takes no new requests: 503.
class EngineStopped : public Error {
 public:
  using Error::Error;
};

struct RequestOptions {
  SamplingParams sampling;
  int max_tokens = 16;                // >= 1; prompt + max_tokens must fit the context
  std::vector<std::string> stop;      // text stops before the first occurrence
  bool ignore_eos = false;
  // Logprobs of the prompt tokens (OpenAI `echo` with `logprobs`): -1 off, else top-N per token.
  int prompt_logprobs = -1;
  // Scoring a prompt (OpenAI `echo` with max_tokens 0): the one token sampled (max_tokens must be 1)
  // is not output, so the metrics record no generated token and no time to first token.
  bool score_only = false;
  std::vector<int32_t> stop_token_ids;  // vLLM's: these end the sequence like EOS (their text not output)
  bool include_stop_str_in_output = false;  // vLLM's: the text ends with the stop string it stopped at
};

struct Request {
  std::string id;
  std::vector<int32_t> prompt;
  RequestOptions options;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

struct PromptTokenLogprob {
  int32_t token = 0;
  std::optional<float> logprob;            // none for the first prompt token
  std::vector<TokenLogprob> top_logprobs;
};

// What happened to a request since its last update.
struct RequestUpdate {
  std::vector<StreamEvent> tokens;                 // new tokens with their text deltas
  std::vector<PromptTokenLogprob> prompt_logprobs; // once, in the first update, when asked for
  bool finished = false;
  FinishReason finish = FinishReason::kMaxTokens;  // with a non-empty error: kCancelled
  std::string error;                               // set when the request failed inside the engine
  int prompt_tokens = 0;
  int generated_tokens = 0;
};

using UpdateCallback = std::function<void(const RequestUpdate&)>;

struct EngineStats {
  int running = 0;
  int waiting = 0;
  int kv_blocks_used = 0;
  int kv_blocks_total = 0;
  int64_t preemptions = 0;
  int64_t prefix_cache_hit_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  // Non-empty once the executor broke (a pipeline rank died): why. The engine then fails every
  // request and takes no new ones (submit throws EngineStopped); /health answers 503 "degraded".
  std::string degraded;
};

class StepExecutor;

class Engine {
 public:
  // The model must hold every layer, the embedding and the head. `metrics` may be null. Starts
  // the engine thread.
  Engine(const Model& model, const Tokenizer& tokenizer, const EngineConfig& config,
         metrics::ServingMetrics* metrics);
  // Runs steps through `executor` (e.g. a pipeline ring) instead of a local StepRunner; `model`
  // needs only the embedding config and vocabulary then. config.kv_blocks must be the executor's
  // KV block count. An ExecutorBroken from it degrades the engine (see EngineStats::degraded).
  Engine(const Model& model, const Tokenizer& tokenizer, const EngineConfig& config,
         metrics::ServingMetrics* metrics, std::unique_ptr<StepExecutor> executor);
  ~Engine();  // cancels what is left and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws InvalidArgument (empty or too long prompt, bad options), QueueFull,
  // or EngineStopped, without queueing. The callback gets every update, the last with finished.
  void submit(Request request, UpdateCallback on_update);
  // Ends a request (client gone): its blocks are freed and its last update says kCancelled.
  // Unknown or finished ids are ignored.
  void cancel(const std::string& request_id);
  // Stops taking requests, lets in-flight ones finish for up to `grace`, then cancels the rest
  // and joins the engine thread. Idempotent; not to be called from an update callback.
  void shutdown(std::chrono::milliseconds grace);

  // Marks the engine degraded from outside (e.g. a pipeline worker process exited while idle):
  // new requests are refused; the first reason stays. In-flight steps fail through the executor.
  void mark_degraded(const std::string& why);

  EngineStats stats() const;
  int context_length() const;  // positions one sequence may use
  const EngineConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jarvis
