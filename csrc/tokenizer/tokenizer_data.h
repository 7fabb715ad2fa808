// Everything needed to build a tokenizer and a chat template, as read from a model file
// (GGUF `tokenizer.*` metadata, or HF tokenizer.json + tokenizer_config.json).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jarvis {

enum class TokenType : int32_t {  // GGUF tokenizer.ggml.token_type values
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

struct TokenizerData {
  std::string model;  // "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE)
  std::string pre;    // pre-tokenizer name for byte-level BPE ("smollm", "llama-bpe", "qwen2", ...)
  std::vector<std::string> tokens;
  std::vector<float> scores;       // SentencePiece merge priorities (may be empty for BPE)
  std::vector<TokenType> token_types;
  std::vector<std::string> merges; // "a b" pairs, rank order (byte-level BPE)
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  std::vector<int32_t> eot_ids;    // extra end-of-turn ids (e.g. <|eot_id|>, <end_of_turn>)
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;   // SentencePiece "▁" prefix on the first word
  std::string chat_template;       // Jinja source as the model ships it
};

}  // namespace jarvis
