#include "csrc/tokenizer/special_tokens.h"

#include <string>

namespace jarvis {

SpecialTokenMatcher::SpecialTokenMatcher(const TokenizerData& data, std::string_view space_mark) {
  nodes_.emplace_back();
  std::string text;
  for (size_t id = 0; id < data.tokens.size(); ++id) {
    TokenType type = id < data.token_types.size() ? data.token_types[id] : TokenType::kNormal;
    bool control = type == TokenType::kControl || type == TokenType::kUnknown;
    if (!control && type != TokenType::kUserDefined) continue;
    text.clear();
    for (char c : data.tokens[id]) {
      if (c == ' ' && !space_mark.empty()) {
        text += space_mark;
      } else {
        text.push_back(c);
      }
    }
    if (text.empty()) continue;
    int32_t node = 0;
    for (unsigned char b : text) {
      uint64_t key = (static_cast<uint64_t>(node) << 8) | b;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<int32_t>(nodes_.size())).first;
        nodes_.emplace_back();
      }
      node = it->second;
    }
    // Two tokens with the same text: keep the first id (HF keeps the first added).
    if (nodes_[node].token < 0) {
      nodes_[node].token = static_cast<int32_t>(id);
      nodes_[node].needs_parse_special = control;
    }
    first_byte_[static_cast<unsigned char>(text[0])] = true;
  }
}

void SpecialTokenMatcher::split(std::string_view text, bool parse_special, std::vector<TextSegment>& out) const {
  size_t raw_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t node = 0;
    int32_t best_token = -1;
    size_t best_len = 0;
    for (size_t k = pos; k < text.size(); ++k) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[k]));
      if (it == edges_.end()) break;
      node = it->second;
      const Node& n = nodes_[node];
      if (n.token >= 0 && (parse_special || !n.needs_parse_special)) {
        best_token = n.token;
        best_len = k + 1 - pos;
      }
    }
    if (best_token < 0) {
      ++pos;
      continue;
    }
    if (pos > raw_start) out.push_back({text.substr(raw_start, pos - raw_start), -1});
    out.push_back({text.substr(pos, best_len), best_token});
    pos += best_len;
    raw_start = pos;
  }
  if (raw_start < text.size()) out.push_back({text.substr(raw_start), -1});
}

}  // namespace jarvis
