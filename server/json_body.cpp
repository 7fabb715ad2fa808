#include "server/json_body.h"

#include "server/api_error.h"

namespace jarvis::server {

bool is_valid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += len;
  }
  return true;
}

nlohmann::json parse_json_body(std::string_view body) {
  if (body.empty()) throw bad_request("the request body is empty; send a JSON object", {}, "invalid_json");
  if (!is_valid_utf8(body)) throw bad_request("the request body is not valid UTF-8", {}, "invalid_json");
  // The parser itself is iterative, but a deep value is destroyed recursively: cut it off early.
  const nlohmann::json::parser_callback_t limit_depth = [](int depth, nlohmann::json::parse_event_t,
                                                           nlohmann::json&) {
    if (depth > kMaxJsonDepth) {
      throw bad_request("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels",
                        {}, "invalid_json");
    }
    return true;
  };
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(body.begin(), body.end(), limit_depth);
  } catch (const nlohmann::json::exception& e) {
    throw bad_request(std::string("malformed JSON in the request body: ") + e.what(), {}, "invalid_json");
  }
  if (!value.is_object()) throw bad_request("the request body must be a JSON object", {}, "invalid_json");
  return value;
}

std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace jarvis::server
