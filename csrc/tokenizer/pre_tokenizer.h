// Pre-tokenizers of byte-level BPE families: the split a regex makes before BPE runs on each piece.
// The regexes are implemented by hand (same matches as Oniguruma, the engine HF tokenizers uses),
// so no regex library is needed and splitting stays linear in the text length.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace jarvis {

enum class PreTokenizer {
  // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // HF Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]: every \p{N} char is
  // its own piece first, then the GPT-2 regex runs inside each remaining piece (SmolLM2, StarCoder).
  kDigitsGpt2,
  // Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // Qwen2: the Llama 3 regex with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
};

// How a byte-level BPE family treats text, from its GGUF `tokenizer.ggml.pre` name.
struct ByteLevelConfig {
  PreTokenizer pre_tokenizer = PreTokenizer::kGpt2;
  bool nfc = false;            // Qwen2's tokenizer.json normalizes to NFC first
  bool ignore_merges = false;  // Llama 3: a piece that is a whole vocab entry is taken as is
};

// Throws jarvis::Error naming the supported names when `pre` is not one of them.
ByteLevelConfig byte_level_config(const std::string& pre);

// Appends the pieces of `text` in order; together they cover it exactly. Bytes that are not
// valid UTF-8 count as symbols of no class (like punctuation).
void pre_tokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace jarvis
