// What sampling a row where its logits are (a GPU) needs from the host: the sequence's parameters,
// its history compacted to one entry per distinct token (so penalties need nothing
// vocabulary-sized on the device), and the uniform the sequence's Sampler drew for this token.
// Its meaning is the CPU's: sample_request_on_host() is the reference any device must match.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/sampling/sampler.h"

namespace jarvis {

// One distinct token of a sequence's history.
struct TokenHistory {
  int32_t token = 0;
  int32_t generated_count = 0;  // occurrences in the generated text
  bool in_prompt = false;
};

// The distinct tokens of prompt + generated, ascending by id; empty when `params` has no penalty
// (nothing to apply). Ids outside [0, vocab) are an InvalidArgument, as in apply_penalties.
std::vector<TokenHistory> penalty_history(const SamplingParams& params, const std::vector<int32_t>& prompt,
                                          const std::vector<int32_t>& generated, int32_t vocab);

// apply_penalties over a compact history: the same float operations, so the same logits.
void apply_penalties(const SamplingParams& params, float* logits, int32_t vocab,
                     const std::vector<TokenHistory>& history);

struct SampleRequest {
  int row = 0;  // for an executor: which of the step's logits rows (an index into its `rows`)
  SamplingParams params;
  std::vector<TokenHistory> history;  // penalty_history(...)
  double u = 0.0;                     // Sampler::draw_uniform() for this token
};

// Builds the request for a sequence's next token, drawing its uniform from `sampler`: the draw
// Sampler::sample would make, so the host and device paths walk the same random stream.
SampleRequest make_sample_request(Sampler& sampler, const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& generated, int32_t vocab);

// The reference: what sampling logits[vocab] (raw, not penalised) under `request` gives.
SampleResult sample_request_on_host(const SampleRequest& request, const float* logits, int32_t vocab);

}  // namespace jarvis
