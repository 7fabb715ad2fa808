#include "csrc/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <string>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

[[noreturn]] void bad_param(const char* name, const std::string& rule, double value) {
  std::ostringstream msg;
  msg << name << " must be " << rule << ", got " << value;
  throw InvalidArgument(msg.str());
}

// Largest logit; NaN or nothing finite means the model produced garbage, which no sampling
// choice can repair.
float checked_max(const float* logits, int32_t vocab) {
  if (vocab <= 0) throw InvalidArgument("sampling needs a vocabulary of at least one token");
  float m = -INFINITY;
  for (int32_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i])) throw Error("logits contain NaN (token " + std::to_string(i) + ")");
    m = std::max(m, logits[i]);
  }
  if (!(m > -INFINITY)) throw Error("every logit is -inf: nothing can be sampled");
  return m;
}

// Strict order "more likely first, then lower id": deterministic whatever the sort algorithm.
struct ByLogitDesc {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

// Logits are float: probabilities derived from them carry ~1e-7 relative error, so a nucleus
// whose mass is exactly p on paper must count as reaching p.
constexpr double kTopPSlack = 1e-6;

bool truncates(const SamplingParams& p, int32_t vocab) {
  return (p.top_k > 0 && p.top_k < vocab) || p.top_p < 1.0f || p.min_p > 0.0f;
}

}  // namespace

void SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) bad_param("temperature", ">= 0", temperature);
  if (top_k < -1) bad_param("top_k", ">= 1, or 0 / -1 for no limit", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) bad_param("top_p", "in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad_param("min_p", "in [0, 1]", min_p);
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0f) {
    bad_param("repetition_penalty", "> 0", repetition_penalty);
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    bad_param("presence_penalty", "in [-2, 2]", presence_penalty);
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    bad_param("frequency_penalty", "in [-2, 2]", frequency_penalty);
  }
  if (logprobs < 0 || logprobs > kMaxLogprobs) {
    bad_param("logprobs", "in [0, " + std::to_string(kMaxLogprobs) + "]", logprobs);
  }
}

void apply_penalties(const SamplingParams& params, float* logits, int32_t vocab,
                     const std::vector<int32_t>& prompt, const std::vector<int32_t>& generated) {
  const bool repetition = params.repetition_penalty != 1.0f;
  const bool additive = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  if (!repetition && !additive) return;

  auto check = [vocab](const std::vector<int32_t>& ids) {
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab) {
        throw InvalidArgument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                              std::to_string(vocab) + ")");
      }
    }
  };
  check(prompt);
  check(generated);

  // vLLM's order: the multiplicative penalty first, then the additive ones.
  if (repetition) {
    std::vector<int32_t> seen(prompt);
    seen.insert(seen.end(), generated.begin(), generated.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t id : seen) {
      float& l = logits[id];
      l = l > 0.0f ? l / params.repetition_penalty : l * params.repetition_penalty;
    }
  }
  if (additive) {
    std::vector<int32_t> gen(generated);
    std::sort(gen.begin(), gen.end());
    for (size_t i = 0; i < gen.size();) {
      size_t j = i;
      while (j < gen.size() && gen[j] == gen[i]) ++j;
      // Fused (one rounding), written out: compilers contract it where the CPU has FMA and not
      // elsewhere, and the GPU sampler (kernels/cuda/sampling.cu) must get the same bits.
      logits[gen[i]] -= std::fma(params.frequency_penalty, static_cast<float>(j - i), params.presence_penalty);
      i = j;
    }
  }
}

