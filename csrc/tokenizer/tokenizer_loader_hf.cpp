// TokenizerData from a Hugging Face tokenizer directory. Only configurations whose behaviour our
// tokenizers reproduce exactly are accepted; anything else is a ModelFileError saying what it saw.
#include <cctype>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "csrc/tokenizer/tokenizer_loader.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace detail {
void add_end_of_turn_ids(TokenizerData& d);
}

namespace {

using nlohmann::json;

constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json read_json(const std::string& path, bool required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (required) throw ModelFileError(path, "cannot open");
    return json();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw ModelFileError(path, std::string("invalid JSON: ") + e.what());
  }
}

// A list of the steps of a pre-tokenizer/normalizer/decoder (a Sequence or a single one).
std::vector<json> steps(const json& j, const char* list_key) {
  if (j.is_null()) return {};
  if (j.value("type", "") == "Sequence" && j.contains(list_key)) return j[list_key].get<std::vector<json>>();
  return {j};
}

// "<s>" or {"content": "<s>", ...} as tokenizer_config.json writes special tokens.
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return {};
}

// The byte-level pre-tokenizer name our tokenizer uses for this pre_tokenizer config, or "".
std::string byte_level_pre(const json& pre, const std::string& file) {
  std::vector<json> s = steps(pre, "pretokenizers");
  auto is = [](const json& j, const char* type) { return j.value("type", "") == type; };
  auto check_byte_level = [&](const json& j, bool use_regex) {
    if (j.value("add_prefix_space", false)) throw ModelFileError(file, "ByteLevel add_prefix_space=true is not supported");
    if (j.value("use_regex", true) != use_regex) {
      throw ModelFileError(file, std::string("ByteLevel use_regex=") + (use_regex ? "false" : "true") +
                                     " is not supported in this pre-tokenizer sequence");
    }
  };
  if (s.size() == 1 && is(s[0], "ByteLevel")) {
    check_byte_level(s[0], true);
    return "gpt2";
  }
  if (s.size() == 2 && is(s[0], "Digits") && is(s[1], "ByteLevel") && s[0].value("individual_digits", false)) {
    check_byte_level(s[1], true);
    return "smollm";
  }
  if (s.size() == 2 && is(s[0], "Split") && is(s[1], "ByteLevel")) {
    check_byte_level(s[1], false);
    std::string regex = s[0].contains("pattern") ? s[0]["pattern"].value("Regex", "") : "";
    std::string behavior = s[0].value("behavior", "");
    if (behavior != "Isolated" || s[0].value("invert", false)) {
      throw ModelFileError(file, "Split pre-tokenizer with behavior " + behavior + " is not supported");
    }
    if (regex == kLlama3Regex) return "llama-bpe";
    if (regex == kQwen2Regex) return "qwen2";
    throw ModelFileError(file, "unsupported Split regex: " + regex);
  }
  return "";
}

}  // namespace

