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
  std::vector<float> scores;       // SentencePiece merge priorities: higher merges first ("llama")
  std::vector<TokenType> token_types;
  std::vector<std::string> merges; // "a b" pairs, rank order (byte-level BPE, "gpt2")
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  std::vector<int32_t> eot_ids;    // extra end-of-generation ids (<|eot_id|>, <|im_end|>, <end_of_turn>,
                                   // <|end|>, <|endoftext|>, ... when they are control tokens)
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;   // SentencePiece "▁" prefix on the first word
  std::string architecture;        // GGUF general.architecture ("" from a tokenizer.json directory)
  std::string chat_template;       // Jinja source as the model ships it, else its family's
                                   // (default_chat_template of the architecture)
};

}  // namespace jarvis
