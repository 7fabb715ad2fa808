// Finds added tokens (control and user-defined) in text before the BPE sees it, the way HF's
// AddedVocabulary and llama.cpp do: leftmost match first, the longest one at that position.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "csrc/tokenizer/tokenizer_data.h"

namespace jarvis {

struct TextSegment {
  std::string_view text;  // raw text to tokenize (when token < 0)
  int32_t token = -1;     // an added token matched verbatim
};

class SpecialTokenMatcher {
 public:
  // Control and unknown tokens match only with parse_special; user-defined ones always match.
  // With `space_mark`, a token's spaces are stored as that mark: for a tokenizer that escapes the
  // text's spaces before matching (SentencePiece matches user-defined pieces after escaping).
  explicit SpecialTokenMatcher(const TokenizerData& data, std::string_view space_mark = {});

  void split(std::string_view text, bool parse_special, std::vector<TextSegment>& out) const;

 private:
  struct Node {
    int32_t token = -1;
    bool needs_parse_special = false;
  };
  // Byte trie: node 0 is the root; edges keyed by (node << 8 | byte).
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> edges_;
  bool first_byte_[256] = {};
};

}  // namespace jarvis
