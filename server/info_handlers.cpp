#include "server/info_handlers.h"

#include "metrics/serving_metrics.h"
#include "server/api_error.h"
#include "server/json_body.h"
#include "server/openai_request.h"
#include "server/openai_response.h"

namespace jarvis::server {
namespace {

using nlohmann::json;

json model_card(const ApiContext& ctx) {
  return {{"id", ctx.config.served_model_name},
          {"object", "model"},
          {"created", ctx.created},
          {"owned_by", "jarvis"},
          {"root", ctx.config.served_model_name},
          {"parent", nullptr},
          {"max_model_len", ctx.engine.context_length()}};
}

}  // namespace

void handle_models(const ApiContext& ctx, httplib::Response& res) {
  res.set_content(dump_json({{"object", "list"}, {"data", json::array({model_card(ctx)})}}), "application/json");
}

void handle_model(const ApiContext& ctx, const std::string& id, httplib::Response& res) {
  ctx.check_model(id);
  res.set_content(dump_json(model_card(ctx)), "application/json");
}

void handle_tokenize(ApiContext& ctx, const std::string& body, httplib::Response& res) {
  const TokenizeRequest req = parse_tokenize_request(parse_json_body(body));
  ctx.check_model(req.model);
  const std::vector<int32_t> ids =
      req.is_chat ? ctx.encode_chat(req.messages, req.add_generation_prompt, req.add_special_tokens, nullptr)
                  : ctx.encode(req.prompt, req.add_special_tokens);
  json out = {{"count", ids.size()}, {"max_model_len", ctx.engine.context_length()}, {"tokens", ids}};
  if (req.return_token_strs) {
    json strs = json::array();
    for (int32_t id : ids) strs.push_back(token_piece(ctx.tok, id));
    out["token_strs"] = std::move(strs);
  }
  res.set_content(dump_json(out), "application/json");
}

void handle_detokenize(ApiContext& ctx, const std::string& body, httplib::Response& res) {
  const DetokenizeRequest req = parse_detokenize_request(parse_json_body(body));
  ctx.check_model(req.model);
  ctx.check_token_ids(req.tokens, "tokens");
  res.set_content(dump_json({{"prompt", ctx.tok.decode(req.tokens, /*skip_special=*/false)}}), "application/json");
}

void handle_health(const ApiContext& ctx, bool shutting_down, httplib::Response& res) {
  const EngineStats s = ctx.engine.stats();
  const double usage = s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0.0;
  // A degraded engine (a pipeline rank died) serves nothing: 503 so a load balancer routes away.
  const bool degraded = !s.degraded.empty();
  json out = {{"status", shutting_down ? "shutting_down" : degraded ? "degraded" : "ok"},
              {"model", ctx.config.served_model_name},
              {"running", s.running},
              {"waiting", s.waiting},
              {"kv_blocks_used", s.kv_blocks_used},
              {"kv_blocks_total", s.kv_blocks_total},
              {"kv_cache_usage", usage},
              {"preemptions", s.preemptions}};
  if (degraded) out["reason"] = s.degraded;
  res.status = shutting_down || degraded ? 503 : 200;
  res.set_content(dump_json(out), "application/json");
}

void handle_metrics(const ApiContext& ctx, httplib::Response& res) {
  res.set_content(ctx.metrics ? ctx.metrics->render() : std::string(), "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace jarvis::server
