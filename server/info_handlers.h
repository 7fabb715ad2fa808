// The endpoints that do not generate: GET /v1/models, POST /tokenize, POST /detokenize,
// GET /health, GET /metrics.
#pragma once

#include <string>

#include <httplib.h>

#include "server/api_context.h"

namespace jarvis::server {

void handle_models(const ApiContext& ctx, httplib::Response& res);
void handle_model(const ApiContext& ctx, const std::string& id, httplib::Response& res);
void handle_tokenize(ApiContext& ctx, const std::string& body, httplib::Response& res);
void handle_detokenize(ApiContext& ctx, const std::string& body, httplib::Response& res);
void handle_health(const ApiContext& ctx, bool shutting_down, httplib::Response& res);
void handle_metrics(const ApiContext& ctx, httplib::Response& res);

}  // namespace jarvis::server
