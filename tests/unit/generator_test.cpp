// Generator bookkeeping on a tiny random model: positions, KV blocks, chunked prefill, stop
// conditions. The model's numerics are checked elsewhere against NumPy; here the reference for
// greedy tokens is the same model re-run from scratch over the whole sequence for every token
// (no KV reuse, no chunks), so any position or cache mistake in the Generator shows up.
#include "engine/generator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "csrc/util/error.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis {
namespace {

constexpr int kVocab = 257;  // 256 byte tokens + one control token

// GPT-2's byte -> printable character table, so every byte is a one-byte-text token.
std::vector<std::string> byte_tokens() {
  std::vector<int> bs, cs;
  for (int b = 0; b < 256; ++b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) bs.push_back(b), cs.push_back(b);
  }
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) bs.push_back(b), cs.push_back(256 + n++);
  }
  std::vector<std::string> tokens(256);
  for (size_t i = 0; i < bs.size(); ++i) {
    const int c = cs[i];
    std::string s;
    if (c < 0x80) s += static_cast<char>(c);
    else s += static_cast<char>(0xC0 | (c >> 6)), s += static_cast<char>(0x80 | (c & 0x3F));
    tokens[bs[i]] = s;
  }
  return tokens;
}

TokenizerData tiny_tokenizer(int32_t eos) {
  TokenizerData t;
  t.model = "gpt2";
  t.pre = "gpt2";
  t.tokens = byte_tokens();
  t.tokens.push_back("<eos>");
  t.token_types.assign(256, TokenType::kNormal);
  t.token_types.push_back(TokenType::kControl);
  t.eos_id = eos;
  return t;
}

std::unique_ptr<Model> tiny_model() {
  ModelConfig c;
  c.arch_name = "llama";
  c.n_layers = 2;
  c.hidden = 32;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.rope_dim = 8;
  c.ffn_hidden = 64;
  c.vocab_size = kVocab;
  c.context_length = 64;
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto matrix = [&](int rows, int cols, float scale = 1.0f) {
    std::vector<float> v;
    for (int i = 0; i < rows * cols; ++i) v.push_back(normal(rng) / std::sqrt(static_cast<float>(cols)) * scale);
    return Matrix::from_f32(v.data(), rows, cols);
  };
  auto ones = [&](int n) { return std::vector<float>(static_cast<size_t>(n), 1.0f); };
  ModelWeights w;
  w.embedding = matrix(kVocab, c.hidden, std::sqrt(static_cast<float>(c.hidden)));
  w.output_norm = ones(c.hidden);
  w.lm_head = matrix(kVocab, c.hidden);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = ones(c.hidden);
    lw.ffn_norm = ones(c.hidden);
    lw.wq = matrix(c.q_dim(), c.hidden);
    lw.wk = matrix(c.kv_dim(), c.hidden);
    lw.wv = matrix(c.kv_dim(), c.hidden);
    lw.wo = matrix(c.hidden, c.q_dim());
    lw.w_gate = matrix(c.ffn_hidden, c.hidden);
    lw.w_up = matrix(c.ffn_hidden, c.hidden);
    lw.w_down = matrix(c.hidden, c.ffn_hidden);
    w.layers.push_back(std::move(lw));
  }
  return std::make_unique<Model>(c, ShardSpec::full(), std::move(w), tiny_tokenizer(256));
}

