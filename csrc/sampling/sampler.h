// Token sampling from one sequence's logits: penalties, temperature, top-k, top-p, min-p, then a
// seeded draw. Semantics follow the OpenAI API as vLLM implements it:
//   - repetition_penalty (vLLM / llama.cpp "repeat penalty"): for every token seen in the prompt or
//     the generated text, a positive logit is divided by it, a negative one multiplied;
//   - presence_penalty / frequency_penalty (OpenAI): over generated tokens only, subtract
//     presence once per distinct token and frequency times its count;
//   - temperature 0 is greedy (argmax, ties to the lowest id);
//   - then top-k, top-p (nucleus over the top-k renormalised), min-p, in that order.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace jarvis {

struct SamplingParams {
  float temperature = 1.0f;         // >= 0; 0 = greedy
  int top_k = 0;                    // <= 0: off (vLLM's -1 accepted as well)
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]; 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off
  float presence_penalty = 0.0f;    // [-2, 2]
  float frequency_penalty = 0.0f;   // [-2, 2]
  std::optional<uint64_t> seed;     // absent: seeded from std::random_device
  int logprobs = 0;                 // how many top alternatives to report per token, [0, kMaxLogprobs]

  static constexpr int kMaxLogprobs = 20;  // OpenAI's limit for top_logprobs

  // Throws InvalidArgument naming the first bad parameter and its value.
  void validate() const;
  bool greedy() const { return temperature == 0.0f; }
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  // Log-probability of `token` under the model after penalties and temperature (temperature 0
  // counts as 1), before top-k/top-p/min-p truncation: truncation would make a greedy pick
  // always 0, which says nothing; this is what OpenAI clients expect from `logprobs`.
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;  // params.logprobs best, highest first, ties to lowest id
};

// One candidate of the truncated distribution.
struct Candidate {
  int32_t token = 0;
  double prob = 0.0;
};

// Applies the three penalties to logits[vocab] in place. `prompt` and `generated` are the
// sequence's token ids so far; ids outside [0, vocab) are an InvalidArgument.
void apply_penalties(const SamplingParams& params, float* logits, int32_t vocab,
                     const std::vector<int32_t>& prompt, const std::vector<int32_t>& generated);

// The distribution a token is drawn from, given penalised logits and a temperature > 0: softmax of
// logits / temperature cut by top-k, top-p and min-p, renormalised. Sorted by probability
// descending, ties to the lowest id; never empty.
std::vector<Candidate> truncated_distribution(const SamplingParams& params, const float* logits,
                                              int32_t vocab);

// Everything Sampler::sample does after the penalties: the token drawn with uniform u in [0, 1)
// (ignored when greedy) from already-penalised logits[vocab], its logprob and the top logprobs.
// Also the host fallback of device sampling (csrc/sampling/sample_request.h).
SampleResult sample_penalised(const SamplingParams& params, const float* logits, int32_t vocab, double u);

// Draws tokens for one sequence. Holds the sequence's random generator, so one Sampler per
// sequence: the same seed and logits give the same tokens whatever else runs.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // validates params

  const SamplingParams& params() const { return params_; }

  // logits[vocab] of the next position; prompt/generated as for apply_penalties.
  SampleResult sample(const float* logits, int32_t vocab, const std::vector<int32_t>& prompt,
                      const std::vector<int32_t>& generated);

  // The uniform sample() draws for this sequence's next token: the same stream of draws, so a
  // seeded sequence sampled elsewhere (on a GPU, with this u) makes the same choices. Greedy
  // draws nothing and returns 0.
  double draw_uniform();

 private:
  double next_uniform();  // [0, 1), 53 random bits: portable across standard libraries

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
};

}  // namespace jarvis
