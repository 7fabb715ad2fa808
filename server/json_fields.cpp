#include "server/json_fields.h"

#include <cmath>
#include <cstdio>

#include "server/api_error.h"

namespace jarvis::server {
namespace {

std::string type_name(const nlohmann::json& v) { return v.type_name(); }

std::string num(double d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", d);
  return buf;
}

}  // namespace

int64_t json_integer(const nlohmann::json& v, int64_t lo, int64_t hi, const std::string& param) {
  const std::string range = " (allowed: " + std::to_string(lo) + " to " + std::to_string(hi) + ")";
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) throw bad_request("'" + param + "' is too large" + range, param);
    if (static_cast<int64_t>(u) < lo) throw bad_request("'" + param + "' is too small" + range, param);
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < lo || i > hi) throw bad_request("'" + param + "' is " + std::to_string(i) + range, param);
    return i;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) {
      throw bad_request("'" + param + "' must be an integer, got " + v.dump(), param, "invalid_type");
    }
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      throw bad_request("'" + param + "' is " + v.dump() + range, param);
    }
    return static_cast<int64_t>(d);
  }
  throw bad_request("'" + param + "' must be an integer, got " + type_name(v), param, "invalid_type");
}

bool JsonFields::has(const char* name) const { return raw(name) != nullptr; }

const nlohmann::json* JsonFields::raw(const char* name) const {
  const auto it = obj_.find(name);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<bool> JsonFields::boolean(const char* name) const {
  const nlohmann::json* v = raw(name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) {
    throw bad_request(std::string("'") + name + "' must be a boolean, got " + type_name(*v), name, "invalid_type");
  }
  return v->get<bool>();
}

std::optional<int64_t> JsonFields::integer(const char* name, int64_t lo, int64_t hi) const {
  const nlohmann::json* v = raw(name);
  if (!v) return std::nullopt;
  return json_integer(*v, lo, hi, name);
}

std::optional<double> JsonFields::number(const char* name, double lo, double hi) const {
  const nlohmann::json* v = raw(name);
  if (!v) return std::nullopt;
  if (!v->is_number()) {
    throw bad_request(std::string("'") + name + "' must be a number, got " + type_name(*v), name, "invalid_type");
  }
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    throw bad_request(std::string("'") + name + "' is " + v->dump() + " (allowed: " + num(lo) + " to " + num(hi) + ")",
                      name);
  }
  return d;
}

std::optional<std::string> JsonFields::string(const char* name) const {
  const nlohmann::json* v = raw(name);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    throw bad_request(std::string("'") + name + "' must be a string, got " + type_name(*v), name, "invalid_type");
  }
  return v->get<std::string>();
}

std::optional<std::vector<std::string>> JsonFields::string_or_list(const char* name) const {
  const nlohmann::json* v = raw(name);
  if (!v) return std::nullopt;
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array()) {
    throw bad_request(std::string("'") + name + "' must be a string or a list of strings, got " + type_name(*v),
                      name, "invalid_type");
  }
  for (const auto& item : *v) {
    if (!item.is_string()) {
      throw bad_request(std::string("'") + name + "' must be a string or a list of strings", name, "invalid_type");
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace jarvis::server
