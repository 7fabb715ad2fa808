// The serving engine on the real default model (SmolLM2-135M). The reference for a batched
// request is the same request run alone: through an engine that runs one sequence at a time
// without prefix caching or prompt chunking, and for a few through the independent single-sequence
// Generator. Continuous batching, chunking, prefix caching and preemption must not change a
// single token (the CPU kernels are batch invariant: tests/unit/batch_invariance_test.cpp).
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "engine/generator.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis {
namespace {

using namespace std::chrono_literals;

const char* kText =
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps as his "
    "father had taught him. There were one hundred and twelve of them, worn smooth in the middle by "
    "a century of boots. At the top he trimmed the wick, polished the great lens until it threw the "
    "lamplight far across the water, and wrote the weather in a leather book: wind from the north-west, "
    "a falling glass, three fishing boats still out past the reef. Ships had changed since his "
    "grandfather's day. Steel hulls replaced timber, radio replaced flags, and the harbour master now "
    "talked about automation as if the light could keep itself. Still, on nights when fog rolled in "
    "from the sea and the foghorn groaned like a tired animal, the captains who knew the coast would "
    "call the station by name and ask whether old Tomas was on watch. He always was. In the winter of "
    "the great storm the power failed at midnight, and he carried paraffin up the stairs in two heavy "
    "cans, lit the old burner by hand, and turned the lens with a crank for six hours until dawn. "
    "Nobody wrote about it in the newspaper, but the crew of the trawler Marianne, who found the "
    "harbour mouth by that light with a broken rudder and a frozen deck, sent him a bottle of rum every "
    "Christmas for the rest of his life. Years later, when the station was finally automated and the "
    "keeper's cottage became a small museum, a photograph of Tomas hung beside the lens.";

// Loaded once per process, on first use.
struct Shared {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::vector<int32_t> text;
};
const Shared& shared() {
  static const Shared* s = [] {
    auto* sh = new Shared;
    sh->model = load_model(std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    sh->tok = Tokenizer::create(sh->model->tokenizer_data());
    sh->text = sh->tok->encode(kText, false, false);
    return sh;
  }();
  return *s;
}
const Model& model() { return *shared().model; }
const Tokenizer& tok() { return *shared().tok; }

std::vector<int32_t> text_tokens(int offset, int n) {
  const std::vector<int32_t>& t = shared().text;
  EXPECT_LE(static_cast<size_t>(offset + n), t.size());
  return std::vector<int32_t>(t.begin() + offset, t.begin() + offset + n);
}

size_t block_bytes(int page_size) {
  const ModelConfig& c = model().config();
  return KvCache::block_bytes(c.n_layers, page_size, c.n_kv_heads, c.head_dim);
}

EngineConfig config(int blocks, int max_seqs, int budget, int chunk, bool prefix = true) {
  EngineConfig c;
  c.threads = 2;
  c.page_size = 16;
  c.kv_cache_bytes = static_cast<int64_t>(blocks * block_bytes(16));
  c.max_num_seqs = max_seqs;
  c.max_batched_tokens = budget;
  c.prefill_chunk = chunk;
  c.prefix_caching = prefix;
  return c;
}
// Runs one request at a time, unchunked, without prefix caching: the "alone" reference.
EngineConfig alone_config() { return config(64, 1, 1024, 1024, false); }

struct Result {
  std::vector<int32_t> tokens;
  std::string text;
  bool finished = false;
  FinishReason finish = FinishReason::kMaxTokens;
  std::string error;
  std::vector<PromptTokenLogprob> prompt_logprobs;
  int updates = 0;
  int updates_after_finish = 0;
};

// Collects the updates of many requests; callbacks run on the engine thread.
class Collector {
 public:
  UpdateCallback callback(const std::string& id) {
    return [this, id](const RequestUpdate& u) {
      std::lock_guard<std::mutex> lock(mu_);
      Result& r = results_[id];
      if (r.finished) ++r.updates_after_finish;
      ++r.updates;
      for (const StreamEvent& e : u.tokens) {
        r.tokens.push_back(e.token);
        r.text += e.text;
        log_.push_back(id);
      }
      if (!u.prompt_logprobs.empty()) r.prompt_logprobs = u.prompt_logprobs;
      if (u.finished) {
        r.finished = true;
        r.finish = u.finish;
        r.error = u.error;
        ++done_;
        cv_.notify_all();
      }
    };
  }
  // Waits until n requests finished; meanwhile records the most requests the engine ran at once.
  bool wait(int n, const Engine* engine = nullptr, std::chrono::seconds timeout = 120s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mu_);
    while (done_ < n) {
      if (engine) max_running_ = std::max(max_running_, engine->stats().running);
      if (cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + 5ms)) ==
              std::cv_status::timeout &&
          std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
    }
    return true;
  }
  Result get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return results_[id];
  }
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  int tokens_of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(results_[id].tokens.size());
  }
  int max_running() const { return max_running_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Result> results_;
  std::vector<std::string> log_;  // request id of every token, in the order they came
  int done_ = 0;
  int max_running_ = 0;
};