TokenizerData tokenizer_data_from_hf(const std::string& dir) {
  const std::string file = dir + "/tokenizer.json";
  json tj = read_json(file, true);
  json config = read_json(dir + "/tokenizer_config.json", false);
  TokenizerData d;
  try {
    const json& model = tj.at("model");
    if (model.value("type", "") != "BPE") {
      throw ModelFileError(file, "model type '" + model.value("type", "") + "' is not supported (only BPE)");
    }
    // Vocabulary and added tokens, placed by id.
    std::map<int64_t, std::string> by_id;
    for (auto it = model.at("vocab").begin(); it != model.at("vocab").end(); ++it) {
      by_id[it.value().get<int64_t>()] = it.key();
    }
    std::map<int64_t, TokenType> added_type;
    if (tj.contains("added_tokens")) {
      for (const json& a : tj["added_tokens"]) {
        int64_t id = a.at("id").get<int64_t>();
        by_id[id] = a.at("content").get<std::string>();
        added_type[id] = a.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
      }
    }
    if (by_id.empty() || by_id.begin()->first != 0 || by_id.rbegin()->first != static_cast<int64_t>(by_id.size()) - 1) {
      throw ModelFileError(file, "token ids are not contiguous from 0");
    }
    for (auto& [id, text] : by_id) d.tokens.push_back(text);
    d.token_types.assign(d.tokens.size(), TokenType::kNormal);
    for (auto& [id, type] : added_type) d.token_types[id] = type;
    std::map<std::string, int32_t> id_of;
    for (size_t i = 0; i < d.tokens.size(); ++i) id_of.emplace(d.tokens[i], static_cast<int32_t>(i));
    auto find_id = [&](const std::string& text) {
      auto it = id_of.find(text);
      return (text.empty() || it == id_of.end()) ? -1 : it->second;
    };

    std::vector<std::string> merges;
    for (const json& m : model.value("merges", json::array())) {
      if (m.is_string()) {
        merges.push_back(m.get<std::string>());
      } else {
        merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
      }
    }

    const json pre = tj.value("pre_tokenizer", json());
    const json normalizer = tj.value("normalizer", json());
    std::string pre_name = byte_level_pre(pre, file);
    if (!pre_name.empty()) {
      d.model = "gpt2";
      d.pre = pre_name;
      std::vector<json> norm = steps(normalizer, "normalizers");
      bool nfc = norm.size() == 1 && norm[0].value("type", "") == "NFC";
      if (!norm.empty() && !nfc) throw ModelFileError(file, "normalizer " + normalizer.dump() + " is not supported");
      if (nfc != (pre_name == "qwen2")) {
        throw ModelFileError(file, "NFC normalization is only supported with the Qwen2 pre-tokenizer");
      }
      d.merges = std::move(merges);
    } else {
      // SentencePiece-style: "▁" for spaces by normalizer (Llama 2) or Metaspace pre-tokenizer.
      bool prepend = false;
      bool replace = false;
      for (const json& n : steps(normalizer, "normalizers")) {
        std::string type = n.value("type", "");
        if (type == "Prepend" && n.value("prepend", "") == "\xE2\x96\x81") {
          prepend = true;
        } else if (type == "Replace" && n.contains("pattern") && n["pattern"].value("String", "") == " " &&
                   n.value("content", "") == "\xE2\x96\x81") {
          replace = true;
        } else {
          throw ModelFileError(file, "normalizer step " + n.dump() + " is not supported");
        }
      }
      for (const json& p : steps(pre, "pretokenizers")) {
        if (p.value("type", "") != "Metaspace" || p.value("split", true)) {
          throw ModelFileError(file, "pre-tokenizer " + p.dump() + " is not supported for a SentencePiece-style BPE");
        }
        std::string scheme = p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
        if (scheme == "first") {
          throw ModelFileError(file, "Metaspace prepend_scheme 'first' is not supported (only 'always' and 'never')");
        }
        replace = true;
        prepend = scheme == "always";
      }
      if (!replace) throw ModelFileError(file, "not a byte-level BPE and no \"\xE2\x96\x81\" space handling: unsupported");
      d.model = "llama";
      d.add_space_prefix = prepend;
      // SentencePiece merges the highest-scoring piece first: score = -rank gives merge order.
      d.scores.assign(d.tokens.size(), 0.0f);
      std::vector<bool> scored(d.tokens.size(), false);
      for (size_t rank = 0; rank < merges.size(); ++rank) {
        size_t space = merges[rank].find(' ');
        if (space == std::string::npos) throw ModelFileError(file, "merge without a space: " + merges[rank]);
        int32_t id = find_id(merges[rank].substr(0, space) + merges[rank].substr(space + 1));
        if (id < 0) throw ModelFileError(file, "merge of a token not in the vocabulary: " + merges[rank]);
        if (!scored[id]) d.scores[id] = -static_cast<float>(rank);
        scored[id] = true;
      }
      if (model.value("byte_fallback", false)) {
        for (size_t i = 0; i < d.tokens.size(); ++i) {
          const std::string& t = d.tokens[i];
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
              std::isxdigit(static_cast<unsigned char>(t[4]))) {
            d.token_types[i] = TokenType::kByte;
          }
        }
      }
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      d.unk_id = find_id(model["unk_token"].get<std::string>());
      if (d.unk_id >= 0) d.token_types[d.unk_id] = TokenType::kUnknown;
    }

    // tokenizer_config.json: special tokens, BOS/EOS policy, chat template.
    if (config.is_object()) {
      if (config.contains("bos_token")) d.bos_id = find_id(token_text(config["bos_token"]));
      if (config.contains("eos_token")) d.eos_id = find_id(token_text(config["eos_token"]));
      if (config.contains("pad_token")) d.pad_id = find_id(token_text(config["pad_token"]));
      if (config.contains("unk_token") && d.unk_id < 0) d.unk_id = find_id(token_text(config["unk_token"]));
      const json& tmpl = config.value("chat_template", json());
      if (tmpl.is_string()) {
        d.chat_template = tmpl.get<std::string>();
      } else if (tmpl.is_array()) {
        for (const json& t : tmpl) {
          if (t.value("name", "") == "default") d.chat_template = t.value("template", "");
        }
      }
    }
    // Whether BOS is added: tokenizer_config.json says so, else the post-processor template does.
    bool bos_in_template = false;
    for (const json& p : steps(tj.value("post_processor", json()), "processors")) {
      if (p.value("type", "") != "TemplateProcessing" || !p.contains("single") || p["single"].empty()) continue;
      const json& first = p["single"][0];
      if (first.contains("SpecialToken")) {
        int32_t id = find_id(first["SpecialToken"].value("id", ""));
        bos_in_template = id >= 0 && (d.bos_id < 0 || id == d.bos_id);
        if (d.bos_id < 0) d.bos_id = id;
      }
    }
    d.add_bos = config.is_object() && config.contains("add_bos_token") && config["add_bos_token"].is_boolean()
                    ? config["add_bos_token"].get<bool>()
                    : bos_in_template;
    d.add_eos = config.is_object() && config.value("add_eos_token", false);
    // generation_config.json may list several end ids (Llama 3: <|end_of_text|>, <|eot_id|>).
    json gen = read_json(dir + "/generation_config.json", false);
    if (gen.is_object() && gen.contains("eos_token_id")) {
      json e = gen["eos_token_id"];
      for (const json& v : e.is_array() ? e : json::array({e})) {
        auto id = v.get<int32_t>();
        if (id >= 0 && id < static_cast<int32_t>(d.tokens.size()) && id != d.eos_id) d.eot_ids.push_back(id);
      }
    }
  } catch (const json::exception& e) {
    throw ModelFileError(file, std::string("unexpected structure: ") + e.what());
  }
  detail::add_end_of_turn_ids(d);
  return d;
}

TokenizerData load_tokenizer_data(const std::string& path) {
  std::ifstream probe(path + "/tokenizer.json");
  if (probe) return tokenizer_data_from_hf(path);
  return tokenizer_data_from_gguf(GgufFile::open(path));
}

}  // namespace jarvis
