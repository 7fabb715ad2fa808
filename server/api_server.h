// The OpenAI-compatible HTTP API over one Engine:
//   POST /v1/completions, POST /v1/chat/completions (JSON or SSE), GET /v1/models[/{id}],
//   POST /tokenize, POST /detokenize (vLLM's shapes), GET /health, GET /metrics (Prometheus).
// Every failure is an OpenAI error body with its status; no exception leaves a handler.
#pragma once

#include <memory>
#include <string>

#include "server/api_context.h"
#include "server/http_server.h"

namespace jarvis::server {

class ApiServer {
 public:
  ApiServer(Engine& engine, const Model& model, const Tokenizer& tok, metrics::ServingMetrics* metrics,
            ServerConfig config);
  ~ApiServer();

  void bind(const std::string& host, int port);  // port 0: any free port
  int port() const { return http_.port(); }
  void run();             // serves until begin_shutdown(); returns when every connection closed
  void begin_shutdown();  // stops accepting; /health answers 503 from now on

 private:
  void install_routes();
  ApiContext ctx_;
  HttpServer http_;
};

}  // namespace jarvis::server
