#include "server/api_context.h"

#include <chrono>
#include <cstdio>
#include <random>

#include "server/api_error.h"

namespace jarvis::server {
namespace {

std::string token_text(const Tokenizer& tok, int32_t id) {
  return id >= 0 && id < tok.vocab_size() ? tok.data().tokens[static_cast<size_t>(id)] : std::string();
}

}  // namespace

ApiContext::ApiContext(Engine& e, const Model& m, const Tokenizer& t, metrics::ServingMetrics* mx,
                       ServerConfig c)
    : engine(e),
      model(m),
      tok(t),
      metrics(mx),
      config(std::move(c)),
      created(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                  .count()),
      id_salt_(std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32)) {}

void ApiContext::check_model(const std::optional<std::string>& name) const {
  if (!name || *name == config.served_model_name) return;
  for (const auto& alias : config.model_aliases) {
    if (*name == alias) return;
  }
  throw ApiError(404, "The model `" + *name + "` does not exist.", "invalid_request_error", "model",
                 "model_not_found");
}

std::string ApiContext::new_id(const char* prefix) {
  // splitmix64 of salt + counter: unique within the process, not guessable across restarts.
  uint64_t x = id_salt_ + 0x9E3779B97F4A7C15ull * (++counter_);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-%016llx%016llx", prefix, static_cast<unsigned long long>(x),
                static_cast<unsigned long long>(counter_.load()));
  return buf;
}

std::vector<int32_t> ApiContext::encode(const std::string& text, bool add_special) const {
  return tok.encode(text, add_special && tok.data().add_bos, /*parse_special=*/true);
}

std::vector<int32_t> ApiContext::encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                             bool add_special, std::string* text_out) const {
  const std::string& tmpl = model.tokenizer_data().chat_template;
  if (tmpl.empty()) throw bad_request("the model ships no chat template; use /v1/completions", "messages");
  const std::string bos = token_text(tok, tok.bos_id());
  std::string text;
  try {
    text = apply_chat_template(tmpl, messages, add_generation_prompt, bos, token_text(tok, tok.eos_id()));
  } catch (const InvalidArgument& e) {
    throw bad_request(std::string("the chat template refuses these messages: ") + e.what(), "messages");
  }
  // Templates that write the BOS token themselves must not get a second one (as jarvis-cli does).
  const bool has_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
  std::vector<int32_t> ids = tok.encode(text, add_special && tok.data().add_bos && !has_bos, /*parse_special=*/true);
  if (text_out) *text_out = std::move(text);
  return ids;
}

void ApiContext::check_token_ids(const std::vector<int32_t>& ids, const std::string& param) const {
  const int32_t vocab = tok.vocab_size();
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      throw bad_request("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                            std::to_string(vocab) + ")",
                        param);
    }
  }
}

}  // namespace jarvis::server
