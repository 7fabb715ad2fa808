// Log-probabilities straight from a row of logits (no penalties, no temperature): what prompt
// logprobs report, as vLLM does.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/sampling/sampler.h"

namespace jarvis {

struct RawLogprobs {
  float logprob = 0.0f;              // of the token asked about
  std::vector<TokenLogprob> top;     // the top_n best, highest first, ties to the lowest id
};

// log_softmax(logits)[token] and the top_n best entries; the normaliser is summed in double.
RawLogprobs raw_logprobs(const float* logits, int32_t vocab, int32_t token, int top_n);

}  // namespace jarvis
