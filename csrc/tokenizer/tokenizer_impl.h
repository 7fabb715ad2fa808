// The two tokenizer algorithms behind Tokenizer::create (internal to csrc/tokenizer).
#pragma once

#include <memory>

#include "csrc/tokenizer/tokenizer.h"

namespace jarvis {

// data.model == "gpt2": byte-level BPE with merges by rank (SmolLM2, Llama 3, Qwen2, GPT-2).
std::unique_ptr<Tokenizer> make_byte_level_bpe_tokenizer(const TokenizerData& data);
// data.model == "llama": SentencePiece-style BPE by token score with byte fallback (Llama 2, Gemma).
std::unique_ptr<Tokenizer> make_sentencepiece_bpe_tokenizer(const TokenizerData& data);

}  // namespace jarvis
