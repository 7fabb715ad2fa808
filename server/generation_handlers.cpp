#include "server/generation_handlers.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "server/api_error.h"
#include "server/json_body.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/stream_response.h"

namespace jarvis::server {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kPollInterval{50};  // how soon a vanished client is noticed

// The response's "created": when the request arrived, in Unix seconds (OpenAI's meaning).
int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// max_tokens: the request's, else the endpoint's default (nullopt: what the context leaves), then
// checked against the context window as OpenAI does.
int resolve_max_tokens(const ApiContext& ctx, const GenerationParams& p, int prompt_len, std::optional<int> dflt) {
  const int n_ctx = ctx.engine.context_length();
  if (prompt_len == 0) throw bad_request("the prompt is empty", "prompt");
  if (prompt_len >= n_ctx) {
    throw bad_request("This model's maximum context length is " + std::to_string(n_ctx) +
                          " tokens. However, your prompt has " + std::to_string(prompt_len) +
                          " tokens, which leaves no room for a completion.",
                      "prompt", "context_length_exceeded");
  }
  // An implicit default never asks for more than the context leaves (vLLM); an explicit one is checked.
  int max_tokens = p.max_tokens ? *p.max_tokens : dflt ? std::min(*dflt, n_ctx - prompt_len) : n_ctx - prompt_len;
  if (max_tokens == 0) max_tokens = 1;  // scoring a prompt (echo, max_tokens 0): one token, dropped
  if (prompt_len + max_tokens > n_ctx) {
    throw bad_request("This model's maximum context length is " + std::to_string(n_ctx) +
                          " tokens. However, you requested " + std::to_string(prompt_len + max_tokens) +
                          " tokens (" + std::to_string(prompt_len) + " in the prompt, " +
                          std::to_string(max_tokens) + " for the completion). Please reduce the prompt or max_tokens.",
                      "max_tokens", "context_length_exceeded");
  }
  return max_tokens;
}

RequestOptions choice_options(const GenerationParams& p, int max_tokens, int choice_in_prompt) {
  RequestOptions o = p.options;
  o.max_tokens = max_tokens;
  o.sampling.logprobs = std::max(0, p.logprobs);
  // Seeded requests give each choice its own stream of draws, reproducibly.
  if (o.sampling.seed) o.sampling.seed = *o.sampling.seed + static_cast<uint64_t>(choice_in_prompt);
  return o;
}

// Waits for every choice; gives up (the run's destructor cancels) when the client goes away.
bool wait_finished(GenerationRun& run) {
  while (!run.all_finished()) {
    run.poll(kPollInterval);
    if (!run.all_finished() && !HttpServer::client_connected()) {
      HttpServer::close_after_response();
      return false;
    }
  }
  return true;
}

void check_errors(const GenerationRun& run) {
  for (const auto& s : run.choices()) {
    if (!s.error.empty()) throw ApiError(500, "generation failed: " + s.error, "internal_error", {}, "engine_error");
  }
}

}  // namespace

void handle_completions(ApiContext& ctx, const std::string& body, httplib::Response& res) {
  const int64_t created = unix_now();
  const CompletionRequest req = parse_completion_request(parse_json_body(body));
  ctx.check_model(req.params.model);
  const GenerationParams& p = req.params;
  ctx.check_token_ids(p.options.stop_token_ids, "stop_token_ids");

  auto run = std::make_unique<GenerationRun>(ctx.engine, ctx.new_id("cmpl"));
  OutputOptions out;
  out.logprobs = p.logprobs;
  out.echo = req.echo;
  out.score_only = p.max_tokens && *p.max_tokens == 0;
  out.ignore_eos = p.options.ignore_eos;
  int group = 0;
  for (const PromptInput& prompt : req.prompts) {
    std::vector<int32_t> ids;
    std::string text;
    if (prompt.is_ids) {
      ctx.check_token_ids(prompt.ids, "prompt");
      ids = prompt.ids;
      if (req.echo) text = ctx.tok.decode(ids, /*skip_special=*/false);
    } else {
      ids = ctx.encode(prompt.text, /*add_special=*/true);
      text = prompt.text;
    }
    const int max_tokens = resolve_max_tokens(ctx, p, static_cast<int>(ids.size()), 16);  // OpenAI's default
    for (int i = 0; i < p.n; ++i) {
      RequestOptions o = choice_options(p, max_tokens, i);
      if (req.echo && p.logprobs >= 0) o.prompt_logprobs = p.logprobs;
      o.score_only = out.score_only;
      run->add_choice(ids, text, o);
      run->set_prompt_group(static_cast<int>(run->choices().size()) - 1, group);
    }
    ++group;
  }
  run->start();
  const ResponseMeta meta{run->id(), created, ctx.config.served_model_name};
  if (p.stream) {
    start_stream(res, std::move(run), meta, out, /*chat=*/false, p.include_usage, ctx.tok);
    return;
  }
  if (!wait_finished(*run)) return;  // nobody to answer
  check_errors(*run);
  res.set_content(dump_json(completion_response(meta, *run, out, ctx.tok)), "application/json");
}

void handle_chat_completions(ApiContext& ctx, const std::string& body, httplib::Response& res) {
  const int64_t created = unix_now();
  const ChatRequest req = parse_chat_request(parse_json_body(body));
  ctx.check_model(req.params.model);
  const GenerationParams& p = req.params;
  ctx.check_token_ids(p.options.stop_token_ids, "stop_token_ids");

  std::string text;
  const std::vector<int32_t> ids = ctx.encode_chat(req.messages, req.add_generation_prompt, true, &text);
  const int max_tokens = resolve_max_tokens(ctx, p, static_cast<int>(ids.size()), std::nullopt);
  auto run = std::make_unique<GenerationRun>(ctx.engine, ctx.new_id("chatcmpl"));
  for (int i = 0; i < p.n; ++i) {
    run->add_choice(ids, text, choice_options(p, max_tokens, i));
    run->set_prompt_group(i, 0);
  }
  OutputOptions out;
  out.logprobs = p.logprobs;
  out.ignore_eos = p.options.ignore_eos;
  run->start();
  const ResponseMeta meta{run->id(), created, ctx.config.served_model_name};
  if (p.stream) {
    start_stream(res, std::move(run), meta, out, /*chat=*/true, p.include_usage, ctx.tok);
    return;
  }
  if (!wait_finished(*run)) return;
  check_errors(*run);
  res.set_content(dump_json(chat_response(meta, *run, out, ctx.tok)), "application/json");
}

}  // namespace jarvis::server
