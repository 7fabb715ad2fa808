// Decode steps replayed from CUDA graphs (csrc/cuda/cuda_model_decode.cpp) against the same steps
// launched eagerly (CudaShardOptions::cuda_graphs = false): both run the same kernels in the same
// order on the same inputs, so their outputs must agree bit for bit, across batch-size buckets
// (with padding rows: 3 sequences in the bucket of 4), sequences crossing page boundaries and
// split-KV chunks, many steps, and after the scratch buffers were reallocated (a long prefill:
// the captured pointers are stale and the graph must be re-captured). The graph path is also
// checked against the CPU Model (the independent reference, itself checked against NumPy) with
// the f32 tolerance of cuda_model_test.cpp. Every test skips, saying why, without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "csrc/cuda/cuda_model.h"
#include "csrc/model/cpu_shard.h"
#include "csrc/model/model.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/gpu/model/model_test_util.h"

namespace jarvis {
namespace {

using model_test::random_matrix;
using model_test::random_projections;
using model_test::random_vector;

constexpr int kPageSize = 16;

// A 2-layer llama-like model (GQA 4, head_dim 64) with QKV bias, so padding rows carry nonzero
// q/k/v (the bias) that must still write no KV and reach no real row.
std::unique_ptr<Model> small_model(int context) {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.arch_name = "llama";
  c.n_layers = 2;
  c.hidden = 256;
  c.ffn_hidden = 512;
  c.vocab_size = 300;
  c.context_length = context;
  c.n_heads = 8, c.n_kv_heads = 2, c.head_dim = 64, c.rope_dim = 64;
  c.rope_style = RopeStyle::kNeox;
  c.qkv_bias = true;
  std::mt19937 rng(77);
  ModelWeights w;
  w.embedding = random_matrix(c.vocab_size, c.hidden, rng);
  w.output_norm = random_vector(c.hidden, rng, 1.0f, 0.1f);
  w.lm_head = random_matrix(c.vocab_size, c.hidden, rng);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = random_vector(c.hidden, rng, 1.0f, 0.1f);
    lw.ffn_norm = random_vector(c.hidden, rng, 1.0f, 0.1f);
    random_projections(lw, c, rng);
    lw.bq = random_vector(c.q_dim(), rng, 0.0f, 0.5f);
    lw.bk = random_vector(c.kv_dim(), rng, 0.0f, 0.5f);
    lw.bv = random_vector(c.kv_dim(), rng, 0.0f, 0.5f);
    w.layers.push_back(std::move(lw));
  }
  return std::make_unique<Model>(c, ShardSpec::full(), std::move(w), TokenizerData{});
}

CudaShardOptions options(GpuDType dtype, int num_blocks, bool graphs) {
  CudaShardOptions o;
  o.dtype = dtype;
  o.page_size = kPageSize;
  o.num_blocks = num_blocks;
  o.max_step_tokens = 64;  // small, so a 200-token prefill reallocates the scratch
  o.cuda_graphs = graphs;
  return o;
}

// Sequences over a shuffled set of pages; each step is run on every backend with the same input.
struct Driver {
  struct Seq {
    std::vector<int32_t> blocks;
    int pos = 0;
  };
  std::vector<Seq> seqs;
  std::vector<ShardForward*> backends;
  std::mt19937 rng{2024};
  int hidden = 0;

  Driver(int n_seqs, int blocks_each, int num_blocks, int hidden_size) : hidden(hidden_size) {
    std::vector<int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < n_seqs; ++i) {
      Seq s;
      s.blocks.assign(perm.begin() + static_cast<size_t>(i) * blocks_each,
                      perm.begin() + static_cast<size_t>(i + 1) * blocks_each);
      seqs.push_back(std::move(s));
    }
  }

  // counts[i] tokens of sequence i (0: not in the step). Returns each backend's output.
  std::vector<std::vector<float>> step(const std::vector<int>& counts) {
    BatchView batch;
    int n = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] == 0) continue;
      SequenceSlice sl;
      sl.seq_id = static_cast<int64_t>(i);
      sl.n_tokens = counts[i];
      sl.start_pos = seqs[i].pos;
      sl.block_table = std::vector<int32_t>(seqs[i].blocks.begin(), seqs[i].blocks.end());
      seqs[i].pos += counts[i];
      n += counts[i];
      batch.seqs.push_back(sl);
    }
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> input(static_cast<size_t>(n) * hidden);
    for (float& x : input) x = d(rng);
    std::vector<std::vector<float>> out;
    for (ShardForward* b : backends) {
      std::vector<float> h = input;
      b->forward_layers(batch, h.data());
      for (size_t i = 0; i < h.size(); ++i) h[i] -= input[i];  // the layers' contribution
      out.push_back(std::move(h));
    }
    return out;
  }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class CudaGraphDecode : public ::testing::TestWithParam<GpuDType> {};

