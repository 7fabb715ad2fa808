#include "server/openai_request.h"

#include <limits>

#include "server/api_error.h"
#include "server/json_fields.h"

namespace jarvis::server {
namespace {

using nlohmann::json;

// Parameters we know but do not implement: refusing them beats silently doing something else.
void refuse_unsupported(const JsonFields& f) {
  for (const char* name : {"tools", "functions"}) {
    const json* v = f.raw(name);
    if (v && !(v->is_array() && v->empty())) throw bad_request(std::string("'") + name + "' is not supported", name);
  }
  if (const json* v = f.raw("logit_bias"); v && !(v->is_object() && v->empty())) {
    throw bad_request("'logit_bias' is not supported", "logit_bias");
  }
  if (const json* v = f.raw("response_format")) {
    const bool is_text = v->is_object() && v->contains("type") && (*v)["type"] == "text";
    if (!is_text) {
      throw bad_request("'response_format' other than {\"type\": \"text\"} is not supported", "response_format");
    }
  }
  if (const json* v = f.raw("suffix"); v && !(v->is_string() && v->get_ref<const std::string&>().empty())) {
    throw bad_request("'suffix' is not supported", "suffix");
  }
}

// vLLM's extra sampling and output parameters that we do not implement. Their defaults are
// accepted (clients send them explicitly); any other value is a 400 naming the field, never a
// silent no-op that would hand back something else than what was asked for.
void refuse_unsupported_extras(const JsonFields& f, bool chat) {
  auto refuse = [](const std::string& name, const std::string& value) {
    throw bad_request("'" + name + "' " + value + " is not supported by this server", name, "unsupported_parameter");
  };
  if (auto v = f.integer("min_tokens", 0, kMaxTokensLimit); v && *v > 0) refuse("min_tokens", "above 0");
  for (const char* name : {"allowed_token_ids", "bad_words"}) {
    const json* v = f.raw(name);
    if (!v) continue;
    if (!v->is_array()) throw bad_request(std::string("'") + name + "' must be a list", name, "invalid_type");
    if (!v->empty()) refuse(name, "(a non-empty list)");
  }
  // Special (control) tokens never reach the text: that is skip_special_tokens=true, vLLM's default.
  if (!f.boolean("skip_special_tokens").value_or(true)) refuse("skip_special_tokens", "false");
  if (!f.boolean("spaces_between_special_tokens").value_or(true)) refuse("spaces_between_special_tokens", "false");
  if (chat) {
    if (f.boolean("continue_final_message").value_or(false)) refuse("continue_final_message", "true");
    if (f.boolean("echo").value_or(false)) refuse("echo", "true (for chat)");
  }
  for (const char* name : {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs",
                           "prompt_logprobs", "logits_processors"}) {
    if (f.has(name)) refuse(name, "(any value)");
  }
}

std::vector<int32_t> token_list(const json& v, const std::string& param) {
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const auto& item : v) {
    ids.push_back(static_cast<int32_t>(json_integer(item, 0, std::numeric_limits<int32_t>::max(), param)));
  }
  return ids;
}

std::vector<PromptInput> parse_prompts(const json* v) {
  if (!v) throw bad_request("'prompt' is required", "prompt", "missing_required_parameter");
  std::vector<PromptInput> prompts;
  if (v->is_string()) {
    prompts.push_back({false, v->get<std::string>(), {}});
    return prompts;
  }
  if (!v->is_array() || v->empty()) {
    throw bad_request("'prompt' must be a string, a list of strings, a list of token ids or a list of such lists",
                      "prompt", "invalid_type");
  }
  const json& first = v->front();
  if (first.is_number()) {  // one prompt of token ids
    prompts.push_back({true, {}, token_list(*v, "prompt")});
    return prompts;
  }
  if (v->size() > static_cast<size_t>(kMaxChoices)) {
    throw bad_request("at most " + std::to_string(kMaxChoices) + " prompts per request", "prompt");
  }
  for (const auto& item : *v) {
    if (item.is_string()) {
      prompts.push_back({false, item.get<std::string>(), {}});
    } else if (item.is_array() && !item.empty() && item.front().is_number()) {
      prompts.push_back({true, {}, token_list(item, "prompt")});
    } else {
      throw bad_request("'prompt' list items must all be strings or all be lists of token ids", "prompt",
                        "invalid_type");
    }
    if (prompts.back().is_ids != prompts.front().is_ids) {
      throw bad_request("'prompt' mixes strings and token lists", "prompt", "invalid_type");
    }
  }
  return prompts;
}

// OpenAI's message content: a string, or a list of {"type": "text", "text": ...} parts.
std::string message_content(const json& message, const std::string& param, bool null_ok) {
  const auto it = message.find("content");
  if (it == message.end() || it->is_null()) {
    if (null_ok) return {};
    throw bad_request("'" + param + ".content' is required", param + ".content", "missing_required_parameter");
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) {
    throw bad_request("'" + param + ".content' must be a string or a list of content parts", param + ".content",
                      "invalid_type");
  }
  std::string text;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& part = (*it)[i];
    const std::string where = param + ".content[" + std::to_string(i) + "]";
    if (!part.is_object()) throw bad_request("'" + where + "' must be an object", where, "invalid_type");
    const auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      throw bad_request("'" + where + ".type' is required", where + ".type", "missing_required_parameter");
    }
    if (*type != "text") {
      throw bad_request("content part type '" + type->get<std::string>() + "' is not supported (text only)",
                        where + ".type");
    }
    const auto t = part.find("text");
    if (t == part.end() || !t->is_string()) {
      throw bad_request("'" + where + ".text' must be a string", where + ".text", "invalid_type");
    }
    text += t->get<std::string>();  // parts are concatenated, as vLLM does for text-only models
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json* v) {
  if (!v) throw bad_request("'messages' is required", "messages", "missing_required_parameter");
  if (!v->is_array()) throw bad_request("'messages' must be a list", "messages", "invalid_type");
  if (v->empty()) throw bad_request("'messages' must not be empty", "messages");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw bad_request("'" + where + "' must be an object", where, "invalid_type");
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      throw bad_request("'" + where + ".role' must be a string", where + ".role", "invalid_type");
    }
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant") {
      throw bad_request("unsupported role '" + role->get<std::string>() +
                            "' (supported: system, developer, user, assistant)",
                        where + ".role");
    }
    messages.push_back({r, message_content(m, where, r == "assistant")});
  }
  return messages;
}

