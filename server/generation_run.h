// One HTTP generation request as the engine sees it: one engine request per choice (n, and one
// per prompt for batched completions), their updates gathered for the HTTP thread that serves
// the response. Dropping the run cancels whatever has not finished, so a client that goes away
// (or any error on the HTTP side) frees its sequences' KV blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace jarvis::server {

// What one choice has produced so far, as the response needs it.
struct ChoiceState {
  std::vector<int32_t> prompt;
  std::string prompt_text;                      // for echo
  std::string text;                             // generated text so far
  std::vector<StreamEvent> tokens;              // generated tokens (for logprobs)
  std::vector<PromptTokenLogprob> prompt_logprobs;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  bool finished = false;
  FinishReason finish = FinishReason::kMaxTokens;
  std::string error;
};

class GenerationRun {
 public:
  GenerationRun(Engine& engine, std::string id);
  ~GenerationRun();  // cancels unfinished choices
  GenerationRun(const GenerationRun&) = delete;
  GenerationRun& operator=(const GenerationRun&) = delete;

  const std::string& id() const { return id_; }
  // Choices are added before start(); their index is the order of adding.
  void add_choice(std::vector<int32_t> prompt, std::string prompt_text, const RequestOptions& options);
  // Submits every choice. On a refusal (InvalidArgument, QueueFull, EngineStopped) the ones
  // already submitted are cancelled and the exception is rethrown.
  void start();

  // Waits up to `timeout` for updates and applies them to the choice states. Returns the
  // (choice, update) pairs that arrived, in order; empty on timeout.
  std::vector<std::pair<int, RequestUpdate>> poll(std::chrono::milliseconds timeout);

  bool all_finished() const;
  const std::vector<ChoiceState>& choices() const { return states_; }
  int prompt_tokens() const;      // over all prompts (each counted once per prompt, not per n)
  int completion_tokens() const;  // over all choices

  // For usage: choices that share one prompt (n > 1) count it once, as OpenAI does.
  void set_prompt_group(int choice, int group) { groups_.at(choice) = group; }

 private:
  struct Channel;
  Engine& engine_;
  std::string id_;
  std::vector<Request> requests_;
  std::vector<ChoiceState> states_;
  std::vector<int> groups_;
  std::shared_ptr<Channel> channel_;
  size_t submitted_ = 0;
};

}  // namespace jarvis::server
