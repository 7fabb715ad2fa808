// OpenAI request bodies (completions, chat completions) and vLLM's tokenize/detokenize bodies,
// parsed and checked into plain structs. Values are checked here (types, ranges, unsupported
// features); what needs the model (tokenizing, context length, vocabulary) is checked by the
// handlers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "csrc/tokenizer/chat_template.h"
#include "engine/engine.h"

namespace jarvis::server {

// Caps that keep one request's fan-out bounded (each choice is one engine request).
constexpr int kMaxChoices = 128;  // n, and prompts x n for completions (OpenAI's n limit)
constexpr int kMaxStops = 16;
constexpr int kMaxStopTokenIds = 64;
constexpr int kMaxTokensLimit = 1 << 20;

struct PromptInput {
  bool is_ids = false;
  std::string text;            // when !is_ids
  std::vector<int32_t> ids;    // when is_ids
};

// Parameters both generation endpoints share.
struct GenerationParams {
  std::optional<std::string> model;
  std::optional<int> max_tokens;  // nullopt: the endpoint's default
  RequestOptions options;         // sampling, stop, ignore_eos; max_tokens is set by the handler
  int n = 1;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  int logprobs = -1;              // alternatives per token to report; -1: no logprobs at all
};

struct CompletionRequest {
  GenerationParams params;
  std::vector<PromptInput> prompts;  // one or more; choices are prompt-major
  bool echo = false;
};

struct ChatRequest {
  GenerationParams params;
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;
};

struct TokenizeRequest {
  std::optional<std::string> model;
  bool is_chat = false;
  std::string prompt;                 // !is_chat
  std::vector<ChatMessage> messages;  // is_chat
  bool add_special_tokens = true;     // vLLM's default: true for prompts, false for messages
  bool add_generation_prompt = true;
  bool return_token_strs = false;
};

struct DetokenizeRequest {
  std::optional<std::string> model;
  std::vector<int32_t> tokens;
};

CompletionRequest parse_completion_request(const nlohmann::json& body);
ChatRequest parse_chat_request(const nlohmann::json& body);
TokenizeRequest parse_tokenize_request(const nlohmann::json& body);
DetokenizeRequest parse_detokenize_request(const nlohmann::json& body);

}  // namespace jarvis::server