GenerationParams parse_generation_params(const JsonFields& f, bool chat) {
  GenerationParams p;
  p.model = f.string("model");
  // max_completion_tokens is the newer name; it wins when both are given.
  std::optional<int64_t> max_tokens = f.integer("max_completion_tokens", 1, kMaxTokensLimit);
  if (!max_tokens) max_tokens = f.integer("max_tokens", chat ? 1 : 0, kMaxTokensLimit);
  if (max_tokens) p.max_tokens = static_cast<int>(*max_tokens);

  SamplingParams& s = p.options.sampling;
  s.temperature = static_cast<float>(f.number("temperature", 0.0, 2.0).value_or(1.0));
  s.top_p = static_cast<float>(f.number("top_p", 0.0, 1.0).value_or(1.0));
  if (s.top_p <= 0.0f) throw bad_request("'top_p' must be in (0, 1]", "top_p");
  s.top_k = static_cast<int>(f.integer("top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0));
  s.min_p = static_cast<float>(f.number("min_p", 0.0, 1.0).value_or(0.0));
  s.presence_penalty = static_cast<float>(f.number("presence_penalty", -2.0, 2.0).value_or(0.0));
  s.frequency_penalty = static_cast<float>(f.number("frequency_penalty", -2.0, 2.0).value_or(0.0));
  s.repetition_penalty = static_cast<float>(f.number("repetition_penalty", 0.0, 1e6).value_or(1.0));
  if (s.repetition_penalty <= 0.0f) throw bad_request("'repetition_penalty' must be > 0", "repetition_penalty");
  if (auto seed = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    s.seed = static_cast<uint64_t>(*seed);
  }

  if (auto stop = f.string_or_list("stop")) {
    if (stop->size() > static_cast<size_t>(kMaxStops)) {
      throw bad_request("at most " + std::to_string(kMaxStops) + " stop sequences", "stop");
    }
    for (const auto& st : *stop) {
      if (st.empty()) throw bad_request("stop sequences must not be empty", "stop");
    }
    p.options.stop = std::move(*stop);
  }
  p.options.ignore_eos = f.boolean("ignore_eos").value_or(false);
  p.options.include_stop_str_in_output = f.boolean("include_stop_str_in_output").value_or(false);
  if (const json* ids = f.raw("stop_token_ids")) {  // vLLM's; the handler checks them against the vocabulary
    if (!ids->is_array()) {
      throw bad_request("'stop_token_ids' must be a list of token ids", "stop_token_ids", "invalid_type");
    }
    if (ids->size() > static_cast<size_t>(kMaxStopTokenIds)) {
      throw bad_request("at most " + std::to_string(kMaxStopTokenIds) + " stop_token_ids", "stop_token_ids");
    }
    p.options.stop_token_ids = token_list(*ids, "stop_token_ids");
  }

  p.n = static_cast<int>(f.integer("n", 1, kMaxChoices).value_or(1));
  if (auto best_of = f.integer("best_of", 1, kMaxChoices); best_of && *best_of != p.n) {
    throw bad_request("'best_of' other than n is not supported", "best_of");
  }
  p.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.raw("stream_options")) {
    if (!so->is_object()) throw bad_request("'stream_options' must be an object", "stream_options", "invalid_type");
    if (!p.stream) throw bad_request("'stream_options' is only allowed when 'stream' is true", "stream_options");
    p.include_usage = JsonFields(*so).boolean("include_usage").value_or(false);
  }
  f.string("user");  // accepted (type-checked) and ignored
  return p;
}

}  // namespace

