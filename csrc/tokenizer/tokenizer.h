// Text <-> token ids for the model families we serve: byte-level BPE (GPT-2 style: SmolLM2,
// Llama 3, Qwen2) and SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Gemma).
// Ids equal HF `tokenizers` 0.22 (tests/python/test_tokenizer*.py): the pre-tokenizer regexes are
// hand-written over Unicode 16 classes, Qwen2's NFC uses HF's Unicode 9.0 normalization data.
// Not supported: added-token lstrip/rstrip/single_word flags, Metaspace prepend_scheme "first",
// WordPiece/Unigram models. Create from data loaded by csrc/tokenizer/tokenizer_loader.h.
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

  // Builds the tokenizer the data describes (data.model "gpt2" or "llama"); throws jarvis::Error
  // on data it cannot use (unknown model or pre-tokenizer, sizes that disagree, bad merges).
  static std::unique_ptr<Tokenizer> create(const TokenizerData& data);

  // add_bos: add the special tokens the model asks for: BOS when data.add_bos (and EOS when
  // data.add_eos). parse_special: text like "<|im_start|>" becomes its control id instead of being
  // split as plain text; user-defined tokens are matched either way (as HF and llama.cpp do).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // Bytes of the ids joined; skip_special drops control tokens (BOS, EOS, <|im_end|>, ...).
  // Invalid UTF-8 (a multi-byte char split across a cut) is returned as is. SentencePiece
  // tokenizers with add_space_prefix drop the one leading space it added (HF's Strip decoder).
  // Throws InvalidArgument for an id outside the vocabulary.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  // Raw bytes one token contributes when decoded after other tokens (for streaming).
  virtual std::string token_bytes(int32_t id) const = 0;
  // Whether decode() drops a leading space of the text (SentencePiece with add_space_prefix).
  virtual bool strips_first_space() const { return false; }

  int32_t vocab_size() const { return static_cast<int32_t>(data_.tokens.size()); }
  int32_t bos_id() const { return data_.bos_id; }
  int32_t eos_id() const { return data_.eos_id; }
  // End of generation: EOS or any end-of-turn token of the family.
  bool is_end_of_generation(int32_t id) const;
  // Control or unknown token: not text, skipped by decode(skip_special) and by StreamDecoder.
  bool is_control(int32_t id) const;
  const TokenizerData& data() const { return data_; }

 protected:
  explicit Tokenizer(TokenizerData data);
  void check_id(int32_t id) const;  // throws InvalidArgument when id is not in the vocabulary
  TokenizerData data_;
};

// Turns streamed token ids into text pieces that never split a UTF-8 character: bytes of an
// unfinished character are held back until the character completes. Control tokens (EOS, ...)
// add no text. The pieces joined equal decode(ids, /*skip_special=*/true).
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
