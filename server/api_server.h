// The OpenAI-compatible HTTP API over one Engine:
//   POST /v1/completions, POST /v1/chat/completions (JSON or SSE), GET /v1/models[/{id}],
//   POST /tokenize, POST /detokenize (vLLM's shapes), GET /health, GET /metrics (Prometheus).
// Every failure is an OpenAI error body with its status; no exception leaves a handler.
#pragma once

#include <memory>
#include <string>

#include "server/api_context.h"
#include "server/http_server.h"

namespace jarvis::metrics { class HttpMetrics; }

namespace jarvis::server {

class ApiServer {
 public:
  ApiServer(Engine& engine, const Model& model, const Tokenizer& tok, metrics::ServingMetrics* metrics,
            ServerConfig config);
  ~ApiServer();

  void bind(const std::string& host, int port);  // port 0: any free port
  int port() const { return http_.port(); }
  void run();             // serves until begin_shutdown(); returns when every connection closed
  void begin_shutdown();  // drains: /health answers 503, in-flight requests finish, then run() returns

 private:
  void install_routes();
  ApiContext ctx_;
  std::unique_ptr<metrics::HttpMetrics> http_metrics_;  // with metrics: requests by route and status
  HttpServer http_;
};

}  // namespace jarvis::server
