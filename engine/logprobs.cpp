#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "csrc/util/error.h"

namespace jarvis {

RawLogprobs raw_logprobs(const float* logits, int32_t vocab, int32_t token, int top_n) {
  if (token < 0 || token >= vocab) throw InvalidArgument("logprobs: token outside the vocabulary");
  const float max = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int32_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  const double log_norm = max + std::log(sum);
  RawLogprobs out;
  out.logprob = static_cast<float>(logits[token] - log_norm);
  const int k = std::clamp(top_n, 0, static_cast<int>(vocab));
  if (k > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [logits](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i) out.top.push_back({ids[i], static_cast<float>(logits[ids[i]] - log_norm)});
  }
  return out;
}

}  // namespace jarvis