CompletionRequest parse_completion_request(const json& body) {
  const JsonFields f(body);
  refuse_unsupported(f);
  refuse_unsupported_extras(f, /*chat=*/false);
  CompletionRequest r;
  r.params = parse_generation_params(f, /*chat=*/false);
  r.prompts = parse_prompts(f.raw("prompt"));
  if (r.prompts.size() * static_cast<size_t>(r.params.n) > static_cast<size_t>(kMaxChoices)) {
    throw bad_request("prompts x n must be at most " + std::to_string(kMaxChoices), "n");
  }
  r.echo = f.boolean("echo").value_or(false);
  if (auto lp = f.integer("logprobs", 0, SamplingParams::kMaxLogprobs)) r.params.logprobs = static_cast<int>(*lp);
  if (r.params.max_tokens && *r.params.max_tokens == 0 && !r.echo) {
    throw bad_request("'max_tokens' must be >= 1 (0 only with echo, to score a prompt)", "max_tokens");
  }
  return r;
}

ChatRequest parse_chat_request(const json& body) {
  const JsonFields f(body);
  refuse_unsupported(f);
  refuse_unsupported_extras(f, /*chat=*/true);
  ChatRequest r;
  r.params = parse_generation_params(f, /*chat=*/true);
  r.messages = parse_messages(f.raw("messages"));
  const bool logprobs = f.boolean("logprobs").value_or(false);
  const auto top = f.integer("top_logprobs", 0, SamplingParams::kMaxLogprobs);
  if (top && !logprobs) throw bad_request("'top_logprobs' needs 'logprobs' set to true", "top_logprobs");
  if (logprobs) r.params.logprobs = static_cast<int>(top.value_or(0));
  r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
  return r;
}

TokenizeRequest parse_tokenize_request(const json& body) {
  const JsonFields f(body);
  TokenizeRequest r;
  r.model = f.string("model");
  const bool has_prompt = f.has("prompt");
  const bool has_messages = f.has("messages");
  if (has_prompt == has_messages) {
    throw bad_request("give exactly one of 'prompt' and 'messages'", has_prompt ? "messages" : "prompt");
  }
  r.is_chat = has_messages;
  if (has_prompt) {
    r.prompt = *f.string("prompt");
  } else {
    r.messages = parse_messages(f.raw("messages"));
  }
  r.add_special_tokens = f.boolean("add_special_tokens").value_or(!r.is_chat);
  r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
  r.return_token_strs = f.boolean("return_token_strs").value_or(false);
  return r;
}

DetokenizeRequest parse_detokenize_request(const json& body) {
  const JsonFields f(body);
  DetokenizeRequest r;
  r.model = f.string("model");
  const json* tokens = f.raw("tokens");
  if (!tokens) throw bad_request("'tokens' is required", "tokens", "missing_required_parameter");
  if (!tokens->is_array()) throw bad_request("'tokens' must be a list of token ids", "tokens", "invalid_type");
  r.tokens = token_list(*tokens, "tokens");
  return r;
}

}  // namespace jarvis::server
