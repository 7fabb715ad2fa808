// The CUDA layer stack (csrc/cuda/cuda_model.h) against the CPU Model it mirrors, through the same
// ShardForward calls on the same weights and inputs: synthetic models that cover the llama / qwen2
// / gemma differences (QKV bias, RoPE pairing, GeGLU, embedding scale, tied head, head dims 64 /
// 128 / 256, GQA ratios), a pipeline shard, the error paths, and the default SmolLM2 file. The CPU
// Model is itself checked against NumPy over `gguf` (tests/python/test_forward_reference.py).
// Every test skips, saying why, when no CUDA device (or, for SmolLM2, no model file) is found.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "csrc/cuda/cuda_error.h"
#include "csrc/cuda/cuda_model.h"
#include "csrc/model/cpu_shard.h"
#include "csrc/model/model.h"
#include "csrc/tokenizer/tokenizer.h"
#include "csrc/util/error.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/gpu/model/model_test_util.h"

namespace jarvis {
namespace {

using model_test::random_matrix;
using model_test::random_projections;
using model_test::random_vector;

constexpr int kPageSize = 16;
constexpr int kNumBlocks = 32;

// Normalised error ||got - want|| / ||want||: one number per tensor, insensitive to the scale of
// the values, so a rounding-level difference and an indexing bug (error ~1) are far apart.
double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Tolerances on rel_error for a few layers of a synthetic model.
// f32: both sides compute in fp32 and differ only in summation order (cuBLAS blocking, the CPU's
//   double sum in RMSNorm, attention tile order): ~sqrt(K)·2^-24 ≈ 2e-6 per op for K <= 1024,
//   ~1e-5 after a few layers; 1e-4 leaves 10x, while a wrong page, head or pairing gives ~1.
// f16: weights and ~8 activations per layer are rounded to unit roundoff u = 2^-11 ≈ 4.9e-4;
//   independent roundings add in quadrature: sqrt(8 · 3 layers) · u ≈ 2.4e-3, times up to 4 for
//   amplification by the norms and the softmax ≈ 1e-2; tolerance 2e-2.
// bf16: u = 2^-8, 8x the f16 figure ≈ 8e-2; tolerance 0.1 (the f32 run is the tight logic check).
double tolerance(GpuDType t) { return t == GpuDType::kF32 ? 1e-4 : t == GpuDType::kF16 ? 2e-2 : 0.1; }

// llama: GQA 4, head_dim 64, q_dim != hidden, interleaved RoPE, SwiGLU, separate lm_head.
// qwen2: QKV bias, GQA 2, head_dim 128, NeoX RoPE, tied head.
// gemma: GeGLU, MQA, head_dim 256, NeoX RoPE, embedding scale sqrt(hidden), tied head.
ModelConfig synthetic_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.n_layers = 3;
  c.hidden = 256;
  c.ffn_hidden = 512;
  c.vocab_size = 1000;
  c.context_length = kNumBlocks * kPageSize;
  c.norm_eps = 1e-5f;
  switch (arch) {
    case Arch::kLlama:
      c.arch_name = "llama";
      c.n_heads = 8, c.n_kv_heads = 2, c.head_dim = 64;
      c.rope_style = RopeStyle::kInterleaved;
      break;
    case Arch::kQwen2:
      c.arch_name = "qwen2";
      c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 128;
      c.rope_style = RopeStyle::kNeox;
      c.rope_theta = 1e6f;
      c.qkv_bias = true;
      c.tied_embeddings = true;
      break;
    case Arch::kGemma:
      c.arch_name = "gemma";
      c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 256;
      c.rope_style = RopeStyle::kNeox;
      c.activation = Activation::kGeluTanh;
      c.tied_embeddings = true;
      c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
      break;
  }
  c.rope_dim = c.head_dim;
  return c;
}

std::unique_ptr<Model> synthetic_model(Arch arch, ShardSpec shard = ShardSpec::full()) {
  const ModelConfig c = synthetic_config(arch);
  std::mt19937 rng(1234 + static_cast<int>(arch));
  ModelWeights w;
  // Entries ~1 after the embedding scale (as in real gemma checkpoints, whose rows are small), so
  // the residual stream is not dominated by the embedding and every layer's share is visible.
  const float embedding_std = 1.0f / c.embedding_scale;
  w.embedding = random_matrix(c.vocab_size, c.hidden, rng, std::sqrt(static_cast<float>(c.hidden)) * embedding_std);
  w.output_norm = random_vector(c.hidden, rng, 1.0f, 0.1f);
  if (!c.tied_embeddings) w.lm_head = random_matrix(c.vocab_size, c.hidden, rng);
  const int end = shard.end_layer < 0 ? c.n_layers : shard.end_layer;
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = random_vector(c.hidden, rng, 1.0f, 0.1f);
    lw.ffn_norm = random_vector(c.hidden, rng, 1.0f, 0.1f);
    random_projections(lw, c, rng);
    if (c.qkv_bias) {
      lw.bq = random_vector(c.q_dim(), rng, 0.0f, 0.5f);
      lw.bk = random_vector(c.kv_dim(), rng, 0.0f, 0.5f);
      lw.bv = random_vector(c.kv_dim(), rng, 0.0f, 0.5f);
    }
    if (l >= shard.first_layer && l < end) w.layers.push_back(std::move(lw));
  }
  if (!shard.has_embedding && !shard.has_head) w.embedding = Matrix{};
  if (!shard.has_head) w.output_norm.clear(), w.lm_head = Matrix{};
  return std::make_unique<Model>(c, shard, std::move(w), TokenizerData{});
}

