// Request bodies in, JSON text out. Bodies are untrusted: invalid UTF-8, deep nesting and numbers
// out of range become ApiError 400 rather than reaching the handlers.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace jarvis::server {

// Nesting deeper than this is refused: no OpenAI request needs more than a handful of levels,
// and the limit bounds the work a hostile body can cause.
constexpr int kMaxJsonDepth = 32;

bool is_valid_utf8(std::string_view text);

// Parses a request body that must be one JSON object. Throws ApiError 400 otherwise.
nlohmann::json parse_json_body(std::string_view body);

// Serialises without throwing: bytes that are not UTF-8 (a generated token that ends inside a
// character) become U+FFFD.
std::string dump_json(const nlohmann::json& value);

}  // namespace jarvis::server
