// Text <-> token ids for the model families we serve: byte-level BPE (GPT-2 style: SmolLM2,
// Llama 3, Qwen2) and SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Gemma).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/tokenizer/tokenizer_data.h"

namespace jarvis {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Builds the tokenizer the data describes; throws ModelFileError-free jarvis::Error on bad data.
  static std::unique_ptr<Tokenizer> create(const TokenizerData& data);

  // add_bos: prepend BOS when the model asks for it (data.add_bos). parse_special: text like
  // "<|im_start|>" becomes its special id instead of being split as plain text.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // Bytes of the ids joined; skip_special drops control tokens (BOS, EOS, <|im_end|>, ...).
  // Invalid UTF-8 (a multi-byte char split across a cut) is returned as is.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  // Raw bytes one token contributes when decoded after other tokens (for streaming).
  virtual std::string token_bytes(int32_t id) const = 0;

  int32_t vocab_size() const { return static_cast<int32_t>(data_.tokens.size()); }
  int32_t bos_id() const { return data_.bos_id; }
  int32_t eos_id() const { return data_.eos_id; }
  // End of generation: EOS or any end-of-turn token of the family.
  bool is_end_of_generation(int32_t id) const;
  bool is_control(int32_t id) const;
  const TokenizerData& data() const { return data_; }

 protected:
  explicit Tokenizer(TokenizerData data) : data_(std::move(data)) {}
  TokenizerData data_;
};

// Turns streamed token ids into text pieces that never split a UTF-8 character: bytes of an
// unfinished character are held back until the character completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);  // text ready to print now (maybe empty)
  std::string flush();           // whatever is held back, at the end

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
};

}  // namespace jarvis
