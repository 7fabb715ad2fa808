#include "engine/token_stream.h"

#include <algorithm>

namespace jarvis {

const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEndOfGeneration:
    case FinishReason::kStopString: return "stop";
    case FinishReason::kMaxTokens:
    case FinishReason::kContextFull: return "length";
    case FinishReason::kCancelled: return "abort";
  }
  return "stop";
}

TokenStream::TokenStream(const Tokenizer& tokenizer, const StopConditions& conditions)
    : tokenizer_(tokenizer), cond_(conditions), stops_(conditions.stop), decoder_(tokenizer) {}

StreamEvent TokenStream::push(SampleResult s) {
  StreamEvent event;
  if (finished_) return event;
  event.token = s.token;
  event.index = generated_++;
  event.logprob = s.logprob;
  event.top_logprobs = std::move(s.top_logprobs);
  finished_ = true;
  const bool stop_token =
      std::find(cond_.stop_token_ids.begin(), cond_.stop_token_ids.end(), s.token) != cond_.stop_token_ids.end();
  if (stop_token || (!cond_.ignore_eos && tokenizer_.is_end_of_generation(s.token))) {
    finish_ = FinishReason::kEndOfGeneration;  // its text (e.g. "<|im_end|>") is not content
  } else {
    // Models pad their vocabulary past the tokenizer's (Qwen2: 151936 vs 151665); such an id
    // has no text.
    if (s.token >= 0 && s.token < tokenizer_.vocab_size()) event.text = stops_.push(decoder_.push(s.token));
    if (stops_.stopped()) {
      finish_ = FinishReason::kStopString;
    } else if (generated_ >= cond_.max_tokens) {
      finish_ = FinishReason::kMaxTokens;
    } else if (cond_.prompt_tokens + generated_ >= cond_.context_length) {
      finish_ = FinishReason::kContextFull;  // no position left to feed this token at
    } else {
      finished_ = false;
    }
  }
  if (finished_ && !stops_.stopped()) {
    event.text += stops_.push(decoder_.flush());
    if (!stops_.stopped()) event.text += stops_.flush();
    else finish_ = FinishReason::kStopString;
  }
  if (finished_ && stops_.stopped() && cond_.include_stop_str) event.text += stops_.matched();
  return event;
}

}  // namespace jarvis
