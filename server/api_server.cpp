#include "server/api_server.h"

#include <algorithm>
#include <cstdio>
#include <regex>

#include "metrics/http_metrics.h"
#include "metrics/serving_metrics.h"

#include "server/api_error.h"
#include "server/generation_handlers.h"
#include "server/info_handlers.h"

namespace jarvis::server {
namespace {

using httplib::Request;
using httplib::Response;

struct Route {
  const char* path;
  const char* method;
};
// For 405 answers: the method each path takes.
constexpr Route kRoutes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                             {"/v1/models", "GET"},       {"/tokenize", "POST"},
                             {"/detokenize", "POST"},     {"/health", "GET"},
                             {"/metrics", "GET"}};

const Route* find_route(const std::string& path) {
  for (const Route& r : kRoutes) {
    if (path == r.path) return &r;
  }
  static const Route model_route{"/v1/models/", "GET"};
  if (path.rfind("/v1/models/", 0) == 0) return &model_route;
  return nullptr;
}

// The route label of a path for the HTTP metrics: bounded, whatever clients send.
std::string route_label(const std::string& path) {
  const Route* r = find_route(path);
  if (!r) return "other";
  return r->path == std::string("/v1/models/") ? "/v1/models/{id}" : r->path;
}

bool origin_allowed(const std::vector<std::string>& allowed, const std::string& origin) {
  for (const std::string& a : allowed) {
    if (a == "*" || a == origin) return true;
  }
  return false;
}

void send_error(Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(error_body(e), "application/json");
}

// Runs a handler, turning every exception into the OpenAI error it stands for.
template <typename Fn>
void guarded(const Engine& engine, Response& res, Fn&& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    send_error(res, e);
  } catch (const QueueFull& e) {
    send_error(res, ApiError(429, std::string("the server is busy, retry later: ") + e.what(), "rate_limit_error", {},
                             "queue_full"));
  } catch (const EngineStopped& e) {
    // A degraded engine (a pipeline rank died) will not come back by waiting: say which it is.
    const bool degraded = !engine.stats().degraded.empty();
    send_error(res, ApiError(503, std::string(degraded ? "the engine is degraded: " : "the server is shutting down: ") +
                                      e.what(),
                             "service_unavailable", {}, degraded ? "degraded" : "shutting_down"));
  } catch (const InvalidArgument& e) {
    send_error(res, bad_request(e.what()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jarvis-serve: internal error: %s\n", e.what());
    send_error(res, ApiError(500, std::string("internal error: ") + e.what(), "internal_error", {}, "internal_error"));
  } catch (...) {
    send_error(res, ApiError(500, "internal error", "internal_error", {}, "internal_error"));
  }
}

std::string read_body(const httplib::ContentReader& reader, size_t max_bytes) {
  std::string body;
  bool too_big = false;
  const bool ok = reader([&](const char* data, size_t n) {
    if (body.size() + n > max_bytes) {
      too_big = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (too_big) {
    HttpServer::close_after_response();
    throw ApiError(413, "the request body is larger than " + std::to_string(max_bytes) + " bytes",
                   "invalid_request_error", {}, "request_too_large");
  }
  if (!ok) {
    HttpServer::close_after_response();
    throw ApiError(400, "the request body could not be read (incomplete or too slow)", "invalid_request_error", {},
                   "incomplete_body");
  }
  return body;
}

bool authorized(const Request& req, const std::string& key) {
  if (key.empty()) return true;
  const std::string expected = "Bearer " + key;
  const std::string got = req.get_header_value("Authorization");
  // Length-independent comparison: the time taken says nothing about how much of a guess matched.
  unsigned diff = got.size() != expected.size();
  for (size_t i = 0; i < got.size(); ++i) diff |= static_cast<unsigned char>(got[i] ^ expected[i % expected.size()]);
  return diff == 0;
}

bool is_open_path(const std::string& path) { return path == "/health" || path == "/metrics"; }

// CORS response headers for a request from an allowed origin (none otherwise: the browser blocks).
void add_cors_headers(const std::vector<std::string>& allowed, const Request& req, Response& res) {
  const std::string origin = req.get_header_value("Origin");
  if (origin.empty() || !origin_allowed(allowed, origin)) return;
  const bool any = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  res.set_header("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) res.set_header("Vary", "Origin");
}

}  // namespace

ApiServer::ApiServer(Engine& engine, const Model& model, const Tokenizer& tok, metrics::ServingMetrics* metrics,
                     ServerConfig config)
    : ctx_(engine, model, tok, metrics, std::move(config)), http_(ctx_.config.http) {
  if (metrics) {
    http_metrics_ = std::make_unique<metrics::HttpMetrics>(metrics->registry(), ctx_.config.served_model_name);
    http_.set_refusal_observer([m = http_metrics_.get()](int status) { m->count_request("other", status); });
  }
  install_routes();
}

ApiServer::~ApiServer() = default;

void ApiServer::bind(const std::string& host, int port) { http_.bind(host, port); }
void ApiServer::run() { http_.run(); }
void ApiServer::begin_shutdown() { http_.begin_shutdown(); }

void ApiServer::install_routes() {
  const size_t max_body = ctx_.config.http.max_body_bytes;

  // Before the body is handled: authentication and encodings we refuse. (Framing, body sizes and
  // "Expect: 100-continue" are the connection front's: connection_front.h.)
  http_.set_pre_routing_handler([this](const Request& req, Response& res) {
    if (req.method == "OPTIONS") return httplib::Server::HandlerResponse::Unhandled;  // CORS preflight: no key
    if (!is_open_path(req.path) && !authorized(req, ctx_.config.api_key)) {
      send_error(res, ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                               "invalid_request_error", {}, "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string encoding = req.get_header_value("Content-Encoding");
    if (!encoding.empty() && encoding != "identity") {
      send_error(res, ApiError(415, "Content-Encoding '" + encoding + "' is not supported", "invalid_request_error",
                               {}, "unsupported_encoding"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  auto post = [this, max_body](const char* path, void (*handler)(ApiContext&, const std::string&, Response&)) {
    http_.Post(path, [this, max_body, handler](const Request&, Response& res, const httplib::ContentReader& reader) {
      guarded(ctx_.engine, res, [&] { handler(ctx_, read_body(reader, max_body), res); });
    });
  };
  post("/v1/completions", handle_completions);
  post("/v1/chat/completions", handle_chat_completions);
  post("/tokenize", handle_tokenize);
  post("/detokenize", handle_detokenize);

  http_.Get("/v1/models", [this](const Request&, Response& res) {
    guarded(ctx_.engine, res, [&] { handle_models(ctx_, res); });
  });
  http_.Get(R"(/v1/models/(.+))", [this](const Request& req, Response& res) {
    guarded(ctx_.engine, res, [&] { handle_model(ctx_, req.matches[1].str(), res); });
  });
  http_.Get("/health", [this](const Request&, Response& res) {
    guarded(ctx_.engine, res, [&] { handle_health(ctx_, http_.shutting_down(), res); });
  });
  http_.Get("/metrics", [this](const Request&, Response& res) {
    guarded(ctx_.engine, res, [&] {
      if (http_metrics_) http_metrics_->set_engine_up(!http_.shutting_down() && ctx_.engine.stats().degraded.empty());
      handle_metrics(ctx_, res);
    });
  });

  // CORS (--allowed-origins): a browser's preflight, and the header on every answer.
  const std::vector<std::string> origins = ctx_.config.allowed_origins;
  if (!origins.empty()) {
    http_.Options(R"(.*)", [origins](const Request& req, Response& res) {
      const std::string origin = req.get_header_value("Origin");
      if (origin.empty()) {  // not a preflight: OPTIONS is no method of the API
        send_error(res, ApiError(405, "method OPTIONS is not allowed on " + req.path +
                                          " (CORS preflights carry Origin)",
                                 "invalid_request_error", {}, "method_not_allowed"));
        return;
      }
      if (!origin_allowed(origins, origin)) {
        send_error(res, ApiError(403, "origin '" + origin + "' is not allowed (--allowed-origins)",
                                 "invalid_request_error", {}, "origin_not_allowed"));
        return;
      }
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      const std::string asked = req.get_header_value("Access-Control-Request-Headers");
      res.set_header("Access-Control-Allow-Headers", asked.empty() ? "Authorization, Content-Type" : asked);
      res.set_header("Access-Control-Max-Age", "600");
    });
  }
  http_.set_post_routing_handler([origins](const Request& req, Response& res) {
    if (!origins.empty()) add_cors_headers(origins, req, res);
  });
  http_.set_logger([this](const Request& req, const Response& res) {
    if (http_metrics_) http_metrics_->count_request(route_label(req.path), res.status);
  });

  // Whatever httplib answers by itself (404, 400 for an unparsable request, 413, 414) gets an
  // OpenAI error body too; a known path with the wrong method is 405.
  http_.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const Route* route = req.path.empty() ? nullptr : find_route(req.path);
    if (res.status == 404 && route && req.method != route->method) {
      res.status = 405;
      res.set_header("Allow", route->method);
      res.set_content(error_body(405, "method " + req.method + " is not allowed on " + req.path + " (use " +
                                          route->method + ")",
                                 "invalid_request_error", {}, "method_not_allowed"),
                      "application/json");
    } else if (res.status == 404) {
      res.set_content(error_body(404, "no such endpoint: " + req.method + " " + req.path, "invalid_request_error", {},
                                 "not_found"),
                      "application/json");
    } else {
      if (res.status == 413) HttpServer::close_after_response();
      res.set_content(error_body(res.status, "HTTP error " + std::to_string(res.status),
                                 "invalid_request_error", {}, "http_error"),
                      "application/json");
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_.set_exception_handler([](const Request&, Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(error_body(500, "internal error", "internal_error", {}, "internal_error"), "application/json");
  });
}

}  // namespace jarvis::server