CudaShardOptions gpu_options(GpuDType dtype) {
  CudaShardOptions o;
  o.dtype = dtype;
  o.page_size = kPageSize;
  o.num_blocks = kNumBlocks;
  o.max_step_tokens = 64;
  return o;
}

// A fixed schedule of mixed steps over scattered pages: A and B prefill together (A crosses two
// page boundaries), then A and B decode while C prefills a chunk, then all three decode. Tokens
// are fixed in advance (teacher forcing), so both backends see the same inputs.
struct Schedule {
  struct Seq {
    std::vector<int32_t> blocks;
    int pos = 0;
  };
  std::vector<Seq> seqs{{{5, 0, 9, 3}}, {{1, 12}}, {{7, 2, 11, 4}}};
  std::vector<std::vector<int>> steps = {{37, 5, 0}, {1, 1, 20}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}};
};

struct StepOutput {
  std::vector<float> input;   // into the shard's layers (the embedding, or synthesised), [tokens, hidden]
  std::vector<float> delta;   // what the layers added to it: output - input (the residual stream
                              // minus its input, so the layers' error is not diluted by the input)
  std::vector<float> logits;  // of every row, [tokens, vocab] (when the shard has the head)
};

// Runs the schedule on one backend. Without the embedding the hidden input is synthesised.
std::vector<StepOutput> run_schedule(ShardForward& s, uint32_t seed) {
  const ModelConfig& c = s.config();
  Schedule sched;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, c.vocab_size - 1);
  std::normal_distribution<float> hid(0.0f, 1.0f);
  std::vector<StepOutput> out;
  for (const std::vector<int>& counts : sched.steps) {
    BatchView batch;
    int n = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] == 0) continue;
      SequenceSlice sl;
      sl.seq_id = static_cast<int64_t>(i);
      sl.n_tokens = counts[i];
      sl.start_pos = sched.seqs[i].pos;
      // A new vector moved in, not a copy-assign: GCC 12 at -O3 reports a false -Wnonnull there.
      const std::vector<int32_t>& blocks = sched.seqs[i].blocks;
      sl.block_table = std::vector<int32_t>(blocks.begin(), blocks.end());
      sched.seqs[i].pos += counts[i];
      n += counts[i];
      batch.seqs.push_back(sl);
    }
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = tok(rng);
    StepOutput o;
    o.input.resize(static_cast<size_t>(n) * c.hidden);
    if (s.shard().has_embedding) {
      s.embed(tokens.data(), n, o.input.data());
    } else {
      for (float& x : o.input) x = hid(rng);
    }
    std::vector<float> hidden = o.input;
    s.forward_layers(batch, hidden.data());
    o.delta.resize(hidden.size());
    for (size_t i = 0; i < hidden.size(); ++i) o.delta[i] = hidden[i] - o.input[i];
    if (s.shard().has_head) {
      o.logits.resize(static_cast<size_t>(n) * c.vocab_size);
      s.compute_logits(hidden.data(), n, o.logits.data());
    }
    out.push_back(std::move(o));
  }
  return out;
}

void expect_same_run(const std::vector<StepOutput>& gpu, const std::vector<StepOutput>& cpu, double tol) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_LT(rel_error(gpu[i].input, cpu[i].input), tol) << "embedding of step " << i;
    EXPECT_LT(rel_error(gpu[i].delta, cpu[i].delta), tol) << "layers' output of step " << i;
    if (!cpu[i].logits.empty()) {
      const double el = rel_error(gpu[i].logits, cpu[i].logits);
      EXPECT_LT(el, tol) << "logits of step " << i;
    }
  }
}

