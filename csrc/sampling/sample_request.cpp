#include "csrc/sampling/sample_request.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

bool has_penalty(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

}  // namespace

std::vector<TokenHistory> penalty_history(const SamplingParams& params, const std::vector<int32_t>& prompt,
                                          const std::vector<int32_t>& generated, int32_t vocab) {
  std::vector<TokenHistory> out;
  if (!has_penalty(params)) return out;
  // Tagged ids: 2 * id + 1 for a generated occurrence, 2 * id for a prompt one; sorting groups
  // each id's occurrences.
  std::vector<int64_t> tagged;
  tagged.reserve(prompt.size() + generated.size());
  auto add = [&](const std::vector<int32_t>& ids, int tag) {
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab) {
        throw InvalidArgument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                              std::to_string(vocab) + ")");
      }
      tagged.push_back(2 * static_cast<int64_t>(id) + tag);
    }
  };
  add(prompt, 0);
  add(generated, 1);
  std::sort(tagged.begin(), tagged.end());
  for (int64_t t : tagged) {
    const auto id = static_cast<int32_t>(t / 2);
    if (out.empty() || out.back().token != id) out.push_back(TokenHistory{id, 0, false});
    if (t % 2) {
      ++out.back().generated_count;
    } else {
      out.back().in_prompt = true;
    }
  }
  return out;
}

void apply_penalties(const SamplingParams& params, float* logits, int32_t vocab,
                     const std::vector<TokenHistory>& history) {
  const bool repetition = params.repetition_penalty != 1.0f;
  const bool additive = params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f;
  for (const TokenHistory& h : history) {
    if (h.token < 0 || h.token >= vocab) {
      throw InvalidArgument("token id " + std::to_string(h.token) + " outside the vocabulary");
    }
    float& l = logits[h.token];
    if (repetition && (h.in_prompt || h.generated_count > 0)) {
      l = l > 0.0f ? l / params.repetition_penalty : l * params.repetition_penalty;
    }
    if (additive && h.generated_count > 0) {
      l -= std::fma(params.frequency_penalty, static_cast<float>(h.generated_count), params.presence_penalty);
    }
  }
}

SampleRequest make_sample_request(Sampler& sampler, const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& generated, int32_t vocab) {
  SampleRequest r;
  r.params = sampler.params();
  r.history = penalty_history(r.params, prompt, generated, vocab);
  r.u = sampler.draw_uniform();
  return r;
}

SampleResult sample_request_on_host(const SampleRequest& request, const float* logits, int32_t vocab) {
  if (vocab <= 0) throw InvalidArgument("sampling needs a vocabulary of at least one token");
  std::vector<float> work(logits, logits + vocab);
  apply_penalties(request.params, work.data(), vocab, request.history);
  return sample_penalised(request.params, work.data(), vocab, request.u);
}

}  // namespace jarvis
