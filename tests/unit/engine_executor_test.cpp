// The engine over an external StepExecutor (what `jarvis-serve --ranks N` plugs a pipeline ring
// into): the same tokens as the built-in runner, and an ExecutorBroken fails what is in flight,
// marks the engine degraded and refuses new requests, without hanging.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "engine/engine.h"
#include "engine/step_runner.h"
#include "engine_collector.h"

namespace jarvis {
namespace {

using namespace std::chrono_literals;
using engine_test::Collector;
using engine_test::Result;

struct Shared {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};

Shared& shared() {
  static Shared* sh = [] {
    auto* s = new Shared;
    s->model = load_model(std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    s->tok = Tokenizer::create(s->model->tokenizer_data());
    return s;
  }();
  return *sh;
}

constexpr int kBlocks = 64;
constexpr int kPageSize = 16;

// A StepRunner that breaks (like a ring whose worker died) once it ran `ok_steps` steps.
class BreakingExecutor : public StepExecutor {
 public:
  BreakingExecutor(const Model& m, int ok_steps) : runner_(m, kBlocks, kPageSize, 1), ok_steps_(ok_steps) {}
  void submit(const ScheduledStep& step, const std::vector<int>& rows) override {
    if (steps_++ >= ok_steps_) throw ExecutorBroken("rank 1 died");
    runner_.submit(step, rows);
  }
  const float* collect() override { return runner_.collect(); }
  int vocab() const override { return runner_.vocab(); }

 private:
  StepRunner runner_;
  int ok_steps_;
  int steps_ = 0;
};

EngineConfig config() {
  EngineConfig c;
  c.threads = 1;
  c.page_size = kPageSize;
  c.kv_blocks = kBlocks;
  c.max_num_seqs = 4;
  return c;
}

Request request(const std::string& id, int max_tokens) {
  Request r;
  r.id = id;
  r.prompt = shared().tok->encode("The capital of France is", false, false);
  r.options.max_tokens = max_tokens;
  r.options.ignore_eos = true;
  r.options.sampling.temperature = 0.0f;
  return r;
}

TEST(EngineExecutor, ExternalExecutorGivesTheBuiltInRunnersTokens) {
  Collector a, b;
  {
    Engine builtin(*shared().model, *shared().tok, config(), nullptr);
    builtin.submit(request("a", 8), a.callback("a"));
    ASSERT_TRUE(a.wait(1));
  }
  {
    Engine external(*shared().model, *shared().tok, config(), nullptr,
                    std::make_unique<BreakingExecutor>(*shared().model, 1 << 30));
    external.submit(request("b", 8), b.callback("b"));
    ASSERT_TRUE(b.wait(1));
    EXPECT_TRUE(external.stats().degraded.empty());
  }
  EXPECT_TRUE(a.get("a").error.empty());
  EXPECT_EQ(a.get("a").tokens.size(), 8u);
  EXPECT_EQ(b.get("b").tokens, a.get("a").tokens);
}

TEST(EngineExecutor, BrokenExecutorFailsRequestsAndDegrades) {
  Engine engine(*shared().model, *shared().tok, config(), nullptr,
                std::make_unique<BreakingExecutor>(*shared().model, 3));
  Collector c;
  engine.submit(request("x", 100), c.callback("x"));
  engine.submit(request("y", 100), c.callback("y"));
  ASSERT_TRUE(c.wait(2));  // no hang
  for (const char* id : {"x", "y"}) {
    const Result r = c.get(id);
    EXPECT_TRUE(r.finished);
    EXPECT_LT(r.tokens.size(), 100u) << id;
    EXPECT_NE(r.error.find("degraded"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("rank 1 died"), std::string::npos) << r.error;
  }
  for (int i = 0; i < 200 && engine.stats().degraded.empty(); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(engine.stats().degraded, "rank 1 died");
  Collector late;
  EXPECT_THROW(engine.submit(request("z", 4), late.callback("z")), EngineStopped);
  engine.shutdown(0ms);
}

TEST(EngineExecutor, ExternalExecutorNeedsKvBlocks) {
  EngineConfig c = config();
  c.kv_blocks = 0;
  EXPECT_THROW(Engine(*shared().model, *shared().tok, c, nullptr,
                      std::make_unique<BreakingExecutor>(*shared().model, 0)),
               InvalidArgument);
}

}  // namespace
}  // namespace jarvis
