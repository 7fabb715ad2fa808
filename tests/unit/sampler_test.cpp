// Sampling: every expected value here is computed by hand or by the small, independent
// reference code in this file (plain softmax + sort), never by the sampler itself.
#include "csrc/sampling/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

const std::vector<int32_t> kNone;

std::vector<float> log_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<int32_t, double> as_map(const std::vector<Candidate>& cands) {
  std::map<int32_t, double> m;
  for (const Candidate& c : cands) m[c.token] = c.prob;
  return m;
}

TEST(Sampler, GreedyPicksArgmaxTiesToLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p);
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -5.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(logits.data(), 5, kNone, kNone).token, 1);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  std::vector<float> logits(97);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(0.37 * i * i));
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  SamplingParams p;
  p.temperature = 1.7f;
  p.top_k = 1;
  p.seed = 7;
  Sampler s(p);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(logits.data(), 97, kNone, kNone).token, argmax);
}

TEST(Sampler, TopPKeepsSmallestSetReachingP) {
  // Ids shuffled so the order of ids differs from the order of probabilities.
  const std::vector<float> logits = log_of({0.2, 0.4, 0.1, 0.3});  // ranks: id1, id3, id0, id2
  SamplingParams p;
  p.top_p = 0.65f;  // 0.4 < 0.65 <= 0.4 + 0.3
  auto m = as_map(truncated_distribution(p, logits.data(), 4));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_NEAR(m[1], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(m[3], 0.3 / 0.7, 1e-6);

  p.top_p = 0.7f;  // exactly the mass of the best two: reached, so still two
  EXPECT_EQ(truncated_distribution(p, logits.data(), 4).size(), 2u);
  p.top_p = 0.75f;
  EXPECT_EQ(as_map(truncated_distribution(p, logits.data(), 4)).count(0), 1u);
  EXPECT_EQ(truncated_distribution(p, logits.data(), 4).size(), 3u);
  p.top_p = 0.05f;  // below the best token alone: that token is kept
  auto one = truncated_distribution(p, logits.data(), 4);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].token, 1);
  EXPECT_DOUBLE_EQ(one[0].prob, 1.0);
}

TEST(Sampler, TopPRenormalisesOverTopK) {
  const std::vector<float> logits = log_of({0.4, 0.3, 0.2, 0.1});
  SamplingParams p;
  p.top_p = 0.75f;
  // Without top-k the cumulative masses are .4 .7 .9: three tokens.
  EXPECT_EQ(truncated_distribution(p, logits.data(), 4).size(), 3u);
  // Over the top 3 renormalised (.444 .333 .222) they are .444 .778: two tokens.
  p.top_k = 3;
  auto m = as_map(truncated_distribution(p, logits.data(), 4));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_NEAR(m[0], 4.0 / 7.0, 1e-6);
  EXPECT_NEAR(m[1], 3.0 / 7.0, 1e-6);
}

TEST(Sampler, TopKKeepsKBestSorted) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.0f, 1.0f};
  SamplingParams p;
  p.top_k = 3;
  auto c = truncated_distribution(p, logits.data(), 5);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].token, 1);
  EXPECT_EQ(c[1].token, 3);  // tie between ids 3 and 4: lower id first
  EXPECT_EQ(c[2].token, 4);
  const double z = std::exp(2.0) + 2 * std::exp(1.0);
  EXPECT_NEAR(c[0].prob, std::exp(2.0) / z, 1e-6);
}

TEST(Sampler, MinPKeepsTokensAboveFractionOfBest) {
  const std::vector<float> logits = log_of({0.1, 0.5, 0.15, 0.25});
  SamplingParams p;
  p.min_p = 0.25f;  // threshold 0.125: drops 0.1
  auto m = as_map(truncated_distribution(p, logits.data(), 4));
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.count(0), 0u);
  EXPECT_NEAR(m[2], 0.15 / 0.9, 1e-6);
  p.min_p = 0.19f;  // threshold 0.095: keeps all
  EXPECT_EQ(truncated_distribution(p, logits.data(), 4).size(), 4u);
  p.min_p = 0.6f;  // threshold 0.3: only the best
  EXPECT_EQ(truncated_distribution(p, logits.data(), 4).size(), 1u);
}

TEST(Sampler, TemperatureScalesLogits) {
  const std::vector<float> logits = {0.0f, static_cast<float>(std::log(2.0))};
  SamplingParams p;
  p.temperature = 0.5f;  // weights 1 and 2^2
  auto c = truncated_distribution(p, logits.data(), 2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].token, 1);
  EXPECT_NEAR(c[0].prob, 0.8, 1e-6);
  EXPECT_NEAR(c[1].prob, 0.2, 1e-6);
}

