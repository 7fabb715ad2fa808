#include "engine/cluster/cluster_config.h"

#include <cctype>
#include <climits>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "transport/transport_error.h"

namespace jarvis {

namespace {

using Json = nlohmann::json;

class Parser {
 public:
  explicit Parser(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw ClusterConfigError((path_.empty() ? "cluster file" : path_) + ": " + field + ": " + what);
  }

  void only_keys(const Json& obj, const std::string& field, std::initializer_list<const char*> allowed) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || it.key() == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        fail(field.empty() ? it.key() : field + "." + it.key(), "unknown field (expected one of: " + list + ")");
      }
    }
  }

  std::string string_field(const Json& v, const std::string& field) const {
    if (!v.is_string()) fail(field, "must be a string, got " + std::string(v.type_name()));
    if (v.get<std::string>().empty()) fail(field, "must not be empty");
    return v.get<std::string>();
  }

  int int_field(const Json& v, const std::string& field, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) fail(field, "must be an integer, got " + v.dump());
    const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
    if (x < lo || x > hi)
      fail(field, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(x);
  }

  // A rank given as an index or a node name.
  int rank_ref(const Json& v, const std::string& field, const ClusterConfig& c) const {
    if (v.is_string()) {
      const int r = c.rank_of(v.get<std::string>());
      if (r < 0) fail(field, "no node is named '" + v.get<std::string>() + "'");
      return r;
    }
    return int_field(v, field, 0, c.n_ranks() - 1);
  }

  std::string resolve(const std::string& model) const {
    if (model.empty() || model[0] == '/') return model;
    const size_t slash = path_.rfind('/');
    return slash == std::string::npos ? model : path_.substr(0, slash + 1) + model;
  }

  void address(const std::string& text, const std::string& field, NodeConfig& n) const {
    std::string host, port;
    if (!text.empty() && text[0] == '[') {  // [v6]:port
      const size_t close = text.find(']');
      if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
        fail(field, "'" + text + "' is not [ipv6]:port");
      }
      host = text.substr(1, close - 1);
      port = text.substr(close + 2);
    } else {
      const size_t colon = text.rfind(':');
      if (colon == std::string::npos) fail(field, "'" + text + "' has no port (expected host:port)");
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (host.find(':') != std::string::npos) fail(field, "'" + text + "': write an IPv6 address as [addr]:port");
    }
    if (host.empty()) fail(field, "'" + text + "' has no host (expected host:port)");
    bool digits = !port.empty() && port.size() <= 5;
    for (char ch : port) digits = digits && std::isdigit(static_cast<unsigned char>(ch));
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
      fail(field, "'" + text + "': port '" + port + "' is not a number in 1..65535");
    }
    n.host = host;
    n.port = std::stoi(port);
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

template <typename F>
auto wrap_spec_errors(const Parser& p, const std::string& field, F f) {
  try {
    return f();
  } catch (const transport::LinkSpecError& e) {
    p.fail(field, e.what());
  }
}

