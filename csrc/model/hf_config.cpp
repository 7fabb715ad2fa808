#include "csrc/model/hf_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& path) : j_(j), path_(path) {}

  [[noreturn]] void fail(const std::string& what) const { throw ModelFileError(path_, what); }

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int get_int(const char* key) const {
    if (!has(key)) fail(std::string("config.json lacks '") + key + "'");
    return int_value(key);
  }
  int get_int_or(const char* key, int fallback) const { return has(key) ? int_value(key) : fallback; }

  float get_float_or(const char* key, float fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) fail(std::string("config.json '") + key + "' must be a number");
    return v.get<float>();
  }
  bool get_bool_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_.at(key).is_boolean()) fail(std::string("config.json '") + key + "' must be true or false");
    return j_.at(key).get<bool>();
  }
  std::string get_string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_.at(key).is_string()) fail(std::string("config.json '") + key + "' must be a string");
    return j_.at(key).get<std::string>();
  }

 private:
  int int_value(const char* key) const {
    const json& v = j_.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t{1} << 30)) {
      fail(std::string("config.json '") + key + "' must be a positive integer");
    }
    return static_cast<int>(v.get<int64_t>());
  }

  const json& j_;
  const std::string& path_;
};

void parse_rope_scaling(const json& root, const ConfigReader& r, ModelConfig& c) {
  if (!r.has("rope_scaling")) return;
  const json& rs = root.at("rope_scaling");
  if (!rs.is_object()) r.fail("config.json 'rope_scaling' must be an object or null");
  // Newer files say "rope_type", older ones "type".
  std::string type = rs.contains("rope_type") ? rs.value("rope_type", "") : rs.value("type", "");
  if (type == "default" || type.empty()) return;
  auto factor = [&]() {
    if (!rs.contains("factor") || !rs.at("factor").is_number() || rs.at("factor").get<float>() <= 0) {
      r.fail("config.json rope_scaling '" + type + "' needs a positive 'factor'");
    }
    return rs.at("factor").get<float>();
  };
  if (type == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    c.rope_scaling.factor = factor();
  } else if (type == "llama3") {
    c.rope_scaling.type = RopeScaling::Type::kLlama3;
    c.rope_scaling.factor = factor();
    auto num = [&](const char* key, float fallback) {
      if (!rs.contains(key)) return fallback;
      if (!rs.at(key).is_number()) r.fail(std::string("config.json rope_scaling '") + key + "' must be a number");
      return rs.at(key).get<float>();
    };
    c.rope_scaling.low_freq_factor = num("low_freq_factor", 1.0f);
    c.rope_scaling.high_freq_factor = num("high_freq_factor", 4.0f);
    c.rope_scaling.original_context = static_cast<int>(num("original_max_position_embeddings", 8192.0f));
    if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor || c.rope_scaling.original_context <= 0) {
      r.fail("config.json rope_scaling llama3 needs high_freq_factor > low_freq_factor and a positive context");
    }
  } else {
    r.fail("config.json rope_scaling type '" + type + "' is not supported (linear and llama3 are)");
  }
}

}  // namespace

ModelConfig parse_hf_config(const std::string& json_text, const std::string& path) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ModelFileError(path, std::string("config.json is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) throw ModelFileError(path, "config.json is not a JSON object");
  const ConfigReader r(root, path);

  ModelConfig c;
  const std::string model_type = r.get_string_or("model_type", "");
  if (model_type.empty()) r.fail("config.json lacks 'model_type'");
  std::string expected_arch;
  bool tied_default = false;
  if (model_type == "llama") {
    c.arch = Arch::kLlama;
    expected_arch = "LlamaForCausalLM";
  } else if (model_type == "mistral") {
    c.arch = Arch::kLlama;
    expected_arch = "MistralForCausalLM";
  } else if (model_type == "qwen2") {
    c.arch = Arch::kQwen2;
    expected_arch = "Qwen2ForCausalLM";
  } else if (model_type == "gemma") {
    c.arch = Arch::kGemma;
    expected_arch = "GemmaForCausalLM";
    tied_default = true;  // GemmaConfig's default; llama, mistral and qwen2 default to untied
  } else {
    r.fail("config.json model_type '" + model_type + "' is not supported (llama, mistral, qwen2, gemma are)");
  }
  if (r.has("architectures")) {
    const json& a = root.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string()) r.fail("config.json 'architectures' must list a class name");
    if (a[0].get<std::string>() != expected_arch) {
      r.fail("config.json architecture '" + a[0].get<std::string>() + "' is not supported for model_type '" +
             model_type + "' (expected " + expected_arch + ")");
    }
  }
  c.arch_name = model_type;
  c.model_name = r.get_string_or("_name_or_path", "");

  c.hidden = r.get_int("hidden_size");
  c.ffn_hidden = r.get_int("intermediate_size");
  c.n_layers = r.get_int("num_hidden_layers");
  c.n_heads = r.get_int("num_attention_heads");
  c.n_kv_heads = r.get_int_or("num_key_value_heads", c.n_heads);
  c.vocab_size = r.get_int("vocab_size");
  c.context_length = r.get_int("max_position_embeddings");
  if (c.n_heads % c.n_kv_heads != 0) {
    r.fail("config.json num_attention_heads (" + std::to_string(c.n_heads) +
           ") is not a multiple of num_key_value_heads (" + std::to_string(c.n_kv_heads) + ")");
  }
  if (!r.has("head_dim") && c.hidden % c.n_heads != 0) r.fail("config.json lacks 'head_dim' and hidden_size is not divisible by the heads");
  c.head_dim = r.get_int_or("head_dim", c.hidden / c.n_heads);
  if (c.head_dim % 2 != 0) r.fail("config.json head_dim must be even for RoPE");
  c.rope_dim = c.head_dim;
  c.norm_eps = r.get_float_or("rms_norm_eps", 1e-6f);
  c.rope_theta = r.get_float_or("rope_theta", 10000.0f);
  if (!(c.norm_eps > 0) || !(c.rope_theta > 0)) r.fail("config.json rms_norm_eps and rope_theta must be positive");
  c.rope_style = RopeStyle::kNeox;  // HF stores Q/K unpermuted and rotates halves (rotate_half)
  parse_rope_scaling(root, r, c);
  c.tied_embeddings = r.get_bool_or("tie_word_embeddings", tied_default);

  if (c.arch == Arch::kGemma) {
    // Gemma's reference code uses the tanh approximation whatever `hidden_act` says.
    c.activation = Activation::kGeluTanh;
    c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
  } else {
    const std::string act = r.get_string_or("hidden_act", "silu");
    if (act != "silu") r.fail("config.json hidden_act '" + act + "' is not supported for " + model_type + " (silu is)");
  }
  c.qkv_bias = c.arch == Arch::kQwen2;
  if (r.get_bool_or("attention_bias", false) && c.arch != Arch::kQwen2) r.fail("config.json attention_bias is not supported");
  if (r.get_bool_or("mlp_bias", false)) r.fail("config.json mlp_bias is not supported");

  // Sliding-window attention equals full attention while a sequence fits the window, so bound the
  // context by the window instead of implementing the window.
  const bool sliding = model_type == "mistral" || (model_type == "qwen2" && r.get_bool_or("use_sliding_window", false));
  if (sliding && r.has("sliding_window")) c.context_length = std::min(c.context_length, r.get_int("sliding_window"));
  return c;
}

ModelConfig read_hf_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(path, "cannot open (an HF model directory needs config.json)");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_hf_config(text.str(), path);
}

}  // namespace jarvis