struct Case {
  Arch arch;
  GpuDType dtype;
};

std::string case_text(const Case& c) {
  const char* a = c.arch == Arch::kLlama ? "llama" : c.arch == Arch::kQwen2 ? "qwen2" : "gemma";
  return std::string(a) + "_" + gpu_dtype_name(c.dtype);
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return case_text(info.param); }

// GoogleTest prints parameters through these (argument-dependent lookup): "GetParam() = llama_f16".
void PrintTo(const Case& c, std::ostream* os) { *os << case_text(c); }

class CudaModelSynthetic : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaModelSynthetic, MixedStepsMatchCpu) {
  const Case k = GetParam();
  std::unique_ptr<Model> m = synthetic_model(k.arch);
  cpu::ThreadPool pool(2);
  CpuShard cpu(*m, kNumBlocks, kPageSize, pool);
  CudaModel gpu(*m, gpu_options(k.dtype));
  expect_same_run(run_schedule(gpu, 7), run_schedule(cpu, 7), tolerance(k.dtype));
}

// A middle-to-tail pipeline rank: layers [1, 3), no embedding, the head (tied for qwen2/gemma, so
// the embedding table is uploaded for the head alone).
TEST_P(CudaModelSynthetic, TailShardMatchesCpu) {
  const Case k = GetParam();
  ShardSpec shard;
  shard.first_layer = 1;
  shard.end_layer = 3;
  shard.has_embedding = false;
  std::unique_ptr<Model> m = synthetic_model(k.arch, shard);
  cpu::ThreadPool pool(2);
  CpuShard cpu(*m, kNumBlocks, kPageSize, pool);
  CudaModel gpu(*m, gpu_options(k.dtype));
  EXPECT_THROW(gpu.embed(std::vector<int32_t>{1}.data(), 1, std::vector<float>(256).data()), InvalidArgument);
  expect_same_run(run_schedule(gpu, 9), run_schedule(cpu, 9), tolerance(k.dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Archs, CudaModelSynthetic,
    ::testing::Values(Case{Arch::kLlama, GpuDType::kF32}, Case{Arch::kLlama, GpuDType::kF16},
                      Case{Arch::kLlama, GpuDType::kBF16}, Case{Arch::kQwen2, GpuDType::kF32},
                      Case{Arch::kQwen2, GpuDType::kF16}, Case{Arch::kGemma, GpuDType::kF32},
                      Case{Arch::kGemma, GpuDType::kBF16}),
    case_name);

TEST(CudaModelErrors, BadBatchesAndBudgets) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<Model> m = synthetic_model(Arch::kLlama);
  CudaModel gpu(*m, gpu_options(GpuDType::kF16));
  std::vector<float> hidden(static_cast<size_t>(20) * m->config().hidden, 0.5f);
  BatchView b;
  b.seqs.push_back(SequenceSlice{0, 20, 0, {3}, true});  // 20 positions need 2 pages
  EXPECT_THROW(gpu.forward_layers(b, hidden.data()), InvalidArgument);
  b.seqs[0].block_table = {3, kNumBlocks};  // a page the cache does not have
  EXPECT_THROW(gpu.forward_layers(b, hidden.data()), InvalidArgument);
  b.seqs[0].block_table = {3, 4};
  EXPECT_NO_THROW(gpu.forward_layers(b, hidden.data()));
  const int32_t bad_token = m->config().vocab_size;
  EXPECT_THROW(gpu.embed(&bad_token, 1, hidden.data()), InvalidArgument);

  CudaShardOptions huge = gpu_options(GpuDType::kF16);
  huge.num_blocks = 1 << 30;  // 2^30 pages x 3 layers x 16 x 128 x 2 x 2 B: far beyond any GPU
  try {
    CudaModel too_big(*m, huge);
    ADD_FAILURE() << "a KV cache larger than the device was accepted";
  } catch (const DeviceOutOfMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("asked for"), std::string::npos) << what;
    EXPECT_NE(what.find("free"), std::string::npos) << what;
  }
  CudaShardOptions bad_device = gpu_options(GpuDType::kF16);
  bad_device.device = 999;
  EXPECT_THROW({ CudaModel g(*m, bad_device); }, CudaError);
}

// The default model, 30 layers. Skipped (saying so) when the file is not there: the GPU machines
// start bare, and the 98 MB file is more than a device run carries (see benchmarks/gpu/run_all.sh).
#ifndef JARVIS_SOURCE_DIR
#define JARVIS_SOURCE_DIR "."  // the direct build of run_all.sh, which exports JARVIS_TEST_MODEL
#endif
std::string default_model_path() {
  if (const char* p = std::getenv("JARVIS_TEST_MODEL")) return p;
  return std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

bool file_exists(const std::string& p) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (f) std::fclose(f);
  return f != nullptr;
}