TEST(Sampler, PenaltiesOnHandComputedExample) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, 0.7f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  const std::vector<int32_t> prompt = {0, 1, 0};
  const std::vector<int32_t> generated = {3, 3, 2};
  apply_penalties(p, logits.data(), 5, prompt, generated);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                      // prompt only: 2 / 2, no additive part
  EXPECT_FLOAT_EQ(logits[1], -2.0f);                     // negative: -1 * 2
  EXPECT_FLOAT_EQ(logits[2], 0.25f - 0.25f - 0.5f);      // 0.5/2, once generated
  EXPECT_FLOAT_EQ(logits[3], 1.5f - 2 * 0.25f - 0.5f);   // 3/2, twice generated
  EXPECT_FLOAT_EQ(logits[4], 0.7f);                      // never seen
}

TEST(Sampler, NegativePenaltiesEncourage) {
  std::vector<float> logits = {1.0f, 1.0f};
  SamplingParams p;
  p.presence_penalty = -1.0f;
  apply_penalties(p, logits.data(), 2, {0}, {1});
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], 2.0f);
}

TEST(Sampler, PenaltyChangesGreedyChoice) {
  const std::vector<float> logits = {2.0f, 1.5f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.5f;  // 2 / 1.5 = 1.33 < 1.5
  Sampler s(p);
  EXPECT_EQ(s.sample(logits.data(), 2, {0}, kNone).token, 1);
}

TEST(Sampler, LogprobsAreLogSoftmaxAfterTemperature) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.logprobs = 2;
  Sampler greedy(p);
  SampleResult r = greedy.sample(logits.data(), 3, kNone, kNone);
  const double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0));
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, 3.0 - lse, 1e-6);
  ASSERT_EQ(r.top_logprobs.size(), 2u);
  EXPECT_EQ(r.top_logprobs[0].token, 1);
  EXPECT_EQ(r.top_logprobs[1].token, 2);
  EXPECT_NEAR(r.top_logprobs[1].logprob, 2.0 - lse, 1e-6);

  p.temperature = 2.0f;
  p.top_k = 1;  // truncation does not change the reported logprobs
  p.seed = 1;
  Sampler hot(p);
  r = hot.sample(logits.data(), 3, kNone, kNone);
  const double lse2 = std::log(std::exp(0.5) + std::exp(1.5) + std::exp(1.0));
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, 1.5 - lse2, 1e-6);
}

TEST(Sampler, SameSeedSameTokens) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::cos(1.3 * i));
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.95f;
  p.seed = 1234;
  auto draw = [&](SamplingParams params) {
    Sampler s(params);
    std::vector<int32_t> out;
    for (int i = 0; i < 100; ++i) out.push_back(s.sample(logits.data(), 50, kNone, kNone).token);
    return out;
  };
  const auto a = draw(p);
  EXPECT_EQ(a, draw(p));
  p.seed = 1235;
  EXPECT_NE(a, draw(p));  // equal by chance with probability far below 1e-20
  p.seed.reset();
  EXPECT_NE(draw(p), draw(p));
}

