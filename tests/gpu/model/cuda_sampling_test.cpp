// Device sampling (kernels/cuda/sampling.h, CudaModel::sample_logits) against the CPU sampler on
// the same logits and the same uniform u: csrc/sampling's apply_penalties (over the full prompt
// and generated lists, not the compact history the device gets) and sample_penalised, whose
// semantics Sampler::sample defines and sampler_test.cpp checks against independent references.
// Tokens must be equal: the kernel sorts candidates exactly and adds every cumulative sum in the
// CPU's order, so only a u within ~1e-15 of a boundary could tell them apart (never with these
// seeds). Logprobs within one float rounding (the double log-normaliser is summed in another
// order). Every test skips, saying why, without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/sampling/sample_request.h"
#include "kernels/cuda/sampling.h"

namespace jarvis {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device found: GPU sampling test skipped"

template <typename T>
struct Dev {
  explicit Dev(size_t n) { EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  T* p = nullptr;
};

struct Row {
  SamplingParams params;
  std::vector<int32_t> prompt, generated;
  double u = 0.0;
};

struct DeviceOut {
  std::vector<cuda::SampleRowResult> results;
  std::vector<float> penalised;  // [rows, vocab] as the kernel left them
};

DeviceOut run_device(const std::vector<float>& logits, int vocab, const std::vector<Row>& rows) {
  std::vector<cuda::SampleRowParams> params;
  std::vector<cuda::SamplePenaltyToken> history;
  for (const Row& r : rows) {
    const std::vector<TokenHistory> h = penalty_history(r.params, r.prompt, r.generated, vocab);
    cuda::SampleRowParams p{};
    p.temperature = r.params.temperature;
    p.top_k = r.params.top_k;
    p.top_p = r.params.top_p;
    p.min_p = r.params.min_p;
    p.repetition_penalty = r.params.repetition_penalty;
    p.presence_penalty = r.params.presence_penalty;
    p.frequency_penalty = r.params.frequency_penalty;
    p.n_logprobs = r.params.logprobs;
    p.history_offset = static_cast<int32_t>(history.size());
    p.history_count = static_cast<int32_t>(h.size());
    p.u = r.u;
    params.push_back(p);
    for (const TokenHistory& t : h) history.push_back({t.token, t.generated_count, t.in_prompt ? 1 : 0});
  }
  const size_t n = rows.size();
  Dev<float> d_logits(logits.size());
  Dev<cuda::SampleRowParams> d_params(n);
  Dev<cuda::SamplePenaltyToken> d_history(history.size());
  Dev<cuda::SampleRowResult> d_out(n);
  EXPECT_EQ(cudaMemcpy(d_logits.p, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_params.p, params.data(), n * sizeof(params[0]), cudaMemcpyHostToDevice), cudaSuccess);
  if (!history.empty()) {
    EXPECT_EQ(cudaMemcpy(d_history.p, history.data(), history.size() * sizeof(history[0]), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  EXPECT_EQ(cuda::sample_rows(d_logits.p, static_cast<int>(n), vocab, d_params.p, d_history.p, d_out.p, nullptr),
            cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  DeviceOut out;
  out.results.resize(n);
  out.penalised.resize(logits.size());
  EXPECT_EQ(cudaMemcpy(out.results.data(), d_out.p, n * sizeof(out.results[0]), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(out.penalised.data(), d_logits.p, logits.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

// One float rounding of a logprob computed in double (|logprob| up to ~40 here).
void expect_logprob(float got, float want, const std::string& what) {
  EXPECT_NEAR(got, want, 2e-7 * (1.0 + std::fabs(want))) << what;
}

// Runs the rows on the device and compares each with the CPU; returns how many rows the kernel
// sent back to the host (whose penalised logits, sampled on the CPU, must then give the CPU's token).
int compare(const std::vector<float>& logits, int vocab, const std::vector<Row>& rows) {
  const DeviceOut d = run_device(logits, vocab, rows);
  int host_rows = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const std::string what = "row " + std::to_string(i);
    std::vector<float> work(logits.begin() + static_cast<std::ptrdiff_t>(i * vocab),
                            logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * vocab));
    apply_penalties(r.params, work.data(), vocab, r.prompt, r.generated);
    EXPECT_EQ(0, std::memcmp(work.data(), d.penalised.data() + i * vocab, vocab * sizeof(float)))
        << what << ": penalised logits differ";
    const SampleResult want = sample_penalised(r.params, work.data(), vocab, r.u);
    const cuda::SampleRowResult& got = d.results[i];
    if (got.status == cuda::kSampleNeedsHost) {
      ++host_rows;
      EXPECT_EQ(sample_penalised(r.params, d.penalised.data() + i * vocab, vocab, r.u).token, want.token) << what;
      continue;
    }
    EXPECT_EQ(got.status, cuda::kSampleOk) << what;
    EXPECT_EQ(got.token, want.token) << what;
    expect_logprob(got.logprob, want.logprob, what + " logprob");
    EXPECT_EQ(got.n_top, static_cast<int>(want.top_logprobs.size())) << what;
    for (int k = 0; k < got.n_top && k < static_cast<int>(want.top_logprobs.size()); ++k) {
      EXPECT_EQ(got.top_tokens[k], want.top_logprobs[k].token) << what << " top " << k;
      expect_logprob(got.top_logprobs[k], want.top_logprobs[k].logprob, what + " top logprob");
    }
  }
  return host_rows;
}

std::vector<float> random_logits(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<int32_t> random_ids(std::mt19937& rng, int n, int vocab) {
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = d(rng);
  return v;
}

// Rows cycling through every feature: greedy, plain temperature, top-k, top-p, min-p, their
// combinations, penalties, logprobs up to 20.
std::vector<Row> mixed_rows(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<Row> rows(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Row& r = rows[static_cast<size_t>(i)];
    SamplingParams& p = r.params;
    switch (i % 8) {
      case 0: p.temperature = 0.0f; break;
      case 1: p.temperature = 0.7f; break;
      case 2: p.top_k = 1 + i % 50; break;
      case 3: p.top_p = 0.9f; p.temperature = 0.8f; break;
      case 4: p.min_p = 0.05f; break;
      case 5: p.top_k = 40; p.top_p = 0.95f; p.min_p = 0.02f; p.temperature = 1.3f; break;
      case 6: p.repetition_penalty = 1.2f; p.presence_penalty = 0.4f; p.frequency_penalty = 0.3f; p.top_p = 0.8f; break;
      case 7: p.repetition_penalty = 0.9f; p.temperature = 0.0f; break;
    }
    p.logprobs = i % 21;
    r.prompt = random_ids(rng, 40, vocab);
    r.generated = random_ids(rng, i % 30, vocab);
    r.u = uni(rng);
  }
  return rows;
}

class CudaSampling : public ::testing::TestWithParam<int> {  // the vocabulary size
 protected:
  void SetUp() override { SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaSampling, MixedRowsMatchCpu) {
  const int vocab = GetParam();
  const std::vector<Row> rows = mixed_rows(64, vocab, 1);
  // Logit scale 4: peaked enough for real nuclei, flat enough for hundreds of candidates.
  EXPECT_EQ(compare(random_logits(rows.size() * vocab, 4.0f, 2), vocab, rows), 0);
}

TEST_P(CudaSampling, ManyDrawsOfOneRowMatchCpu) {
  const int vocab = GetParam();
  const std::vector<float> one = random_logits(vocab, 2.0f, 5);
  for (const float top_p : {1.0f, 0.5f}) {
    std::vector<Row> rows(200);
    std::vector<float> logits;
    for (size_t i = 0; i < rows.size(); ++i) {
      rows[i].params.top_p = top_p;
      rows[i].params.temperature = 0.9f;
      rows[i].u = (static_cast<double>(i) + 0.5) / static_cast<double>(rows.size());
      logits.insert(logits.end(), one.begin(), one.end());
    }
    EXPECT_EQ(compare(logits, vocab, rows), 0) << "top_p " << top_p;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocab, CudaSampling, ::testing::Values(49152, 1001, 7, 151936));

// Random parameters of every kind (top_k up to beyond the vocabulary), tiny vocabularies, and
// logits rounded to halves so that many candidates tie: ties must break to the lowest id in the
// candidate order, the top logprobs and the draw exactly as on the CPU.
std::vector<Row> random_rows(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<Row> rows(static_cast<size_t>(n));
  for (Row& r : rows) {
    SamplingParams& p = r.params;
    p.temperature = uni(rng) < 0.2 ? 0.0f : static_cast<float>(0.2 + 1.5 * uni(rng));
    if (uni(rng) < 0.5) p.top_k = 1 + static_cast<int>(uni(rng) * 1.2 * vocab);
    if (uni(rng) < 0.5) p.top_p = static_cast<float>(0.05 + 0.95 * uni(rng));
    if (uni(rng) < 0.3) p.min_p = static_cast<float>(0.3 * uni(rng));
    if (uni(rng) < 0.3) {
      p.repetition_penalty = static_cast<float>(0.7 + uni(rng));
      p.presence_penalty = static_cast<float>(uni(rng) - 0.5);
      p.frequency_penalty = static_cast<float>(uni(rng) - 0.3);
    }
    p.logprobs = static_cast<int>(uni(rng) * 21);
    r.prompt = random_ids(rng, 20, vocab);
    r.generated = random_ids(rng, static_cast<int>(uni(rng) * 20), vocab);
    r.u = uni(rng);
  }
  return rows;
}

TEST(CudaSamplingCases, RandomParamsTinyVocabsAndTies) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 100;
  for (int vocab : {1, 2, 3, 64, 257, 3000, 49152}) {
    const std::vector<Row> rows = random_rows(48, vocab, seed++);
    compare(random_logits(rows.size() * vocab, 3.0f, seed++), vocab, rows);
    std::vector<float> tied = random_logits(rows.size() * vocab, 2.0f, seed++);
    for (float& x : tied) x = std::round(x * 2.0f) / 2.0f;
    compare(tied, vocab, rows);
  }
}

TEST(CudaSamplingCases, WindowEdges) {
  SKIP_WITHOUT_GPU();
  // Around kSampleMaxCandidates (4096): top_k at it and one past it, with and without a cut
  // inside the window. Rows 1 (4097 kept) and 4 (a nucleus of ~4100) go to the host.
  const int vocab = 4200;
  std::vector<Row> rows(6);
  rows[0].params.top_k = 4096;
  rows[1].params.top_k = 4097;
  rows[2].params.top_k = 4097;
  rows[2].params.top_p = 0.3f;
  rows[3].params.top_k = 4097;
  rows[3].params.min_p = 0.5f;
  rows[4].params.top_p = 0.999f;
  rows[5].params.min_p = 0.9f;
  for (size_t i = 0; i < rows.size(); ++i) rows[i].u = 0.13 * static_cast<double>(i + 1), rows[i].params.logprobs = 20;
  EXPECT_EQ(compare(random_logits(rows.size() * vocab, 1.0f, 77), vocab, rows), 2);
}

TEST(CudaSamplingCases, GreedyTiesGoToTheLowestId) {
  SKIP_WITHOUT_GPU();
  const int vocab = 49152;
  std::vector<float> logits = random_logits(2 * vocab, 1.0f, 3);
  for (int id : {30000, 12345, 40000}) logits[id] = 9.0f;  // row 0: three equal maxima
  // row 1: +0 at id 5 and -0 at id 6 (equal as floats), every other logit -1
  for (int i = 0; i < vocab; ++i) logits[vocab + i] = i == 6 ? -0.0f : (i == 5 ? 0.0f : -1.0f);
  std::vector<Row> rows(2);
  for (Row& r : rows) r.params.temperature = 0.0f, r.params.logprobs = 3;
  compare(logits, vocab, rows);
  const DeviceOut d = run_device(logits, vocab, rows);
  EXPECT_EQ(d.results[0].token, 12345);
  EXPECT_EQ(d.results[1].token, 5);
}

TEST(CudaSamplingCases, TopKBeyondTheWindowWithANarrowNucleus) {
  SKIP_WITHOUT_GPU();
  // top_k = 10000 > kSampleMaxCandidates: the top-k mass comes from a block sum over the k-th
  // key, and a peaked distribution's nucleus ends within the sorted window.
  const int vocab = 49152;
  std::vector<Row> rows(8);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].params.top_k = 10000;
    rows[i].params.top_p = 0.6f;
    rows[i].u = 0.1 + 0.1 * static_cast<double>(i);
  }
  EXPECT_EQ(compare(random_logits(rows.size() * vocab, 5.0f, 9), vocab, rows), 0);
}

TEST(CudaSamplingCases, WideNucleusGoesToTheHost) {
  SKIP_WITHOUT_GPU();
  // Nearly flat logits and top_p 0.99: the nucleus holds ~48k tokens, more than the kernel sorts.
  const int vocab = 49152;
  std::vector<Row> rows(4);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].params.top_p = 0.99f;
    rows[i].u = 0.2 * static_cast<double>(i + 1);
  }
  rows[3].params.top_p = 1.0f;
  rows[3].params.min_p = 1e-6f;  // keeps almost everything: beyond the window as well
  EXPECT_EQ(compare(random_logits(rows.size() * vocab, 0.1f, 4), vocab, rows), 4);
}

TEST(CudaSamplingCases, BadInputs) {
  SKIP_WITHOUT_GPU();
  Dev<float> logits(16);
  Dev<cuda::SampleRowParams> params(2);
  Dev<cuda::SampleRowResult> out(2);
  EXPECT_EQ(cuda::sample_rows(logits.p, 1, 0, params.p, nullptr, out.p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(logits.p, -1, 8, params.p, nullptr, out.p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(nullptr, 1, 8, params.p, nullptr, out.p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(logits.p, 1, 8, params.p, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(nullptr, 0, 8, nullptr, nullptr, nullptr, nullptr), cudaSuccess);

  // Row statuses: a history token outside the vocabulary, a NaN, every logit -inf.
  const int vocab = 8;
  std::vector<float> h_logits(3 * vocab, 1.0f);
  h_logits[vocab + 3] = NAN;
  for (int i = 0; i < vocab; ++i) h_logits[2 * vocab + i] = -INFINITY;
  std::vector<cuda::SampleRowParams> p(3, cuda::SampleRowParams{1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0, 0, 0, 0.5});
  p[0].repetition_penalty = 1.5f;
  p[0].history_count = 1;
  const cuda::SamplePenaltyToken bad{vocab, 1, 0};
  Dev<float> d_logits(h_logits.size());
  Dev<cuda::SampleRowParams> d_params(3);
  Dev<cuda::SamplePenaltyToken> d_history(1);
  Dev<cuda::SampleRowResult> d_out(3);
  cudaMemcpy(d_logits.p, h_logits.data(), h_logits.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_params.p, p.data(), 3 * sizeof(p[0]), cudaMemcpyHostToDevice);
  cudaMemcpy(d_history.p, &bad, sizeof(bad), cudaMemcpyHostToDevice);
  ASSERT_EQ(cuda::sample_rows(d_logits.p, 3, vocab, d_params.p, d_history.p, d_out.p, nullptr), cudaSuccess);
  std::vector<cuda::SampleRowResult> r(3);
  ASSERT_EQ(cudaMemcpy(r.data(), d_out.p, 3 * sizeof(r[0]), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(r[0].status, cuda::kSampleBadInput);
  EXPECT_EQ(r[1].status, cuda::kSampleNaN);
  EXPECT_EQ(r[2].status, cuda::kSampleAllNegInf);
}

// CudaModel::sample_logits against its own compute_logits sampled on the host: the seam (final
// norm, lm_head, request packing, result unpacking, host fallback) over the real model.
TEST(CudaSamplingModel, SampleLogitsMatchesComputeLogitsOnTheHost) {
  SKIP_WITHOUT_GPU();
  const char* env = std::getenv("JARVIS_TEST_MODEL");
#ifdef JARVIS_SOURCE_DIR
  const std::string path = env ? env : std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
#else
  const std::string path = env ? env : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
#endif
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
  } else {
    GTEST_SKIP() << "model file " << path << " not found (set JARVIS_TEST_MODEL): skipped";
  }
  std::unique_ptr<Model> model = load_model(path);
  CudaShardOptions o;
  o.num_blocks = 4;
  o.max_step_tokens = 64;
  std::unique_ptr<ShardForward> gpu = make_cuda_shard(*model, o);
  ASSERT_TRUE(gpu->samples_on_device());
  const int vocab = gpu->config().vocab_size, hidden = gpu->config().hidden;
  const std::vector<Row> rows = mixed_rows(24, vocab, 8);
  std::vector<SampleRequest> requests;
  for (const Row& r : rows) {
    SampleRequest q;
    q.params = r.params;
    q.history = penalty_history(r.params, r.prompt, r.generated, vocab);
    q.u = r.u;
    requests.push_back(q);
  }
  // Hidden states of the scale the final norm sees; the norm makes their scale irrelevant anyway.
  const std::vector<float> h = random_logits(rows.size() * hidden, 1.0f, 12);
  std::vector<float> logits(rows.size() * vocab);
  gpu->compute_logits(h.data(), static_cast<int>(rows.size()), logits.data());
  std::vector<SampleResult> got(rows.size());
  gpu->sample_logits(h.data(), requests, got.data());
  for (size_t i = 0; i < rows.size(); ++i) {
    const SampleResult want = sample_request_on_host(requests[i], logits.data() + i * vocab, vocab);
    EXPECT_EQ(got[i].token, want.token) << "row " << i;
    expect_logprob(got[i].logprob, want.logprob, "row " + std::to_string(i));
    ASSERT_EQ(got[i].top_logprobs.size(), want.top_logprobs.size()) << "row " << i;
    for (size_t k = 0; k < want.top_logprobs.size(); ++k) {
      EXPECT_EQ(got[i].top_logprobs[k].token, want.top_logprobs[k].token) << "row " << i;
    }
  }
}

}  // namespace
}  // namespace jarvis