Request make_request(const std::string& id, std::vector<int32_t> prompt, int max_tokens, bool ignore_eos = true) {
  Request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.options.max_tokens = max_tokens;
  r.options.ignore_eos = ignore_eos;
  r.options.sampling.temperature = 0.0f;
  return r;
}

// Runs requests through a fresh engine with `config`, all submitted at once.
std::map<std::string, Result> run(const EngineConfig& config, const std::vector<Request>& requests,
                                  int* max_running = nullptr, EngineStats* stats = nullptr) {
  Engine engine(model(), tok(), config, nullptr);
  Collector c;
  for (const Request& r : requests) engine.submit(r, c.callback(r.id));
  EXPECT_TRUE(c.wait(static_cast<int>(requests.size()), &engine)) << "requests did not finish";
  if (max_running) *max_running = c.max_running();
  std::map<std::string, Result> out;
  for (const Request& r : requests) out[r.id] = c.get(r.id);
  engine.shutdown(1s);
  if (stats) *stats = engine.stats();
  return out;
}

void expect_same(const Result& got, const Result& want, const std::string& what) {
  EXPECT_TRUE(got.finished) << what;
  EXPECT_TRUE(got.error.empty()) << what << ": " << got.error;
  EXPECT_EQ(got.tokens, want.tokens) << what;
  EXPECT_EQ(got.text, want.text) << what;
  EXPECT_EQ(static_cast<int>(got.finish), static_cast<int>(want.finish)) << what;
  EXPECT_EQ(got.updates_after_finish, 0) << what;
}

// 32 requests of different prompt lengths (every third sharing a prefix) and lengths; a few use
// seeded sampling, a quarter may stop at end-of-generation.
std::vector<Request> mixed_requests() {
  std::vector<Request> reqs;
  for (int i = 0; i < 32; ++i) {
    // Modest sizes keep the alone runs (batch-1 decode is weight-bandwidth bound) within budget.
    const int len = 3 + (i * 37) % 40;
    const int offset = i % 3 == 0 ? 0 : (i * 11) % 100;
    Request r = make_request("r" + std::to_string(i), text_tokens(offset, len), 6 + (i * 7) % 11, i % 4 != 0);
    if (i % 8 == 5) {
      r.options.sampling.temperature = 0.9f;
      r.options.sampling.top_k = 40;
      r.options.sampling.seed = 1000 + i;
    }
    reqs.push_back(r);
  }
  return reqs;
}

// Batched with continuous batching, chunked prefill and prefix caching, against alone runs of
// half of them (`half` 0 or 1: two tests keep each one short).
void check_batched_against_alone(int half) {
  const std::vector<Request> reqs = mixed_requests();
  int max_running = 0;
  EngineStats stats;
  const auto batched = run(config(400, 32, 256, 48), reqs, &max_running, &stats);
  EXPECT_GE(max_running, 16) << "the requests were hardly batched";
  EXPECT_GT(stats.prefix_cache_hit_tokens, 0);
  std::vector<Request> mine;
  for (int i = half; i < 32; i += 2) mine.push_back(reqs[i]);
  const auto alone = run(alone_config(), mine);
  for (const Request& r : mine) {
    expect_same(batched.at(r.id), alone.at(r.id), r.id);
    EXPECT_FALSE(batched.at(r.id).tokens.empty()) << r.id;
  }
}

TEST(Engine, ConcurrentRequestsMatchAloneRunsEven) { check_batched_against_alone(0); }
TEST(Engine, ConcurrentRequestsMatchAloneRunsOdd) { check_batched_against_alone(1); }

TEST(Engine, MatchesTheSingleSequenceGenerator) {
  // The engine path against the independent Generator (its own prefill/decode loop).
  std::vector<Request> reqs = {make_request("a", text_tokens(0, 41), 12),
                               make_request("b", text_tokens(50, 9), 10, false)};
  reqs[1].options.stop = {" the"};
  const auto got = run(config(64, 4, 64, 16), reqs);
  cpu::ThreadPool pool(2);
  Generator gen(model(), tok(), pool, 64, 16);
  for (const Request& r : reqs) {
    GenerationOptions o;
    o.sampling = r.options.sampling;
    o.max_tokens = r.options.max_tokens;
    o.ignore_eos = r.options.ignore_eos;
    o.stop = r.options.stop;
    const GenerationResult want = gen.generate(r.prompt, o);
    const Result& g = got.at(r.id);
    EXPECT_EQ(g.tokens, want.tokens) << r.id;
    EXPECT_EQ(g.text, want.text) << r.id;
    EXPECT_EQ(static_cast<int>(g.finish), static_cast<int>(want.finish)) << r.id;
  }
}

