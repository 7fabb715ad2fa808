// OpenAI response bodies and SSE chunks for completions and chat completions, built from the
// choices' states (server/generation_run.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "csrc/tokenizer/tokenizer.h"
#include "server/generation_run.h"

namespace jarvis::server {

struct ResponseMeta {
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;    // the served model name
};

// What the client asked to see besides the text.
struct OutputOptions {
  int logprobs = -1;        // -1: none; else top-N alternatives per token
  bool echo = false;        // completions: the prompt text (and its logprobs) first
  bool score_only = false;  // completions with max_tokens 0: the generated token is dropped
  bool ignore_eos = false;
};

nlohmann::json usage_json(int prompt_tokens, int completion_tokens);

// Text of one token as clients see it in logprobs (may be part of a UTF-8 character).
std::string token_piece(const Tokenizer& tok, int32_t id);
// Tokens that count as output: an end-of-generation token is not content (unless ignore_eos).
bool is_content_token(const Tokenizer& tok, int32_t id, bool ignore_eos);

// The completions API's logprobs object ({tokens, token_logprobs, top_logprobs, text_offset}),
// appended to token by token; text offsets count characters of the choice's text.
class CompletionLogprobs {
 public:
  CompletionLogprobs(const Tokenizer& tok, int top_n) : tok_(tok), top_n_(top_n) {}
  void add_prompt(const std::vector<PromptTokenLogprob>& prompt);
  void add_generated(const StreamEvent& event);
  void skip_text(const std::string& text);  // text before the next token (an echoed prompt)
  bool empty() const { return tokens_.empty(); }
  nlohmann::json take();  // the object so far; starts a new one (for the next SSE chunk)

 private:
  void add(int32_t token, const nlohmann::json& logprob, const nlohmann::json& top);
  const Tokenizer& tok_;
  int top_n_;
  int64_t offset_ = 0;
  nlohmann::json tokens_ = nlohmann::json::array(), logprobs_ = nlohmann::json::array(),
                 top_ = nlohmann::json::array(), offsets_ = nlohmann::json::array();
};

// The chat API's logprobs entry of one token: {token, logprob, bytes, top_logprobs}.
nlohmann::json chat_logprob_entry(const Tokenizer& tok, const StreamEvent& event, int top_n);

nlohmann::json completion_response(const ResponseMeta& meta, const GenerationRun& run, const OutputOptions& out,
                                   const Tokenizer& tok);
nlohmann::json chat_response(const ResponseMeta& meta, const GenerationRun& run, const OutputOptions& out,
                             const Tokenizer& tok);

// One SSE chunk of a stream (usage: null unless `usage` is an object, for include_usage).
nlohmann::json completion_chunk(const ResponseMeta& meta, int index, const std::string& text,
                                nlohmann::json logprobs, const char* finish_reason, bool with_usage);
nlohmann::json chat_chunk(const ResponseMeta& meta, int index, nlohmann::json delta, nlohmann::json logprobs,
                          const char* finish_reason, bool with_usage);
nlohmann::json usage_chunk(const ResponseMeta& meta, const char* object, int prompt_tokens, int completion_tokens);

// "data: <json>\n\n"
std::string sse_event(const nlohmann::json& value);

}  // namespace jarvis::server