std::vector<Candidate> truncated_distribution(const SamplingParams& params, const float* logits,
                                              int32_t vocab) {
  if (!(params.temperature > 0.0f)) {
    throw InvalidArgument("truncated_distribution needs temperature > 0 (0 is greedy)");
  }
  const float max_logit = checked_max(logits, vocab);
  const double inv_t = 1.0 / params.temperature;
  // Unnormalised probabilities relative to the best token (whose weight is exactly 1).
  std::vector<double> w(static_cast<size_t>(vocab));
  for (int32_t i = 0; i < vocab; ++i) w[i] = std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);

  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  const ByLogitDesc cmp{logits};

  // Top-k: the k best, in any order for now. `mass` is what top-p renormalises over.
  size_t n = order.size();
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) {
    n = static_cast<size_t>(params.top_k);
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(), cmp);
  }
  double mass = 0.0;
  for (size_t i = 0; i < n; ++i) mass += w[order[i]];

  // Min-p keeps p_i >= min_p * p_max, i.e. w_i >= min_p; renormalising after top-k or top-p
  // scales every probability and the maximum alike, so it can be applied to the raw weights.
  // All three filters keep a prefix of the sorted order, so cutting early is exact.
  if (params.min_p > 0.0f) {
    auto end = std::partition(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n),
                              [&](int32_t id) { return w[id] >= params.min_p; });
    n = static_cast<size_t>(end - order.begin());
  }

  if (params.top_p < 1.0f) {
    // Sort only as far as the nucleus reaches: a few hundred tokens for real models, so grow a
    // sorted prefix instead of sorting the whole vocabulary.
    const double target = params.top_p * mass * (1.0 - kTopPSlack);
    size_t sorted = std::min<size_t>(n, 256);
    for (;;) {
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(sorted),
                        order.begin() + static_cast<std::ptrdiff_t>(n), cmp);
      double cum = 0.0;
      size_t cut = 0;
      for (size_t i = 0; i < sorted; ++i) {
        cum += w[order[i]];
        if (cum >= target) {
          cut = i + 1;
          break;
        }
      }
      if (cut > 0) {
        n = cut;
        break;
      }
      if (sorted == n) break;  // min-p already cut below the nucleus: keep all that is left
      sorted = std::min(n, sorted * 4);
    }
  } else {
    std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), cmp);
  }
  n = std::max<size_t>(n, 1);  // the best token always survives (its weight is 1 >= min_p)

  std::vector<Candidate> out(n);
  double kept = 0.0;
  for (size_t i = 0; i < n; ++i) kept += w[order[i]];
  for (size_t i = 0; i < n; ++i) out[i] = Candidate{order[i], w[order[i]] / kept};
  return out;
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  params_.validate();
  if (params_.seed) {
    rng_.seed(*params_.seed);
  } else {
    std::random_device rd;
    rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  }
}

double Sampler::next_uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

double Sampler::draw_uniform() { return params_.greedy() ? 0.0 : next_uniform(); }

SampleResult Sampler::sample(const float* logits, int32_t vocab, const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& generated) {
  if (vocab <= 0) throw InvalidArgument("sampling needs a vocabulary of at least one token");
  work_.assign(logits, logits + vocab);
  apply_penalties(params_, work_.data(), vocab, prompt, generated);
  return sample_penalised(params_, work_.data(), vocab, draw_uniform());
}

SampleResult sample_penalised(const SamplingParams& params, const float* logits, int32_t vocab, double u) {
  const float max_logit = checked_max(logits, vocab);
  const double inv_t = params.greedy() ? 1.0 : 1.0 / params.temperature;

  double sum = 0.0;
  for (int32_t i = 0; i < vocab; ++i) sum += std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);
  const double log_z = std::log(sum);
  auto logprob = [&](int32_t id) {
    // Fused, as the penalty above: the GPU sampler computes the same.
    return static_cast<float>(std::fma(static_cast<double>(logits[id]) - max_logit, inv_t, -log_z));
  };

  SampleResult result;
  if (params.greedy()) {
    // First maximum: ties go to the lowest id.
    result.token = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  } else if (!truncates(params, vocab)) {
    const double target = u * sum;
    double cum = 0.0;
    int32_t pick = -1;
    for (int32_t i = 0; i < vocab; ++i) {
      const double wi = std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);
      if (wi == 0.0) continue;
      cum += wi;
      pick = i;  // rounding can leave u just past the last sum: fall back to the last candidate
      if (target < cum) break;
    }
    result.token = pick;
  } else {
    const std::vector<Candidate> cands = truncated_distribution(params, logits, vocab);
    double cum = 0.0;
    result.token = cands.back().token;
    for (const Candidate& c : cands) {
      cum += c.prob;
      if (u < cum) {
        result.token = c.token;
        break;
      }
    }
  }
  result.logprob = logprob(result.token);

  if (params.logprobs > 0) {
    const size_t n = std::min<size_t>(static_cast<size_t>(params.logprobs), static_cast<size_t>(vocab));
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                      ByLogitDesc{logits});
    result.top_logprobs.reserve(n);
    for (size_t i = 0; i < n; ++i) result.top_logprobs.push_back(TokenLogprob{order[i], logprob(order[i])});
  }
  return result;
}

}  // namespace jarvis