// Prefill six sequences (one over 300 tokens: several pages and, in the bucket-1 plan, more
// than one split-KV chunk), then 60 decode steps over 1..6 of them (buckets 1, 2, 4, 8 with
// padding; context classes 256 and 512, as sequence 0 is or is not in the step), a 200-token
// prefill that reallocates the scratch, more decode steps.
TEST_P(CudaGraphDecode, MatchesEagerBitForBit) {
  SKIP_WITHOUT_GPU();
  constexpr int kBlocks = 200, kBlocksEach = 32;
  auto model = small_model(kBlocksEach * kPageSize);
  CudaModel graph(*model, options(GetParam(), kBlocks, true));
  CudaModel eager(*model, options(GetParam(), kBlocks, false));
  cpu::ThreadPool pool(2);
  CpuShard cpu(*model, kBlocks, kPageSize, pool);
  Driver drv(6, kBlocksEach, kBlocks, model->config().hidden);
  drv.backends = {&graph, &eager, &cpu};
  // f32: the tolerance of cuda_model_test.cpp (summation order only); 16-bit: its f16 / bf16 ones.
  const double tol = GetParam() == GpuDType::kF32 ? 1e-4 : GetParam() == GpuDType::kF16 ? 2e-2 : 0.1;

  auto check = [&](const std::vector<int>& counts, const std::string& what) {
    const std::vector<std::vector<float>> o = drv.step(counts);
    EXPECT_TRUE(same_bits(o[0], o[1])) << what << ": graph and eager differ";
    EXPECT_LT(rel_error(o[0], o[2]), tol) << what << ": graph vs CPU";
  };
  check({40, 15, 31, 17, 1, 33}, "prefill 1");
  check({40, 0, 0, 0, 0, 0}, "prefill 2");
  check({40, 0, 0, 0, 0, 0}, "prefill 3");
  check({40, 0, 0, 0, 0, 0}, "prefill 4");
  check({40, 0, 0, 0, 0, 0}, "prefill 5");
  check({40, 0, 0, 0, 0, 0}, "prefill 6");
  check({40, 0, 0, 0, 0, 0}, "prefill 7");
  check({40, 0, 0, 0, 0, 0}, "prefill 8");  // sequence 0 at 320 tokens
  const std::vector<int> sizes = {1, 2, 3, 4, 5, 6, 3, 1, 6, 2};
  for (int s = 0; s < 60; ++s) {
    const int n = sizes[s % sizes.size()];
    std::vector<int> counts(6, 0);
    for (int i = 0; i < n; ++i) counts[(i + s) % 6] = 1;  // a changing subset
    check(counts, "decode step " + std::to_string(s) + " (" + std::to_string(n) + " sequences)");
  }
  const size_t replays_before = graph.graph_replays();
  EXPECT_GT(replays_before, 0u) << "the graph path never replayed";
  const size_t captures_before = graph.graph_captures();
  check({0, 0, 200, 0, 0, 0}, "long prefill (reallocates the scratch)");
  for (int s = 0; s < 12; ++s) {
    std::vector<int> counts = {1, 1, 1, 0, 1, 0};
    if (s % 2) counts = {1, 0, 1, 1, 1, 1};
    check(counts, "decode after the long prefill " + std::to_string(s));
  }
  EXPECT_GT(graph.graph_captures(), captures_before) << "stale graphs were not re-captured";
  EXPECT_GT(graph.graph_replays(), replays_before);
  EXPECT_EQ(eager.graph_replays(), 0u);
  EXPECT_EQ(eager.graph_captures(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaGraphDecode,
                         ::testing::Values(GpuDType::kF32, GpuDType::kF16, GpuDType::kBF16),
                         [](const ::testing::TestParamInfo<GpuDType>& i) { return gpu_dtype_name(i.param); });

// Every bucket up to 256 sequences, with and without padding, each step twice so the second
// replays the graph the first one's bucket captured (the first of a bucket runs eagerly).
TEST(CudaGraphBuckets, EveryBucketMatchesEager) {
  SKIP_WITHOUT_GPU();
  constexpr int kSeqs = 256, kBlocksEach = 4, kBlocks = kSeqs * kBlocksEach;
  auto model = small_model(kBlocksEach * kPageSize);
  CudaModel graph(*model, options(GpuDType::kF16, kBlocks, true));
  CudaModel eager(*model, options(GpuDType::kF16, kBlocks, false));
  Driver drv(kSeqs, kBlocksEach, kBlocks, model->config().hidden);
  drv.backends = {&graph, &eager};
  for (const int n : {1, 2, 3, 4, 7, 8, 9, 16, 17, 32, 50, 64, 65, 128, 200, 256}) {
    for (int rep = 0; rep < 3; ++rep) {  // 3 tokens each, up to 48 positions: across a page boundary
      std::vector<int> counts(kSeqs, 0);
      for (int i = 0; i < n; ++i) counts[i] = 1;
      const std::vector<std::vector<float>> o = drv.step(counts);
      EXPECT_TRUE(same_bits(o[0], o[1])) << n << " sequences, repeat " << rep;
    }
  }
  EXPECT_GT(graph.graph_replays(), 0u);
}

// A small case for compute-sanitizer (benchmarks/gpu/run_all.sh): 3 sequences in the bucket of
// 4, the first decode step eager, the second captured, the rest replayed; split-KV in play
// (sequence 0, at 300, past the first key chunk of the bucket's 2-split plan).
TEST(CudaGraphSmoke, PaddedBucketReplays) {
  SKIP_WITHOUT_GPU();
  constexpr int kBlocks = 64, kBlocksEach = 20;
  auto model = small_model(kBlocksEach * kPageSize);
  CudaModel graph(*model, options(GpuDType::kF16, kBlocks, true));
  CudaModel eager(*model, options(GpuDType::kF16, kBlocks, false));
  Driver drv(3, kBlocksEach, kBlocks, model->config().hidden);
  drv.backends = {&graph, &eager};
  for (int i = 0; i < 5; ++i) drv.step({60, i == 0 ? 17 : 0, i == 0 ? 3 : 0});  // sequence 0 at 300
  for (int s = 0; s < 5; ++s) {
    const std::vector<std::vector<float>> o = drv.step({1, 1, 1});
    EXPECT_TRUE(same_bits(o[0], o[1])) << "decode step " << s;
  }
  EXPECT_EQ(graph.graph_captures(), 1u);
  EXPECT_EQ(graph.graph_replays(), 4u);
}

}  // namespace
}  // namespace jarvis
