#include <algorithm>

#include "csrc/tokenizer/chat_template.h"
#include "csrc/tokenizer/tokenizer_loader.h"
#include "csrc/util/error.h"

namespace jarvis {

namespace detail {
// Shared with the HF loader: end-of-turn tokens of the families we serve.
void add_end_of_turn_ids(TokenizerData& d) {
  static const char* const kEndOfTurn[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>",
                                           "<|end|>", "<|endoftext|>", "<|end_of_text|>", "<EOT>"};
  for (size_t id = 0; id < d.tokens.size(); ++id) {
    bool control = d.token_types.empty() || d.token_types[id] == TokenType::kControl;
    if (!control) continue;
    for (const char* name : kEndOfTurn) {
      auto i = static_cast<int32_t>(id);
      if (d.tokens[id] == name && i != d.eos_id &&
          std::find(d.eot_ids.begin(), d.eot_ids.end(), i) == d.eot_ids.end()) {
        d.eot_ids.push_back(i);
      }
    }
  }
}
}  // namespace detail

TokenizerData tokenizer_data_from_gguf(const GgufFile& gguf) {
  TokenizerData d;
  d.model = gguf.get_string("tokenizer.ggml.model");
  d.pre = gguf.get_string_or("tokenizer.ggml.pre", "");
  d.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const size_t n = d.tokens.size();

  auto numeric_array = [&](const char* key, auto convert) {
    const GgufValue* v = gguf.find(key);
    using T = decltype(convert(GgufValue{}));
    std::vector<T> out;
    if (!v) return out;
    if (v->type != GgufValueType::ARRAY || v->array.size() != n) {
      throw ModelFileError(gguf.path(), std::string("metadata key '") + key + "' should be an array of " +
                                            std::to_string(n) + " numbers (one per token)");
    }
    out.reserve(n);
    for (const GgufValue& e : v->array) {
      if (!e.is_integer() && !e.is_float()) {
        throw ModelFileError(gguf.path(), std::string("metadata key '") + key + "' holds a non-number");
      }
      out.push_back(convert(e));
    }
    return out;
  };
  d.scores = numeric_array("tokenizer.ggml.scores", [](const GgufValue& e) { return static_cast<float>(e.f); });
  d.token_types = numeric_array("tokenizer.ggml.token_type", [](const GgufValue& e) {
    int64_t t = e.i;
    return (t >= 0 && t <= 6) ? static_cast<TokenType>(t) : TokenType::kUndefined;
  });
  if (gguf.find("tokenizer.ggml.merges")) d.merges = gguf.get_string_array("tokenizer.ggml.merges");

  auto id = [&](const char* key) -> int32_t {
    int64_t v = gguf.get_int_or(key, -1);
    if (v < -1 || v >= static_cast<int64_t>(n)) {
      throw ModelFileError(gguf.path(), std::string("metadata key '") + key + "' = " + std::to_string(v) +
                                            " is not a token id (vocabulary size " + std::to_string(n) + ")");
    }
    return static_cast<int32_t>(v);
  };
  d.bos_id = id("tokenizer.ggml.bos_token_id");
  d.eos_id = id("tokenizer.ggml.eos_token_id");
  d.unk_id = id("tokenizer.ggml.unknown_token_id");
  d.pad_id = id("tokenizer.ggml.padding_token_id");
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t v = id(key);
    if (v >= 0 && v != d.eos_id) d.eot_ids.push_back(v);
  }
  detail::add_end_of_turn_ids(d);

  const bool spm = d.model == "llama";
  const bool llama3 = d.pre == "llama-bpe" || d.pre == "llama3";
  d.add_bos = gguf.get_bool_or("tokenizer.ggml.add_bos_token", spm || llama3);
  d.add_eos = gguf.get_bool_or("tokenizer.ggml.add_eos_token", false);
  d.add_space_prefix = gguf.get_bool_or("tokenizer.ggml.add_space_prefix", spm);
  d.architecture = gguf.get_string_or("general.architecture", "");
  d.chat_template = gguf.get_string_or("tokenizer.chat_template", "");
  if (d.chat_template.empty()) d.chat_template = default_chat_template(d.architecture);
  return d;
}

}  // namespace jarvis