class CudaModelSmolLm : public ::testing::TestWithParam<GpuDType> {
 protected:
  static void SetUpTestSuite() {
    if (!model_test::have_cuda_device() || !file_exists(default_model_path())) return;
    model_ = load_model(default_model_path()).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    if (!model_) GTEST_SKIP() << "model file " << default_model_path() << " not found (set JARVIS_TEST_MODEL): skipped";
  }
  static Model* model_;
};
Model* CudaModelSmolLm::model_ = nullptr;

int argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Prompt logits within tolerance, then 32 greedy steps teacher-forced on the CPU's tokens: where
// the CPU's best token leads the second by more than the logit error the tolerance allows, the GPU
// must pick the same token; at f32 it must pick it at every step.
TEST_P(CudaModelSmolLm, PromptLogitsAndGreedyTokensMatchCpu) {
  const GpuDType dtype = GetParam();
  const Model& m = *model_;
  std::unique_ptr<Tokenizer> tok = Tokenizer::create(m.tokenizer_data());
  const std::vector<int32_t> prompt =
      tok->encode("The three primary colours are red, yellow and", m.tokenizer_data().add_bos, false);
  cpu::ThreadPool pool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  CpuShard cpu(m, kNumBlocks, kPageSize, pool);
  CudaModel gpu(m, gpu_options(dtype));
  const int vocab = m.config().vocab_size, h = m.config().hidden;

  // 30 layers instead of 3: the quadrature estimate above grows by sqrt(10) (f16: ~3e-2), and
  // the f32 bound by the same factor plus the longer softmax chains (1e-3).
  const double tol = dtype == GpuDType::kF32 ? 1e-3 : dtype == GpuDType::kF16 ? 5e-2 : 0.2;
  auto step = [&](ShardForward& s, const std::vector<int32_t>& toks, int start) {
    const int n = static_cast<int>(toks.size());
    BatchView b;
    b.seqs.push_back(SequenceSlice{0, n, start, {3, 8, 1, 6}, true});
    std::vector<float> hidden(static_cast<size_t>(n) * h), logits(vocab);
    s.embed(toks.data(), n, hidden.data());
    s.forward_layers(b, hidden.data());
    s.compute_logits(hidden.data() + static_cast<size_t>(n - 1) * h, 1, logits.data());
    return logits;
  };
  std::vector<float> lc = step(cpu, prompt, 0), lg = step(gpu, prompt, 0);
  EXPECT_LT(rel_error(lg, lc), tol) << "prompt logits";

  int pos = static_cast<int>(prompt.size()), agree = 0, decisive = 0;
  const int kSteps = 32;
  for (int i = 0; i < kSteps; ++i) {
    std::vector<float> sorted = lc;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    double rms = 0;
    for (float x : lc) rms += static_cast<double>(x) * x;
    rms = std::sqrt(rms / vocab);
    // rel_error <= tol bounds the logits' error in RMS by tol · rms; two logits moving apart by
    // twice that can swap only if they were closer than 2 · tol · rms.
    const bool is_decisive = sorted[0] - sorted[1] > 2 * tol * rms;
    const int want = argmax(lc), got = argmax(lg);
    agree += want == got;
    if (is_decisive || dtype == GpuDType::kF32) {
      ++decisive;
      EXPECT_EQ(got, want) << "step " << i << ": margin " << sorted[0] - sorted[1] << ", logit rms " << rms;
    }
    EXPECT_LT(rel_error(lg, lc), tol) << "logits of step " << i;
    const std::vector<int32_t> next{want};
    lc = step(cpu, next, pos);
    lg = step(gpu, next, pos);
    ++pos;
  }
  std::printf("[ info ] %s: greedy agreement %d/%d, %d decisive steps\n", gpu_dtype_name(dtype), agree, kSteps,
              decisive);
  // A sanity bound, not a tolerance: a confident greedy continuation has most steps decisive.
  EXPECT_GE(decisive, kSteps / 4) << "too few decisive steps for the check to mean anything";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaModelSmolLm,
                         ::testing::Values(GpuDType::kF32, GpuDType::kF16, GpuDType::kBF16),
                         [](const ::testing::TestParamInfo<GpuDType>& i) { return gpu_dtype_name(i.param); });

}  // namespace

void PrintTo(GpuDType t, std::ostream* os) { *os << gpu_dtype_name(t); }

}  // namespace jarvis
