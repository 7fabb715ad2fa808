#include "server/api_error.h"

#include <nlohmann/json.hpp>

#include "server/json_body.h"

namespace jarvis::server {

ApiError::ApiError(int status, std::string message, std::string type, std::string param,
                   std::string code)
    : Error(std::move(message)),
      status_(status),
      type_(std::move(type)),
      param_(std::move(param)),
      code_(std::move(code)) {}

ApiError bad_request(const std::string& message, const std::string& param, const std::string& code) {
  return ApiError(400, message, "invalid_request_error", param, code);
}

std::string error_body(int status, const std::string& message, const std::string& type,
                       const std::string& param, const std::string& code) {
  nlohmann::json err = {{"message", message},
                        {"type", type},
                        {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
                        {"code", code.empty() ? nlohmann::json() : nlohmann::json(code)}};
  (void)status;  // the status travels in the HTTP status line, as OpenAI does
  return dump_json(nlohmann::json{{"error", std::move(err)}});
}

std::string error_body(const ApiError& error) {
  return error_body(error.status(), error.what(), error.type(), error.param(), error.code());
}

}  // namespace jarvis::server
