#include "server/api_server.h"

#include <cstdio>
#include <regex>

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

void send_error(Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(error_body(e), "application/json");
}

// Runs a handler, turning every exception into the OpenAI error it stands for.
template <typename Fn>
void guarded(Response& res, Fn&& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    send_error(res, e);
  } catch (const QueueFull& e) {
    send_error(res, ApiError(429, std::string("the server is busy, retry later: ") + e.what(), "rate_limit_error", {},
                             "queue_full"));
  } catch (const EngineStopped& e) {
    send_error(res, ApiError(503, std::string("the server is shutting down: ") + e.what(), "service_unavailable",
                             {}, "shutting_down"));
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

}  // namespace

ApiServer::ApiServer(Engine& engine, const Model& model, const Tokenizer& tok, metrics::ServingMetrics* metrics,
                     ServerConfig config)
    : ctx_(engine, model, tok, metrics, std::move(config)), http_(ctx_.config.http) {
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
      guarded(res, [&] { handler(ctx_, read_body(reader, max_body), res); });
    });
  };
  post("/v1/completions", handle_completions);
  post("/v1/chat/completions", handle_chat_completions);
  post("/tokenize", handle_tokenize);
  post("/detokenize", handle_detokenize);

  http_.Get("/v1/models", [this](const Request&, Response& res) { guarded(res, [&] { handle_models(ctx_, res); }); });
  http_.Get(R"(/v1/models/(.+))", [this](const Request& req, Response& res) {
    guarded(res, [&] { handle_model(ctx_, req.matches[1].str(), res); });
  });
  http_.Get("/health", [this](const Request&, Response& res) {
    guarded(res, [&] { handle_health(ctx_, http_.shutting_down(), res); });
  });
  http_.Get("/metrics", [this](const Request&, Response& res) { guarded(res, [&] { handle_metrics(ctx_, res); }); });

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