void parse_node(const Parser& p, const Json& j, size_t i, NodeConfig& n, int& first_expected, bool& have_layers,
                ClusterConfig& c) {
  const std::string f = "nodes[" + std::to_string(i) + "]";
  if (!j.is_object()) p.fail(f, "must be an object, got " + std::string(j.type_name()));
  p.only_keys(j, f, {"name", "address", "device", "memory", "layers", "model"});
  for (const char* required : {"name", "address"}) {
    if (!j.contains(required)) p.fail(f + "." + required, "missing");
  }
  n.name = p.string_field(j["name"], f + ".name");
  if (c.rank_of(n.name) >= 0) p.fail(f + ".name", "'" + n.name + "' is also the name of an earlier node");
  p.address(p.string_field(j["address"], f + ".address"), f + ".address", n);
  if (j.contains("device")) {
    const std::string text = p.string_field(j["device"], f + ".device");
    try {
      n.device = parse_device(text);  // the --device syntax: one parser for both
    } catch (const InvalidArgument&) {
      p.fail(f + ".device", "'" + text + "' is not a device (cpu, cuda or cuda:N)");
    }
  }
  if (j.contains("memory")) {
    const Json& m = j["memory"];
    if (m.is_string()) {
      n.memory_bytes = parse_byte_size(m.get<std::string>(), p.path() + ": " + f + ".memory");
    } else if (m.is_number_integer() && m.get<int64_t>() > 0) {
      n.memory_bytes = m.get<int64_t>();
    } else {
      p.fail(f + ".memory", "must be a positive byte count or a size like \"8GiB\", got " + m.dump());
    }
  }
  n.model = j.contains("model") ? p.resolve(p.string_field(j["model"], f + ".model")) : c.model;
  const bool has = j.contains("layers");
  if (i > 0 && has != have_layers) {
    p.fail(f + ".layers", has ? "given here but not on nodes[0]: give layers on every node or on none"
                              : "missing, but nodes[0] has layers: give layers on every node or on none");
  }
  have_layers = has;
  if (!has) return;
  const Json& l = j["layers"];
  if (l.is_array()) {
    if (l.size() != 2) p.fail(f + ".layers", "a range must be [first, end), got " + l.dump());
    const int first = p.int_field(l[0], f + ".layers[0]", 0, 1 << 20);
    const int end = p.int_field(l[1], f + ".layers[1]", 0, 1 << 20);
    if (end < first) p.fail(f + ".layers", "range " + l.dump() + " ends before it starts");
    if (first != first_expected) {
      p.fail(f + ".layers", "range " + l.dump() + " must start at layer " + std::to_string(first_expected) +
                                " (ranks hold consecutive layers in node order)");
    }
    n.layers = end - first;
  } else {
    n.layers = p.int_field(l, f + ".layers", 0, 1 << 20);
  }
  first_expected += *n.layers;
}

}  // namespace

int64_t parse_byte_size(std::string_view text, const std::string& what) {
  const std::string s(text);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  double v = 0;
  bool ok = i > 0 && std::sscanf(s.substr(0, i).c_str(), "%lf", &v) == 1;
  double scale = 0;
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const std::pair<const char*, double> kUnits[] = {
      {"", 1},         {"b", 1},      {"k", 0x1p10},   {"kib", 0x1p10}, {"m", 0x1p20}, {"mib", 0x1p20}, {"g", 0x1p30},
      {"gib", 0x1p30}, {"t", 0x1p40}, {"tib", 0x1p40}, {"kb", 1e3},     {"mb", 1e6},   {"gb", 1e9},     {"tb", 1e12}};
  for (const auto& [name, mult] : kUnits) {
    if (unit == name) scale = mult;
  }
  const double bytes = v * scale;
  if (!ok || scale == 0 || !(bytes >= 1) || bytes > 0x1p62) {
    throw ClusterConfigError(what + ": '" + s + "' is not a memory size (e.g. 8GiB, 512MiB, 2GB, 1048576)");
  }
  return static_cast<int64_t>(std::llround(bytes));
}

std::optional<std::vector<int>> ClusterConfig::split() const {
  if (nodes.empty() || !nodes[0].layers) return std::nullopt;
  std::vector<int> out;
  for (const NodeConfig& n : nodes) out.push_back(*n.layers);
  return out;
}

std::vector<int64_t> ClusterConfig::memory_budgets() const {
  std::vector<int64_t> out;
  for (const NodeConfig& n : nodes) out.push_back(n.memory_bytes);
  return out;
}