TEST(Sampler, ValidationNamesTheParameter) {
  auto expect_bad = [](void (*set)(SamplingParams&), const std::string& name) {
    SamplingParams p;
    set(p);
    try {
      Sampler s(p);
      ADD_FAILURE() << name << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  expect_bad([](SamplingParams& p) { p.temperature = -0.1f; }, "temperature");
  expect_bad([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  expect_bad([](SamplingParams& p) { p.top_k = -2; }, "top_k");
  expect_bad([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
  expect_bad([](SamplingParams& p) { p.top_p = 1.01f; }, "top_p");
  expect_bad([](SamplingParams& p) { p.min_p = -0.5f; }, "min_p");
  expect_bad([](SamplingParams& p) { p.min_p = 1.5f; }, "min_p");
  expect_bad([](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty");
  expect_bad([](SamplingParams& p) { p.presence_penalty = 2.5f; }, "presence_penalty");
  expect_bad([](SamplingParams& p) { p.frequency_penalty = -3.0f; }, "frequency_penalty");
  expect_bad([](SamplingParams& p) { p.logprobs = 21; }, "logprobs");
  SamplingParams ok;
  ok.top_k = -1;  // vLLM's "no limit"
  EXPECT_NO_THROW(Sampler{ok});
}

TEST(Sampler, BadInputsThrow) {
  SamplingParams p;
  p.repetition_penalty = 1.1f;
  Sampler s(p);
  const std::vector<float> logits = {0.0f, 1.0f};
  EXPECT_THROW(s.sample(logits.data(), 2, {5}, kNone), InvalidArgument);
  const std::vector<float> nan = {0.0f, NAN};
  EXPECT_THROW(s.sample(nan.data(), 2, kNone, kNone), Error);
  const std::vector<float> dead = {-INFINITY, -INFINITY};
  EXPECT_THROW(s.sample(dead.data(), 2, kNone, kNone), Error);
}

// --- statistical checks ---------------------------------------------------------------------

// Independent reference: softmax(l / T), keep the top k, renormalise, keep the smallest prefix
// with mass >= top_p, drop p < min_p * p_max, renormalise. Written with no shared code.
std::vector<double> reference_distribution(const std::vector<float>& l, double t, int k, double top_p,
                                           double min_p) {
  const size_t n = l.size();
  std::vector<double> p(n);
  double z = 0;
  for (size_t i = 0; i < n; ++i) z += (p[i] = std::exp(l[i] / t));
  for (double& x : p) x /= z;
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  std::vector<double> q(n, 0.0);
  size_t keep = k > 0 ? std::min<size_t>(k, n) : n;
  double mass = 0;
  for (size_t j = 0; j < keep; ++j) mass += p[idx[j]];
  double cum = 0;
  size_t nucleus = 0;
  while (nucleus < keep && cum < top_p) cum += p[idx[nucleus++]] / mass;
  double total = 0;
  for (size_t j = 0; j < nucleus; ++j) {
    if (p[idx[j]] >= min_p * p[idx[0]]) total += (q[idx[j]] = p[idx[j]]);
  }
  for (double& x : q) x /= total;
  return q;
}

// Pearson's chi-square against the expected distribution over its support; a token outside the
// support fails outright. The bound is the 1e-4 upper quantile of chi-square with df = support-1
// (table checked against the closed-form survival function), so a correct sampler passes for all
// but 1 in 10^4 seeds, and the seed is fixed. A distribution off by even 2 points of probability on
// one token moves the statistic by ~20000 * 0.02^2 / p, i.e. > 30 for p <= 0.25: caught.
void expect_matches(const SamplingParams& params, const std::vector<float>& logits,
                    const std::vector<double>& expected) {
  constexpr int kDraws = 20000;
  static const double kChi2Quantile[] = {0, 15.14, 18.42, 21.11, 23.51, 25.74, 27.86, 29.88, 31.83};
  Sampler s(params);
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < kDraws; ++i) {
    ++counts[s.sample(logits.data(), static_cast<int32_t>(logits.size()), kNone, kNone).token];
  }
  double chi2 = 0;
  int support = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (expected[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the truncated support";
      continue;
    }
    ++support;
    const double e = kDraws * expected[i];
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  ASSERT_GE(support, 2);
  ASSERT_LE(support, 9);
  EXPECT_LT(chi2, kChi2Quantile[support - 1]) << "support " << support;
}

const std::vector<float> kStatLogits = {2.0f, 1.2f, 0.3f, 1.9f, -0.5f, 0.8f, -2.0f, 1.0f};

TEST(SamplerStatistics, TemperatureTopKTopP) {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 6;      // drops ids 4 and 6
  p.top_p = 0.93f;  // renormalised cumulative masses .371 .693 .811 .900 .967: five tokens
  p.min_p = 0.1f;   // not binding here (the fifth token has 0.18 of the best)
  p.seed = 20260101;
  const auto expected = reference_distribution(kStatLogits, 0.7, 6, 0.93, 0.1);
  ASSERT_EQ(std::count_if(expected.begin(), expected.end(), [](double x) { return x > 0; }), 5);
  expect_matches(p, kStatLogits, expected);
}

TEST(SamplerStatistics, MinP) {
  SamplingParams p;
  p.temperature = 1.3f;
  p.min_p = 0.3f;
  p.seed = 99;
  const auto expected = reference_distribution(kStatLogits, 1.3, 0, 1.0, 0.3);
  expect_matches(p, kStatLogits, expected);
}

TEST(SamplerStatistics, PlainTemperature) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.seed = 5;
  const auto expected = reference_distribution(kStatLogits, 1.5, 0, 1.0, 0.0);
  expect_matches(p, kStatLogits, expected);
}

}  // namespace
}  // namespace jarvis
