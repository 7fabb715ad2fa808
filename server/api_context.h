// What every API handler needs: the engine, the model's tokenizer and chat template, the served
// name, and helpers shared by the endpoints (model name check, prompt tokenizing, ids).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/tokenizer/chat_template.h"
#include "csrc/tokenizer/tokenizer.h"
#include "engine/engine.h"
#include "server/http_server.h"

namespace jarvis::metrics { class ServingMetrics; }

namespace jarvis::server {

struct ServerConfig {
  std::string served_model_name;            // the id /v1/models lists and requests name
  std::vector<std::string> model_aliases;   // also accepted as "model" (e.g. the model path)
  std::string api_key;                      // empty: no authentication
  std::vector<std::string> allowed_origins; // CORS: origins browsers may call from ("*": any); empty: none
  HttpLimits http;  // connections, deadlines, body size
};

class ApiContext {
 public:
  ApiContext(Engine& engine, const Model& model, const Tokenizer& tok, metrics::ServingMetrics* metrics,
             ServerConfig config);

  Engine& engine;
  const Model& model;
  const Tokenizer& tok;
  metrics::ServingMetrics* metrics;  // may be null
  const ServerConfig config;
  const int64_t created;  // server start, Unix seconds (the model's "created")

  // Throws ApiError 404 (model_not_found) unless `model` is absent or names the served model.
  void check_model(const std::optional<std::string>& model) const;
  // "<prefix>-<32 hex>", unique per process.
  std::string new_id(const char* prefix);
  // Token ids of plain text; add_special: the BOS/EOS the model's tokenizer asks for.
  std::vector<int32_t> encode(const std::string& text, bool add_special) const;
  // The chat prompt through the model's template; `text` receives the rendered prompt.
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                   bool add_special, std::string* text) const;
  // Throws ApiError 400 naming `param` for an id the model does not know.
  void check_token_ids(const std::vector<int32_t>& ids, const std::string& param) const;

 private:
  std::atomic<uint64_t> counter_{0};
  uint64_t id_salt_;
};

}  // namespace jarvis::server
