// Reads TokenizerData from the files models ship: GGUF `tokenizer.*` metadata, or a Hugging Face
// directory (tokenizer.json + tokenizer_config.json, generation_config.json when present).
#pragma once

#include <string>

#include "csrc/gguf/gguf_file.h"
#include "csrc/tokenizer/tokenizer_data.h"

namespace jarvis {

// tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,bos_token_id,eos_token_id,
// unknown_token_id,padding_token_id,eot_token_id,eom_token_id,add_bos_token,add_eos_token,
// add_space_prefix} and tokenizer.chat_template. Throws ModelFileError when keys are missing or
// malformed. Defaults follow llama.cpp: "llama" models add BOS and the space prefix unless told not.
TokenizerData tokenizer_data_from_gguf(const GgufFile& gguf);

// A BPE tokenizer.json: byte-level (ByteLevel pre-tokenizer, alone, after Digits, or after the
// Llama 3 / Qwen2 Split regex) or SentencePiece-style (byte_fallback, Prepend/Replace "▁"
// normalizer or Metaspace that prepends always). SentencePiece merges become scores (-rank).
// Throws ModelFileError naming the file and what it cannot use.
TokenizerData tokenizer_data_from_hf(const std::string& dir);

// `path` is a .gguf file or a directory holding tokenizer.json.
TokenizerData load_tokenizer_data(const std::string& path);

}  // namespace jarvis