// Greedy continuation recomputed from scratch for every token.
std::vector<int32_t> reference_greedy(const Model& m, std::vector<int32_t> seq, int n, cpu::ThreadPool& pool) {
  std::vector<int32_t> out;
  for (int step = 0; step < n; ++step) {
    const int len = static_cast<int>(seq.size());
    KvCache kv = m.make_kv_cache(len, 1);
    BatchView b;
    SequenceSlice s;
    s.n_tokens = len;
    for (int i = 0; i < len; ++i) s.block_table.push_back(i);
    b.seqs.push_back(s);
    std::vector<float> hidden(static_cast<size_t>(len) * m.config().hidden), logits(kVocab);
    m.embed(seq.data(), len, hidden.data());
    m.forward_layers(b, hidden.data(), kv, pool);
    m.compute_logits(hidden.data() + static_cast<size_t>(len - 1) * m.config().hidden, 1, logits.data(), pool);
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

class GeneratorTest : public ::testing::Test {
 protected:
  GeneratorTest() : model_(tiny_model()), tok_(Tokenizer::create(tiny_tokenizer(256))), pool_(1) {}

  GenerationOptions greedy(int max_tokens, int chunk = 3) const {
    GenerationOptions o;
    o.sampling.temperature = 0.0f;
    o.max_tokens = max_tokens;
    o.prefill_chunk = chunk;
    return o;
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  cpu::ThreadPool pool_;
  const std::vector<int32_t> prompt_ = {72, 101, 108, 108, 111, 44, 32};
};

TEST_F(GeneratorTest, GreedyMatchesRecomputationForAnyChunking) {
  const std::vector<int32_t> expected = reference_greedy(*model_, prompt_, 12, pool_);
  Generator gen(*model_, *tok_, pool_, 8, 4);  // pages of 4: the sequence crosses several
  for (int chunk : {1, 3, 7, 100}) {
    GenerationOptions o = greedy(12, chunk);
    o.ignore_eos = true;
    GenerationResult r = gen.generate(prompt_, o);
    EXPECT_EQ(r.tokens, expected) << "chunk " << chunk;
    EXPECT_EQ(r.finish, FinishReason::kMaxTokens);
    EXPECT_EQ(r.stats.prompt_tokens, 7);
    EXPECT_EQ(r.stats.generated_tokens, 12);
    EXPECT_GT(r.stats.ttft_seconds, 0.0);
    EXPECT_EQ(r.text, tok_->decode(r.tokens, true));
  }
}

TEST_F(GeneratorTest, StopsAtEndOfGenerationToken) {
  const std::vector<int32_t> free_run = reference_greedy(*model_, prompt_, 12, pool_);
  // The first token that did not occur before becomes the model's EOS.
  size_t k = 1;
  while (k < free_run.size() && std::count(free_run.begin(), free_run.begin() + k, free_run[k]) > 0) ++k;
  ASSERT_LT(k, free_run.size()) << "the random model repeats itself; pick another seed";
  auto tok = Tokenizer::create(tiny_tokenizer(free_run[k]));
  Generator gen(*model_, *tok, pool_, 8, 4);
  GenerationResult r = gen.generate(prompt_, greedy(12));
  EXPECT_EQ(r.finish, FinishReason::kEndOfGeneration);
  EXPECT_EQ(r.tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + k + 1));
  // Its text is not part of the output.
  EXPECT_EQ(r.text, tok->decode(std::vector<int32_t>(free_run.begin(), free_run.begin() + k), true));
  EXPECT_STREQ(openai_finish_reason(r.finish), "stop");
}

TEST_F(GeneratorTest, ContextFull) {
  Generator gen(*model_, *tok_, pool_, 2, 8);  // 16 positions
  EXPECT_EQ(gen.context_length(), 16);
  GenerationOptions o = greedy(100);
  o.ignore_eos = true;
  GenerationResult r = gen.generate(prompt_, o);
  EXPECT_EQ(r.finish, FinishReason::kContextFull);
  EXPECT_EQ(r.tokens.size(), 9u);  // 7 + 9 = 16 positions
  EXPECT_STREQ(openai_finish_reason(r.finish), "length");
  EXPECT_EQ(Generator(*model_, *tok_, pool_, 100, 16).context_length(), 64);  // the model's own limit
}

TEST_F(GeneratorTest, StopStringCutsText) {
  Generator gen(*model_, *tok_, pool_, 8, 4);
  GenerationOptions o = greedy(12);
  o.ignore_eos = true;
  const std::string full = gen.generate(prompt_, o).text;
  ASSERT_GE(full.size(), 6u);
  const std::string stop = full.substr(4, 2);
  o.stop = {stop};
  GenerationResult r = gen.generate(prompt_, o);
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, full.substr(0, full.find(stop)));
}

TEST_F(GeneratorTest, StreamsEventsAndCancels) {
  Generator gen(*model_, *tok_, pool_, 8, 4);
  std::vector<StreamEvent> events;
  GenerationOptions o = greedy(12);
  o.ignore_eos = true;
  o.sampling.logprobs = 2;
  GenerationResult r = gen.generate(prompt_, o, [&](const StreamEvent& e) {
    events.push_back(e);
    return events.size() < 3;
  });
  EXPECT_EQ(r.finish, FinishReason::kCancelled);
  ASSERT_EQ(events.size(), 3u);
  ASSERT_EQ(r.tokens.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(events[i].index, i);
    EXPECT_EQ(events[i].token, r.tokens[i]);
    ASSERT_EQ(events[i].top_logprobs.size(), 2u);
    EXPECT_EQ(events[i].top_logprobs[0].token, r.tokens[i]);  // greedy picks the most likely
    EXPECT_FLOAT_EQ(events[i].top_logprobs[0].logprob, events[i].logprob);
    EXPECT_LT(events[i].logprob, 0.0f);
  }
}

TEST_F(GeneratorTest, SeededSamplingReproduces) {
  Generator gen(*model_, *tok_, pool_, 8, 4);
  GenerationOptions o;
  o.max_tokens = 10;
  o.ignore_eos = true;
  o.sampling.temperature = 1.0f;
  o.sampling.seed = 77;
  EXPECT_EQ(gen.generate(prompt_, o).tokens, gen.generate(prompt_, o).tokens);
}

TEST_F(GeneratorTest, RejectsBadRequests) {
  Generator gen(*model_, *tok_, pool_, 2, 8);
  EXPECT_THROW(gen.generate({}, greedy(4)), InvalidArgument);
  EXPECT_THROW(gen.generate(std::vector<int32_t>(17, 1), greedy(4)), InvalidArgument);
  EXPECT_THROW(gen.generate(prompt_, greedy(0)), InvalidArgument);
  EXPECT_THROW(gen.generate(prompt_, greedy(4, 0)), InvalidArgument);
  EXPECT_THROW(gen.generate({1, kVocab}, greedy(4)), InvalidArgument);
  GenerationOptions bad = greedy(4);
  bad.sampling.top_p = 0.0f;
  EXPECT_THROW(gen.generate(prompt_, bad), InvalidArgument);
  // Still usable afterwards: nothing leaked from the failed calls.
  EXPECT_EQ(gen.generate(std::vector<int32_t>(15, 1), greedy(1)).tokens.size(), 1u);
}

}  // namespace
}  // namespace jarvis
