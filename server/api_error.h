// Errors the HTTP API answers with, in OpenAI's shape:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// Handlers throw ApiError; the server turns it (and every other exception) into that JSON.
#pragma once

#include <string>

#include "csrc/util/error.h"

namespace jarvis::server {

class ApiError : public Error {
 public:
  ApiError(int status, std::string message, std::string type, std::string param = {},
           std::string code = {});

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }  // empty: null
  const std::string& code() const { return code_; }    // empty: null

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the offending parameter (may be empty).
ApiError bad_request(const std::string& message, const std::string& param = {},
                     const std::string& code = "invalid_value");

// The JSON text of an error body.
std::string error_body(const ApiError& error);
std::string error_body(int status, const std::string& message, const std::string& type,
                       const std::string& param = {}, const std::string& code = {});

}  // namespace jarvis::server
