// Typed access to the fields of a request object. Each getter returns nullopt for an absent or
// null field and throws ApiError 400 naming the field when its type or value is wrong, so a
// handler reads like the OpenAI reference: optional fields with defaults, checked ranges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace jarvis::server {

class JsonFields {
 public:
  explicit JsonFields(const nlohmann::json& object) : obj_(object) {}

  bool has(const char* name) const;  // present and not null
  const nlohmann::json* raw(const char* name) const;  // nullptr when absent or null

  std::optional<bool> boolean(const char* name) const;
  // Integers: JSON integers, or floats with an integral value, within [lo, hi].
  std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi) const;
  // Finite numbers within [lo, hi].
  std::optional<double> number(const char* name, double lo, double hi) const;
  std::optional<std::string> string(const char* name) const;
  // A string, or a list of strings (OpenAI's `stop`).
  std::optional<std::vector<std::string>> string_or_list(const char* name) const;

 private:
  const nlohmann::json& obj_;
};

// One JSON value as an integer in [lo, hi]; `param` names it in the error.
int64_t json_integer(const nlohmann::json& value, int64_t lo, int64_t hi, const std::string& param);

}  // namespace jarvis::server
