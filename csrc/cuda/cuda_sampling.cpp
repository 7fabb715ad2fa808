// CudaModel::sample_logits: logits and sampling on the device (kernels/cuda/sampling.h). A block of
// its own, apart from the forward pass in cuda_model.cpp.
#include <algorithm>
#include <cstring>
#include <string>

#include "csrc/cuda/cuda_error.h"
#include "csrc/cuda/cuda_model.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"

namespace jarvis {
namespace {

cuda::SampleRowParams row_params(const SamplingParams& p, double u, int32_t history_offset, int32_t history_count) {
  p.validate();
  if (!(u >= 0.0 && u < 1.0)) throw InvalidArgument("sample request: u must be in [0, 1), got " + std::to_string(u));
  cuda::SampleRowParams r{};
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  r.n_logprobs = p.logprobs;
  r.history_offset = history_offset;
  r.history_count = history_count;
  r.u = u;
  return r;
}

}  // namespace

void CudaModel::sample_logits(const float* hidden, const std::vector<SampleRequest>& requests, SampleResult* out) {
  if (!shard_.has_head || !weights_.output_norm.get()) {
    throw InvalidArgument("sample_logits: this shard does not hold the head");
  }
  if (!weights_.head().get()) throw InvalidArgument("sample_logits: tied head but no embedding loaded");
  if (requests.empty()) return;
  const int64_t rows = static_cast<int64_t>(requests.size()), h = config_.hidden, vocab = config_.vocab_size;

  std::lock_guard<std::mutex> lock(mu_);  // serialised with the forward calls; guards the h_sample_ vectors too
  h_sample_params_.clear();
  h_sample_history_.clear();
  for (const SampleRequest& q : requests) {
    const auto offset = static_cast<int32_t>(h_sample_history_.size());
    for (const TokenHistory& t : q.history) {
      if (t.token < 0 || t.token >= vocab) {
        throw InvalidArgument("sample request: token id " + std::to_string(t.token) + " outside the vocabulary");
      }
      h_sample_history_.push_back(cuda::SamplePenaltyToken{t.token, t.generated_count, t.in_prompt ? 1 : 0});
    }
    h_sample_params_.push_back(row_params(q.params, q.u, offset, static_cast<int32_t>(q.history.size())));
  }

  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  reserve(static_cast<int>(rows));
  logits_.grow(static_cast<size_t>(rows * vocab) * sizeof(float), "logits");
  sample_params_.grow(h_sample_params_.size() * sizeof(cuda::SampleRowParams), "sampling parameters");
  sample_history_.grow(std::max<size_t>(1, h_sample_history_.size()) * sizeof(cuda::SamplePenaltyToken),
                       "sampling history");
  sample_results_.grow(static_cast<size_t>(rows) * sizeof(cuda::SampleRowResult), "sampling results");
  cudaStream_t st = stream_.get();

  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden_.get(), hidden, rows * h * sizeof(float), cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cuda::rmsnorm_f32_in(dtype_, hidden_.as<float>(), weights_.output_norm.as<float>(), norm_.get(),
                                         rows, h, config_.norm_eps, st));
  cuda::GemmParams g;
  g.dtype = dtype_;
  g.out_dtype = cuda::DType::kF32;
  g.rows = rows;
  g.in = h;
  g.out = vocab;
  g.x = norm_.get();
  g.w = weights_.head().get();
  g.y = logits_.get();
  JARVIS_CUDA_CHECK(cuda::gemm(cublas_.get(), g));

  JARVIS_CUDA_CHECK(cudaMemcpyAsync(sample_params_.get(), h_sample_params_.data(),
                                    h_sample_params_.size() * sizeof(cuda::SampleRowParams), cudaMemcpyHostToDevice,
                                    st));
  if (!h_sample_history_.empty()) {
    JARVIS_CUDA_CHECK(cudaMemcpyAsync(sample_history_.get(), h_sample_history_.data(),
                                      h_sample_history_.size() * sizeof(cuda::SamplePenaltyToken),
                                      cudaMemcpyHostToDevice, st));
  }
  JARVIS_CUDA_CHECK(cuda::sample_rows(logits_.as<float>(), static_cast<int>(rows), static_cast<int>(vocab),
                                      sample_params_.as<cuda::SampleRowParams>(),
                                      sample_history_.as<cuda::SamplePenaltyToken>(),
                                      sample_results_.as<cuda::SampleRowResult>(), st));
  h_sample_results_.resize(static_cast<size_t>(rows));
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(h_sample_results_.data(), sample_results_.get(),
                                    h_sample_results_.size() * sizeof(cuda::SampleRowResult), cudaMemcpyDeviceToHost,
                                    st));
  stream_.synchronize();

  for (int64_t i = 0; i < rows; ++i) {
    const cuda::SampleRowResult& r = h_sample_results_[static_cast<size_t>(i)];
    const SampleRequest& q = requests[static_cast<size_t>(i)];
    switch (r.status) {
      case cuda::kSampleOk: {
        SampleResult res;
        res.token = r.token;
        res.logprob = r.logprob;
        res.top_logprobs.reserve(static_cast<size_t>(r.n_top));
        for (int k = 0; k < r.n_top; ++k) res.top_logprobs.push_back(TokenLogprob{r.top_tokens[k], r.top_logprobs[k]});
        out[i] = std::move(res);
        break;
      }
      case cuda::kSampleNeedsHost:  // a wide nucleus: the kernel left the penalised row in logits_
        h_fallback_row_.resize(static_cast<size_t>(vocab));
        JARVIS_CUDA_CHECK(cudaMemcpyAsync(h_fallback_row_.data(), logits_.as<float>() + i * vocab,
                                          static_cast<size_t>(vocab) * sizeof(float), cudaMemcpyDeviceToHost, st));
        stream_.synchronize();
        out[i] = sample_penalised(q.params, h_fallback_row_.data(), static_cast<int32_t>(vocab), q.u);
        break;
      case cuda::kSampleNaN: throw Error("logits contain NaN (sampled on " + device_name_ + ")");
      case cuda::kSampleAllNegInf: throw Error("every logit is -inf: nothing can be sampled");
      default: throw InvalidArgument("sample_logits: the sampling kernel refused row " + std::to_string(i));
    }
  }
}

}  // namespace jarvis
