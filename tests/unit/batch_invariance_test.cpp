// Batch invariance: a sequence's numbers must not depend on what else shares its forward step, or
// on how its prompt was cut into chunks. Continuous batching (requests joining and leaving every
// step) and preemption by recompute rely on it to give a request the same tokens it would get
// alone. Checked bitwise: the kernels promise the same operations in the same order per row, so
// any difference at all is a broken promise, not rounding.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "csrc/model/model.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

TEST(BatchInvariance, MatmulRowDoesNotDependOnBatchSize) {
  cpu::ThreadPool pool(3);
  // Shapes with ragged tails: rows not a multiple of the row tile, cols not of the vector width.
  for (auto [rows, cols] : {std::pair<int, int>{37, 100}, {64, 576}, {5, 7}}) {
    const std::vector<float> w = random_floats(static_cast<size_t>(rows) * cols, 1);
    for (int n : {2, 3, 5, 17, 64, 70, 131}) {
      const std::vector<float> x = random_floats(static_cast<size_t>(n) * cols, 2 + n);
      std::vector<float> batched(static_cast<size_t>(n) * rows);
      cpu::matmul(x.data(), w.data(), batched.data(), n, rows, cols, pool);
      for (int t = 0; t < n; ++t) {
        std::vector<float> alone(rows);
        cpu::matmul(x.data() + static_cast<size_t>(t) * cols, w.data(), alone.data(), 1, rows, cols, pool);
        ASSERT_TRUE(same_bits(alone.data(), batched.data() + static_cast<size_t>(t) * rows, rows))
            << "rows " << rows << " cols " << cols << " batch " << n << " token " << t;
      }
    }
  }
}

TEST(BatchInvariance, AttentionOfASequenceIgnoresTheOthers) {
  cpu::ThreadPool pool(2);
  cpu::AttentionShape s;
  s.n_heads = 6;
  s.n_kv_heads = 2;
  s.head_dim = 16;
  s.page_size = 4;
  s.scale = 0.25f;
  const int pages = 16, row = s.n_kv_heads * s.head_dim, qrow = s.n_heads * s.head_dim;
  std::vector<float> k = random_floats(static_cast<size_t>(pages) * s.page_size * row, 7);
  std::vector<float> v = random_floats(k.size(), 8);
  const std::vector<int32_t> table_a = {3, 0, 9}, table_b = {5, 6, 1, 12};
  // A: 3 new tokens at positions 7..9; B: 1 token at position 13 (a decode).
  cpu::PagedSequence a{0, 3, 7, table_a.data()}, b{3, 1, 13, table_b.data()};
  const std::vector<float> q = random_floats(4 * static_cast<size_t>(qrow), 9);
  std::vector<float> both(4 * static_cast<size_t>(qrow)), only_a(3 * static_cast<size_t>(qrow)), only_b(qrow);
  const cpu::PagedSequence seqs[2] = {a, b};
  ASSERT_TRUE(cpu::paged_attention(q.data(), k.data(), v.data(), seqs, 2, both.data(), s, pool));
  ASSERT_TRUE(cpu::paged_attention(q.data(), k.data(), v.data(), &a, 1, only_a.data(), s, pool));
  cpu::PagedSequence b_alone = b;
  b_alone.token_offset = 0;
  ASSERT_TRUE(cpu::paged_attention(q.data() + 3 * qrow, k.data(), v.data(), &b_alone, 1, only_b.data(), s, pool));
  EXPECT_TRUE(same_bits(both.data(), only_a.data(), only_a.size()));
  EXPECT_TRUE(same_bits(both.data() + 3 * qrow, only_b.data(), only_b.size()));
}

class ModelInvariance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = load_model(std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf").release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static Model* model_;
};
Model* ModelInvariance::model_ = nullptr;

// Runs one step of `slices` (tokens concatenated in order) and returns the logits of every row.
std::vector<float> run_step(const Model& m, KvCache& kv, cpu::ThreadPool& pool, const std::vector<int32_t>& tokens,
                            const BatchView& batch) {
  const int n = static_cast<int>(tokens.size());
  std::vector<float> hidden(static_cast<size_t>(n) * m.config().hidden);
  m.embed(tokens.data(), n, hidden.data());
  m.forward_layers(batch, hidden.data(), kv, pool);
  std::vector<float> logits(static_cast<size_t>(n) * m.config().vocab_size);
  m.compute_logits(hidden.data(), n, logits.data(), pool);
  return logits;
}

SequenceSlice slice(int64_t id, int n, int start, std::vector<int32_t> table) {
  SequenceSlice s;
  s.seq_id = id;
  s.n_tokens = n;
  s.start_pos = start;
  s.block_table = std::move(table);
  return s;
}

TEST_F(ModelInvariance, LogitsOfASequenceIgnoreItsBatchAndItsChunking) {
  const Model& m = *model_;
  cpu::ThreadPool pool(2);
  const int vocab = m.config().vocab_size;
  const std::vector<int32_t> a = {1, 504, 3458, 314, 3056, 314, 260, 1345, 28, 2700, 17, 2583, 30};  // 13 tokens
  const std::vector<int32_t> b = {1, 2043, 1767, 253, 1116};                                         // 5 tokens

  // Alone: A's prompt in one step.
  KvCache kv1 = m.make_kv_cache(8, 4);
  BatchView alone;
  alone.seqs.push_back(slice(0, 13, 0, {0, 1, 2, 3}));
  const std::vector<float> ref = run_step(m, kv1, pool, a, alone);

  // Batched and chunked: B's first 4 tokens, then [A 0..6 | B's 5th token as a decode], then A 7..12.
  KvCache kv2 = m.make_kv_cache(8, 4);
  BatchView s1;
  s1.seqs.push_back(slice(1, 4, 0, {7, 6}));
  run_step(m, kv2, pool, std::vector<int32_t>(b.begin(), b.begin() + 4), s1);
  BatchView s2;
  s2.seqs.push_back(slice(0, 7, 0, {4, 2, 5, 0}));
  s2.seqs.push_back(slice(1, 1, 4, {7, 6}));
  std::vector<int32_t> t2(a.begin(), a.begin() + 7);
  t2.push_back(b[4]);
  const std::vector<float> l2 = run_step(m, kv2, pool, t2, s2);
  BatchView s3;
  s3.seqs.push_back(slice(0, 6, 7, {4, 2, 5, 0}));
  const std::vector<float> l3 = run_step(m, kv2, pool, std::vector<int32_t>(a.begin() + 7, a.end()), s3);

  for (int p = 0; p < 13; ++p) {
    const float* got = p < 7 ? &l2[static_cast<size_t>(p) * vocab] : &l3[static_cast<size_t>(p - 7) * vocab];
    EXPECT_TRUE(same_bits(got, &ref[static_cast<size_t>(p) * vocab], vocab)) << "position " << p;
  }

  // B's decode row against B alone in one step.
  KvCache kv3 = m.make_kv_cache(8, 4);
  BatchView b_alone;
  b_alone.seqs.push_back(slice(1, 5, 0, {1, 0}));
  const std::vector<float> ref_b = run_step(m, kv3, pool, b, b_alone);
  EXPECT_TRUE(same_bits(&l2[7 * static_cast<size_t>(vocab)], &ref_b[4 * static_cast<size_t>(vocab)], vocab));
}

}  // namespace
}  // namespace jarvis