TEST(Engine, PreemptionUnderATinyKvCacheKeepsOutputs) {
  // 10 blocks of 16 tokens; 8 requests that each grow to 28-56 positions (2-4 blocks) cannot all
  // stay resident: the scheduler must preempt and recompute.
  std::vector<Request> reqs;
  for (int i = 0; i < 8; ++i) {
    reqs.push_back(make_request("p" + std::to_string(i), text_tokens(i * 13, 10 + i * 4), 18));
  }
  EngineStats stats;
  const auto squeezed = run(config(10, 8, 64, 32), reqs, nullptr, &stats);
  EXPECT_GT(stats.preemptions, 0);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  const auto alone = run(alone_config(), reqs);
  for (const Request& r : reqs) expect_same(squeezed.at(r.id), alone.at(r.id), r.id);
}

// Waits (polling) until pred holds; false after the timeout.
template <typename Pred>
bool eventually(Pred pred, std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

TEST(Engine, CancelEndsTheRequestAndFreesItsBlocks) {
  Engine engine(model(), tok(), config(64, 2, 64, 32), nullptr);
  Collector c;
  engine.submit(make_request("x", text_tokens(0, 20), 200), c.callback("x"));
  engine.submit(make_request("y", text_tokens(5, 30), 200), c.callback("y"));
  engine.submit(make_request("w", text_tokens(9, 12), 200), c.callback("w"));  // waits: 2 seqs at most
  ASSERT_TRUE(eventually([&] { return c.tokens_of("x") >= 3; }));
  EXPECT_EQ(engine.stats().running, 2);
  EXPECT_EQ(engine.stats().waiting, 1);
  EXPECT_GT(engine.stats().kv_blocks_used, 0);
  engine.cancel("w");       // still waiting
  engine.cancel("x");       // mid-generation
  engine.cancel("nobody");  // unknown: ignored
  ASSERT_TRUE(c.wait(2));
  const Result x = c.get("x"), w = c.get("w");
  EXPECT_EQ(static_cast<int>(x.finish), static_cast<int>(FinishReason::kCancelled));
  EXPECT_LT(x.tokens.size(), 200u);
  EXPECT_EQ(static_cast<int>(w.finish), static_cast<int>(FinishReason::kCancelled));
  EXPECT_TRUE(w.tokens.empty());
  // y keeps going after x is gone.
  const int y_then = c.tokens_of("y");
  ASSERT_TRUE(eventually([&] { return c.tokens_of("y") >= y_then + 3; }));
  engine.cancel("y");
  ASSERT_TRUE(c.wait(3));
  ASSERT_TRUE(eventually([&] {
    const EngineStats s = engine.stats();
    return s.running == 0 && s.waiting == 0;
  }));
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
  engine.cancel("x");  // finished: ignored
  // A finished request's id may be used again.
  engine.submit(make_request("x", text_tokens(0, 4), 2), c.callback("x2"));
  ASSERT_TRUE(c.wait(4));
  EXPECT_EQ(c.get("x2").tokens.size(), 2u);
  for (const char* id : {"x", "y", "w", "x2"}) EXPECT_EQ(c.get(id).updates_after_finish, 0) << id;
}

TEST(Engine, ShutdownFinishesWithinGraceThenCancels) {
  Collector c;
  {
    Engine engine(model(), tok(), config(64, 4, 64, 32), nullptr);
    engine.submit(make_request("short", text_tokens(0, 6), 3), c.callback("short"));
    engine.shutdown(30s);  // enough for 3 tokens
    EXPECT_THROW(engine.submit(make_request("late", text_tokens(0, 6), 3), c.callback("late")), EngineStopped);
  }
  EXPECT_EQ(static_cast<int>(c.get("short").finish), static_cast<int>(FinishReason::kMaxTokens));
  EXPECT_EQ(c.get("short").tokens.size(), 3u);
  {
    Engine engine(model(), tok(), config(64, 4, 64, 32), nullptr);
    engine.submit(make_request("long", text_tokens(0, 6), 500), c.callback("long"));
    ASSERT_TRUE(eventually([&] { return c.tokens_of("long") >= 1; }));
    engine.shutdown(50ms);
    engine.shutdown(50ms);  // idempotent
  }  // and the destructor after it
  EXPECT_TRUE(c.get("long").finished);
  EXPECT_EQ(static_cast<int>(c.get("long").finish), static_cast<int>(FinishReason::kCancelled));
  EXPECT_LT(c.get("long").tokens.size(), 500u);
}

// Tokens the two short streams get between `from` (an index into the log) and the long
// request's first token.
std::map<std::string, int> tokens_before_first(const std::vector<std::string>& log, size_t from,
                                               const std::string& first_of) {
  std::map<std::string, int> n;
  for (size_t i = from; i < log.size() && log[i] != first_of; ++i) ++n[log[i]];
  return n;
}

// Two streams decode; a long prompt arrives. Returns how many tokens each stream got while the
// long prompt was being prefilled.
std::map<std::string, int> decode_during_long_prefill(const EngineConfig& cfg, int long_len) {
  Engine engine(model(), tok(), cfg, nullptr);
  Collector c;
  engine.submit(make_request("d1", text_tokens(0, 8), 40), c.callback("d1"));
  engine.submit(make_request("d2", text_tokens(20, 12), 40), c.callback("d2"));
  EXPECT_TRUE(eventually([&] { return c.tokens_of("d1") >= 2 && c.tokens_of("d2") >= 2; }));
  const size_t from = c.log().size();
  engine.submit(make_request("long", text_tokens(0, long_len), 2), c.callback("long"));
  EXPECT_TRUE(c.wait(3));
  return tokens_before_first(c.log(), from, "long");
}

TEST(Engine, LongPromptIsChunkedWhileOthersKeepDecoding) {
  const int kLong = 288, kChunk = 32;  // 9 chunks
  ASSERT_GE(shared().text.size(), static_cast<size_t>(kLong));
  // Budget 40: the two decodes, then a 32-token chunk of the long prompt, every step.
  const auto chunked = decode_during_long_prefill(config(128, 8, 40, kChunk), kLong);
  // One token per stream per chunk; one chunk of slack for when the prompt arrived in a step.
  EXPECT_GE(chunked.count("d1") ? chunked.at("d1") : 0, kLong / kChunk - 1);
  EXPECT_GE(chunked.count("d2") ? chunked.at("d2") : 0, kLong / kChunk - 1);
  // The same without chunking: the streams stall behind one big prefill step. This is what makes
  // the check above meaningful.
  const auto whole = decode_during_long_prefill(config(128, 8, 512, 512), kLong);
  EXPECT_LE(whole.count("d1") ? whole.at("d1") : 0, 2);
}

TEST(Engine, PromptLogprobsMatchADirectForwardAndTheGreedyChoice) {
  const int kN = 29, kTop = 5;
  const std::vector<int32_t> prompt = text_tokens(0, kN);
  Request r = make_request("lp", prompt, 6);
  r.options.prompt_logprobs = kTop;
  const Result got = run(config(64, 4, 64, 8), {r}).at("lp");  // prompt in 8-token chunks
  ASSERT_EQ(got.prompt_logprobs.size(), static_cast<size_t>(kN));
  EXPECT_FALSE(got.prompt_logprobs[0].logprob.has_value());

  // Reference: the whole prompt in one forward step of the Model, log-softmax in double here.
  const Model& m = model();
  const int vocab = m.config().vocab_size;
  cpu::ThreadPool pool(2);
  KvCache kv = m.make_kv_cache(2, 16);
  BatchView batch;
  SequenceSlice s;
  s.n_tokens = kN;
  s.block_table = {0, 1};
  batch.seqs.push_back(s);
  std::vector<float> hidden(static_cast<size_t>(kN) * m.config().hidden), logits(static_cast<size_t>(kN) * vocab);
  m.embed(prompt.data(), kN, hidden.data());
  m.forward_layers(batch, hidden.data(), kv, pool);
  m.compute_logits(hidden.data(), kN, logits.data(), pool);
  for (int i = 1; i < kN; ++i) {
    const PromptTokenLogprob& e = got.prompt_logprobs[i];
    const float* row = &logits[static_cast<size_t>(i - 1) * vocab];
    double mx = row[0], sum = 0;
    for (int v = 0; v < vocab; ++v) mx = std::max<double>(mx, row[v]);
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
    const double lse = mx + std::log(sum);
    EXPECT_EQ(e.token, prompt[i]);
    ASSERT_TRUE(e.logprob.has_value());
    // Same float logits (batch invariance); the only difference is rounding the double result
    // to float: |logprob| < 40 here, so float spacing is below 4e-6.
    EXPECT_NEAR(*e.logprob, row[prompt[i]] - lse, 1e-5) << "position " << i;
    ASSERT_EQ(e.top_logprobs.size(), static_cast<size_t>(kTop));
    std::vector<int> order(vocab);
    for (int v = 0; v < vocab; ++v) order[v] = v;
    std::partial_sort(order.begin(), order.begin() + kTop, order.end(),
                      [row](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    double mass = 0;
    for (int k = 0; k < kTop; ++k) {
      EXPECT_EQ(e.top_logprobs[k].token, order[k]) << "position " << i << " rank " << k;
      EXPECT_NEAR(e.top_logprobs[k].logprob, row[order[k]] - lse, 1e-5);
      mass += std::exp(e.top_logprobs[k].logprob);
    }
    EXPECT_LE(mass, 1.0 + 1e-5);
    EXPECT_GE(e.top_logprobs[0].logprob, *e.logprob);
  }

  // Greedy tokens fed back as prompt: each is the top-1 of its prompt logprobs.
  std::vector<int32_t> extended = prompt;
  extended.insert(extended.end(), got.tokens.begin(), got.tokens.end());
  Request r2 = make_request("lp2", extended, 1);
  r2.options.prompt_logprobs = 1;
  const Result got2 = run(config(64, 4, 64, 64), {r2}).at("lp2");
  ASSERT_EQ(got2.prompt_logprobs.size(), extended.size());
  for (size_t k = prompt.size(); k < extended.size(); ++k) {
    const PromptTokenLogprob& e = got2.prompt_logprobs[k];
    ASSERT_EQ(e.top_logprobs.size(), 1u);
    EXPECT_EQ(e.top_logprobs[0].token, extended[k]) << k;
    EXPECT_EQ(e.top_logprobs[0].logprob, *e.logprob) << k;
  }
}

TEST(Engine, RejectsBadRequestsAndConfigs) {
  const UpdateCallback ignore = [](const RequestUpdate&) {};
  Engine engine(model(), tok(), config(8, 2, 16, 16), nullptr);
  EXPECT_EQ(engine.context_length(), 8 * 16);
  const int vocab = model().config().vocab_size;
  EXPECT_THROW(engine.submit(make_request("a", {}, 4), ignore), InvalidArgument);
  EXPECT_THROW(engine.submit(make_request("a", {-1}, 4), ignore), InvalidArgument);
  EXPECT_THROW(engine.submit(make_request("a", {vocab}, 4), ignore), InvalidArgument);
  EXPECT_THROW(engine.submit(make_request("a", text_tokens(0, 5), 0), ignore), InvalidArgument);
  EXPECT_THROW(engine.submit(make_request("a", text_tokens(0, 100), 29), ignore), InvalidArgument);
  Request bad = make_request("a", text_tokens(0, 5), 4);
  bad.options.sampling.temperature = -1.0f;
  EXPECT_THROW(engine.submit(bad, ignore), InvalidArgument);
  bad = make_request("a", text_tokens(0, 5), 4);
  bad.options.stop = {""};
  EXPECT_THROW(engine.submit(bad, ignore), InvalidArgument);
  bad = make_request("a", text_tokens(0, 5), 4);
  bad.options.prompt_logprobs = SamplingParams::kMaxLogprobs + 1;
  EXPECT_THROW(engine.submit(bad, ignore), InvalidArgument);
  Collector c;
  engine.submit(make_request("dup", text_tokens(0, 100), 28), c.callback("dup"));  // fits exactly
  EXPECT_THROW(engine.submit(make_request("dup", text_tokens(0, 5), 2), ignore), InvalidArgument);
  engine.cancel("dup");
  ASSERT_TRUE(c.wait(1));

  EngineConfig full = config(8, 2, 16, 16);
  full.max_waiting = 0;
  Engine refusing(model(), tok(), full, nullptr);
  EXPECT_THROW(refusing.submit(make_request("q", text_tokens(0, 5), 2), ignore), QueueFull);

  EngineConfig tiny = config(1, 2, 16, 16);
  tiny.kv_cache_bytes = static_cast<int64_t>(block_bytes(16)) - 1;
  try {
    Engine e(model(), tok(), tiny, nullptr);
    ADD_FAILURE() << "a budget below one block was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("holds no block"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Engine(model(), tok(), config(8, 8, 4, 16), nullptr), InvalidArgument);  // budget < seqs
  EngineConfig no_pages = config(8, 2, 16, 16);
  no_pages.page_size = 0;
  EXPECT_THROW(Engine(model(), tok(), no_pages, nullptr), InvalidArgument);
}

}  // namespace
}  // namespace jarvis