int ClusterConfig::rank_of(std::string_view name) const {
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

transport::LinkShapes ClusterConfig::link_shapes(std::string_view delay_spec, std::string_view jitter_spec,
                                                 std::string_view bandwidth_spec) const {
  // The file's links become leading spec items, so the command line's items (parsed after them)
  // override them link by link; a "*" default on the command line still seeds unnamed links only.
  std::string delay, jitter, bandwidth;
  auto add = [](std::string& spec, const std::string& item) { spec += (spec.empty() ? "" : ",") + item; };
  for (const LinkConfig& l : links) {
    const std::string key = std::to_string(l.from) + "-" + std::to_string(l.to) + ":";
    if (l.shape.delay.count() > 0) add(delay, key + std::to_string(l.shape.delay.count()) + "ns");
    if (l.shape.jitter.count() > 0) add(jitter, key + std::to_string(l.shape.jitter.count()) + "ns");
    if (l.shape.bits_per_second > 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17gbit", l.shape.bits_per_second);
      add(bandwidth, key + buf);
    }
  }
  if (!delay_spec.empty()) add(delay, std::string(delay_spec));
  if (!jitter_spec.empty()) add(jitter, std::string(jitter_spec));
  if (!bandwidth_spec.empty()) add(bandwidth, std::string(bandwidth_spec));
  return transport::parse_link_shapes(delay, jitter, bandwidth);
}

ClusterConfig parse_cluster_config(std::string_view json_text, const std::string& path) {
  const Parser p(path);
  Json j;
  try {
    j = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::parse_error& e) {
    p.fail("JSON", e.what());
  }
  if (!j.is_object()) p.fail("top level", "must be an object, got " + std::string(j.type_name()));
  p.only_keys(j, "", {"model", "nodes", "links", "head", "tail", "kv_blocks", "page_size"});
  ClusterConfig c;
  c.path = path;
  if (!j.contains("model")) p.fail("model", "missing (the model file every rank loads)");
  c.model = p.resolve(p.string_field(j["model"], "model"));
  if (!j.contains("nodes")) p.fail("nodes", "missing");
  if (!j["nodes"].is_array() || j["nodes"].empty()) p.fail("nodes", "must be a non-empty list of nodes");
  int first_expected = 0;
  bool have_layers = false;
  for (size_t i = 0; i < j["nodes"].size(); ++i) {
    NodeConfig n;
    parse_node(p, j["nodes"][i], i, n, first_expected, have_layers, c);
    c.nodes.push_back(std::move(n));
  }
  if (j.contains("kv_blocks")) c.kv_blocks = p.int_field(j["kv_blocks"], "kv_blocks", 1, INT32_MAX / 2);
  if (j.contains("page_size")) c.page_size = p.int_field(j["page_size"], "page_size", 1, 1 << 16);
  for (const char* end : {"head", "tail"}) {
    if (!j.contains(end)) continue;
    (std::string(end) == "head" ? c.ends.head_rank : c.ends.tail_rank) = p.rank_ref(j[end], end, c);
  }
  if (j.contains("links")) {
    if (!j["links"].is_array()) p.fail("links", "must be a list");
    for (size_t i = 0; i < j["links"].size(); ++i) {
      const std::string f = "links[" + std::to_string(i) + "]";
      const Json& l = j["links"][i];
      if (!l.is_object()) p.fail(f, "must be an object, got " + std::string(l.type_name()));
      p.only_keys(l, f, {"from", "to", "delay", "jitter", "bandwidth"});
      for (const char* required : {"from", "to"}) {
        if (!l.contains(required)) p.fail(f + "." + required, "missing");
      }
      LinkConfig lc;
      lc.from = p.rank_ref(l["from"], f + ".from", c);
      lc.to = p.rank_ref(l["to"], f + ".to", c);
      if (lc.from == lc.to) p.fail(f, "joins rank " + std::to_string(lc.from) + " to itself");
      if (l.contains("delay")) {
        lc.shape.delay = wrap_spec_errors(
            p, f + ".delay", [&] { return transport::parse_duration(p.string_field(l["delay"], f + ".delay")); });
      }
      if (l.contains("jitter")) {
        lc.shape.jitter = wrap_spec_errors(
            p, f + ".jitter", [&] { return transport::parse_duration(p.string_field(l["jitter"], f + ".jitter")); });
      }
      if (l.contains("bandwidth")) {
        lc.shape.bits_per_second = wrap_spec_errors(p, f + ".bandwidth", [&] {
          return transport::parse_bandwidth(p.string_field(l["bandwidth"], f + ".bandwidth"));
        });
      }
      c.links.push_back(lc);
    }
  }
  return c;
}

ClusterConfig read_cluster_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ClusterConfigError(path + ": cannot open the cluster file");
  std::stringstream text;
  text << in.rdbuf();
  return parse_cluster_config(text.str(), path);
}

}  // namespace jarvis
