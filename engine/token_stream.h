// One sequence's sampled tokens turned into streamed text, and the decision when it ends:
// end-of-generation tokens, stop strings, max_tokens, the context window. Shared by the
// single-sequence Generator and the serving Engine so both stop and stream the same way.
#pragma once

#include <string>
#include <vector>

#include "csrc/sampling/sampler.h"
#include "csrc/tokenizer/tokenizer.h"
#include "engine/stop_matcher.h"

namespace jarvis {

enum class FinishReason {
  kEndOfGeneration,  // the model emitted EOS or an end-of-turn token
  kStopString,       // a stop string appeared in the text
  kMaxTokens,        // max_tokens generated
  kContextFull,      // no position left in the context window / KV cache
  kCancelled,        // the caller asked to stop
};
// The OpenAI `finish_reason`: "stop", "length" or "abort" (vLLM's word for a cancelled request).
const char* openai_finish_reason(FinishReason reason);

// One generated token as it is produced.
struct StreamEvent {
  int32_t token = 0;
  int index = 0;     // 0 for the first generated token
  std::string text;  // text this token releases (may be empty: held-back UTF-8 or stop-string prefix)
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;
};

struct StopConditions {
  int max_tokens = 256;           // >= 1
  std::vector<std::string> stop;  // the text returned ends before the first one
  bool ignore_eos = false;        // keep going past end-of-generation tokens (benchmarks)
  std::vector<int32_t> stop_token_ids;  // also end the sequence (even with ignore_eos), text not output
  bool include_stop_str = false;        // the text ends with the stop string found, not before it
  int prompt_tokens = 0;
  int context_length = 0;         // positions the sequence may use
};

class TokenStream {
 public:
  // Throws InvalidArgument for an empty stop string.
  TokenStream(const Tokenizer& tokenizer, const StopConditions& conditions);

  // Adds a sampled token. Returns its event (text released by it, and on the last token whatever
  // was held back); finished() tells whether the sequence ends with it.
  StreamEvent push(SampleResult sampled);

  bool finished() const { return finished_; }
  FinishReason finish() const { return finish_; }
  int generated() const { return generated_; }

 private:
  const Tokenizer& tokenizer_;
  StopConditions cond_;
  StopMatcher stops_;
  StreamDecoder decoder_;
  int generated_ = 0;
  bool finished_ = false;
  FinishReason finish_ = FinishReason::kMaxTokens;
};

}  // namespace jarvis
