#include "transport/link_spec.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

#include "transport/transport_error.h"

namespace jarvis::transport {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits "12.5ms" into 12.5 and "ms"; the number must be finite and non-negative.
std::pair<double, std::string> number_and_unit(std::string_view text, const char* what) {
  const std::string s(trim(text));
  if (s.empty()) throw LinkSpecError(std::string("empty ") + what);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) throw LinkSpecError(std::string("bad ") + what + " '" + s + "': must start with a number");
  char* end = nullptr;
  const std::string num = s.substr(0, i);
  const double v = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(v))
    throw LinkSpecError(std::string("bad ") + what + " '" + s + "'");
  return {v, lower(trim(std::string_view(s).substr(i)))};
}

int parse_rank(std::string_view text, std::string_view item) {
  const std::string s(trim(text));
  if (s.empty() || s.size() > 6) throw LinkSpecError("bad rank in link spec item '" + std::string(item) + "'");
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) throw LinkSpecError("bad rank in link spec item '" + std::string(item) + "'");
  return std::stoi(s);
}

// Calls apply(a, b, value_text) for each "A-B:value" (or "*:value") item.
template <typename F>
void for_each_item(std::string_view spec, const char* flag, F apply) {
  spec = trim(spec);
  if (spec.empty()) return;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string_view::npos) comma = spec.size();
    const std::string_view item = trim(spec.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) throw LinkSpecError(std::string(flag) + ": empty item (expected LINK:VALUE, e.g. 0-1:2ms)");
    const size_t colon = item.find(':');
    // A bare value ("5ms") sets every link, like "*:5ms".
    const std::string_view key = colon == std::string_view::npos ? "*" : trim(item.substr(0, colon));
    const std::string_view value = colon == std::string_view::npos ? item : item.substr(colon + 1);
    if (key == "*") {
      apply(-1, -1, value, item);
      continue;
    }
    const size_t dash = key.find('-');
    if (dash == std::string_view::npos)
      throw LinkSpecError(std::string(flag) + ": link '" + std::string(key) + "' is not A-B");
    const int a = parse_rank(key.substr(0, dash), item), b = parse_rank(key.substr(dash + 1), item);
    if (a == b) throw LinkSpecError(std::string(flag) + ": link '" + std::string(key) + "' joins a rank to itself");
    apply(a, b, value, item);
  }
}

}  // namespace

std::chrono::nanoseconds parse_duration(std::string_view text) {
  const auto [v, unit] = number_and_unit(text, "duration");
  double scale;
  if (unit == "ns") scale = 1;
  else if (unit == "us") scale = 1e3;
  else if (unit == "ms") scale = 1e6;
  else if (unit == "s") scale = 1e9;
  else throw LinkSpecError("bad duration '" + std::string(trim(text)) + "': unit must be ns, us, ms or s");
  if (v * scale > 3600e9) throw LinkSpecError("duration '" + std::string(trim(text)) + "' is over an hour");
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(v * scale)));
}

double parse_bandwidth(std::string_view text) {
  const auto [v, unit] = number_and_unit(text, "bandwidth");
  double scale;
  if (unit == "bit") scale = 1;
  else if (unit == "kbit") scale = 1e3;
  else if (unit == "mbit") scale = 1e6;
  else if (unit == "gbit") scale = 1e9;
  else if (unit == "bps") scale = 8;
  else if (unit == "kbps") scale = 8e3;
  else if (unit == "mbps") scale = 8e6;
  else if (unit == "gbps") scale = 8e9;
  else throw LinkSpecError("bad bandwidth '" + std::string(trim(text)) + "': unit must be bit, kbit, mbit, gbit, bps, kbps, mbps or gbps");
  if (v <= 0) throw LinkSpecError("bandwidth '" + std::string(trim(text)) + "' must be positive");
  return v * scale;
}

LinkShape& LinkShapes::at(int a, int b) {
  if (a > b) std::swap(a, b);
  if (a < 0) {  // "*": later items override it per link, so it also seeds links named afterwards
    a = b = -1;
  } else if (!links_.count({a, b})) {
    links_[{a, b}] = links_.count({-1, -1}) ? links_[{-1, -1}] : LinkShape{};
  }
  return links_[{a, b}];
}

LinkShape LinkShapes::get(int a, int b) const {
  if (a > b) std::swap(a, b);
  auto it = links_.find({a, b});
  if (it != links_.end()) return it->second;
  it = links_.find({-1, -1});
  return it != links_.end() ? it->second : LinkShape{};
}

LinkShapes parse_link_shapes(std::string_view delay_spec, std::string_view jitter_spec,
                             std::string_view bandwidth_spec) {
  LinkShapes shapes;
  // Defaults ("*") first so that named links start from them whatever the item order.
  for (int pass = 0; pass < 2; ++pass) {
    const bool defaults = pass == 0;
    auto want = [&](int a) { return (a < 0) == defaults; };
    for_each_item(delay_spec, "--link-delay", [&](int a, int b, std::string_view v, std::string_view) {
      if (want(a)) shapes.set_delay(a, b, parse_duration(v));
    });
    for_each_item(jitter_spec, "--link-jitter", [&](int a, int b, std::string_view v, std::string_view) {
      if (want(a)) shapes.set_jitter(a, b, parse_duration(v));
    });
    for_each_item(bandwidth_spec, "--link-bandwidth", [&](int a, int b, std::string_view v, std::string_view) {
      if (want(a)) shapes.set_bandwidth(a, b, parse_bandwidth(v));
    });
  }
  return shapes;
}

}  // namespace jarvis::transport
