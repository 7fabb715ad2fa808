// Model-level behaviour that needs no model file: argument checks of the forward pass, and
// invariances of the paged forward (chunking, batching, page size, threads). Numerical
// correctness against an independent reference is tests/python/test_forward_reference.py.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/util/error.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/common/random_weights.h"

namespace jarvis {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.arch_name = "llama";
  c.n_layers = 2;
  c.hidden = 32;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_hidden = 48;
  c.vocab_size = 50;
  c.rope_dim = 8;
  c.rope_style = RopeStyle::kInterleaved;
  return c;
}

using model_test::random_matrix;
using model_test::random_projections;

std::unique_ptr<Model> tiny_model(ShardSpec shard = ShardSpec::full()) {
  const ModelConfig c = tiny_config();
  std::mt19937 rng(42);
  ModelWeights w;
  w.embedding = random_matrix(c.vocab_size, c.hidden, rng);
  w.output_norm.assign(c.hidden, 1.0f);
  const int end = shard.end_layer < 0 ? c.n_layers : shard.end_layer;
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm.assign(c.hidden, 1.0f);
    lw.ffn_norm.assign(c.hidden, 1.0f);
    random_projections(lw, c, rng);
    if (l >= shard.first_layer && l < end) w.layers.push_back(std::move(lw));
  }
  return std::make_unique<Model>(c, shard, std::move(w), TokenizerData{});
}

// Logits of every position of `tokens`, fed in steps of `chunk` tokens as `copies` sequences.
std::vector<float> run(const Model& m, const std::vector<int32_t>& tokens, int chunk, int copies,
                       int page_size, int threads) {
  cpu::ThreadPool pool(threads);
  const int n = static_cast<int>(tokens.size());
  const int pages = (n + page_size - 1) / page_size;
  KvCache kv = m.make_kv_cache(pages * copies, page_size);
  const int h = m.config().hidden, v = m.config().vocab_size;
  std::vector<float> out(static_cast<size_t>(copies) * n * v);
  for (int start = 0; start < n; start += chunk) {
    const int len = std::min(chunk, n - start);
    BatchView b;
    std::vector<float> hidden(static_cast<size_t>(copies) * len * h);
    for (int c = 0; c < copies; ++c) {
      SequenceSlice s;
      s.seq_id = c;
      s.start_pos = start;
      s.n_tokens = len;
      for (int p = 0; p < pages; ++p) s.block_table.push_back((p * copies + c * 5 + 3) % (pages * copies));
      b.seqs.push_back(s);
      m.embed(tokens.data() + start, len, hidden.data() + static_cast<size_t>(c) * len * h);
    }
    m.forward_layers(b, hidden.data(), kv, pool);
    for (int c = 0; c < copies; ++c) {
      m.compute_logits(hidden.data() + static_cast<size_t>(c) * len * h, len,
                       out.data() + (static_cast<size_t>(c) * n + start) * v, pool);
    }
  }
  return out;
}

TEST(ModelForward, ChunkingBatchingPagingAndThreadsGiveTheSameLogits) {
  // A token's arithmetic does not depend on which other tokens share its step, on the page
  // layout or on the thread count (static row partition, fixed summation order): bitwise equal.
  auto m = tiny_model();
  std::vector<int32_t> tokens;
  for (int i = 0; i < 23; ++i) tokens.push_back((i * 17 + 5) % 50);
  const auto base = run(*m, tokens, 23, 1, 16, 1);
  for (float x : base) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ(run(*m, tokens, 1, 1, 16, 1), base);
  EXPECT_EQ(run(*m, tokens, 5, 1, 1, 2), base);
  const auto batched = run(*m, tokens, 7, 3, 4, 3);
  for (int c = 0; c < 3; ++c) {
    EXPECT_TRUE(std::equal(base.begin(), base.end(), batched.begin() + c * base.size())) << "copy " << c;
  }
}

TEST(ModelForward, RejectsBadBatchesAndMissingParts) {
  auto m = tiny_model();
  cpu::ThreadPool pool(1);
  KvCache kv = m->make_kv_cache(2, 4);
  std::vector<float> hidden(10 * 32);
  BatchView b;
  SequenceSlice s;
  s.n_tokens = 6;
  s.block_table = {0};  // 6 tokens need 2 pages of 4
  b.seqs.push_back(s);
  EXPECT_THROW(m->forward_layers(b, hidden.data(), kv, pool), InvalidArgument);
  b.seqs[0].block_table = {0, 2};  // block 2 does not exist
  EXPECT_THROW(m->forward_layers(b, hidden.data(), kv, pool), InvalidArgument);
  b.seqs[0].block_table = {1, 0};
  EXPECT_NO_THROW(m->forward_layers(b, hidden.data(), kv, pool));
  KvCache wrong = KvCache(1, 2, 4, 2, 8);  // one layer, the shard has two
  EXPECT_THROW(m->forward_layers(b, hidden.data(), wrong, pool), InvalidArgument);
  const int32_t bad_token = 50;
  EXPECT_THROW(m->embed(&bad_token, 1, hidden.data()), InvalidArgument);

  ShardSpec middle;
  middle.first_layer = 1;
  middle.end_layer = 2;
  middle.has_embedding = false;
  middle.has_head = false;
  auto part = tiny_model(middle);
  EXPECT_EQ(part->n_shard_layers(), 1);
  const int32_t token = 3;
  EXPECT_THROW(part->embed(&token, 1, hidden.data()), InvalidArgument);
  std::vector<float> logits(50);
  EXPECT_THROW(part->compute_logits(hidden.data(), 1, logits.data(), pool), InvalidArgument);
}

}  // namespace
}  // namespace jarvis
