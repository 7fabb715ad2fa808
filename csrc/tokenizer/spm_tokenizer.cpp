// SentencePiece-style BPE (GGUF tokenizer.ggml.model "llama": Llama 2, TinyLlama, Gemma).
// Spaces become U+2581 "▁" (with one in front of each text segment when add_space_prefix), added
// tokens are matched in that escaped text (their own spaces escaped alike), each segment starts as
// one symbol per character, and the adjacent pair whose concatenation is the highest-scoring
// vocabulary piece merges first (leftmost on ties), as SentencePiece's BPE does.
// Characters no piece covers fall back to <0xXX> byte tokens, or to <unk> without them.
#include <algorithm>
#include <unordered_map>

#include "csrc/tokenizer/special_tokens.h"
#include "csrc/tokenizer/tokenizer_impl.h"
#include "csrc/tokenizer/unicode.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

// "<0x41>" -> 0x41; -1 when the text is not a byte token.
int parse_byte_token(const std::string& text) {
  if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(text[3]);
  int lo = hex(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class SentencePieceBpeTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceBpeTokenizer(const TokenizerData& data) : Tokenizer(data), specials_(data_, kSpaceMark) {
    if (!data_.scores.empty() && data_.scores.size() != data_.tokens.size()) {
      throw Error("tokenizer has " + std::to_string(data_.scores.size()) + " scores for " +
                  std::to_string(data_.tokens.size()) + " tokens");
    }
    std::fill(std::begin(byte_tokens_), std::end(byte_tokens_), -1);
    decoded_.resize(data_.tokens.size());
    for (size_t i = 0; i < data_.tokens.size(); ++i) {
      const auto id = static_cast<int32_t>(i);
      const std::string& text = data_.tokens[i];
      TokenType type = data_.token_types.empty() ? TokenType::kNormal : data_.token_types[i];
      if (type == TokenType::kByte) {
        int b = parse_byte_token(text);
        if (b < 0) throw Error("byte token #" + std::to_string(i) + " is not of the form <0xXX>: " + text);
        if (byte_tokens_[b] < 0) byte_tokens_[b] = id;
        decoded_[i] = std::string(1, static_cast<char>(b));
        continue;
      }
      // Only ordinary pieces take part in merges: control, unknown, unused and byte tokens are
      // never produced from text (HF's merges never build them either).
      if (type == TokenType::kNormal || type == TokenType::kUserDefined || type == TokenType::kUndefined) {
        pieces_.emplace(text, id);
      }
      std::string& out = decoded_[i];
      for (size_t pos = 0; pos < text.size();) {
        if (text.compare(pos, kSpaceMark.size(), kSpaceMark) == 0) {
          out.push_back(' ');
          pos += kSpaceMark.size();
        } else {
          out.push_back(text[pos++]);
        }
      }
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> ids;
    if (add_bos && data_.add_bos && data_.bos_id >= 0) ids.push_back(data_.bos_id);
    // Spaces are escaped before added tokens are matched, as SentencePiece matches user-defined
    // pieces in the escaped text: a "▁" the text itself holds then counts as a space there too.
    std::string escaped;
    escaped.reserve(text.size());
    for (char c : text) {
      if (c == ' ') {
        escaped += kSpaceMark;
      } else {
        escaped.push_back(c);
      }
    }
    std::vector<TextSegment> segments;
    specials_.split(escaped, parse_special, segments);
    std::string normalized;
    for (const TextSegment& seg : segments) {
      if (seg.token >= 0) {
        ids.push_back(seg.token);
        continue;
      }
      // Like HF's Prepend("▁") normalizer and llama.cpp: every text segment gets the prefix.
      normalized.clear();
      if (data_.add_space_prefix) normalized += kSpaceMark;
      normalized += seg.text;
      merge_pieces(normalized, ids);
    }
    if (add_bos && data_.add_eos && data_.eos_id >= 0) ids.push_back(data_.eos_id);
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::string out;
    for (int32_t id : ids) {
      check_id(id);
      if (skip_special && is_control(id)) continue;
      out += decoded_[id];
    }
    // HF's decoder Strip(" ", 1, 0): the space the encoder put in front is taken off again.
    if (data_.add_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    check_id(id);
    return decoded_[id];
  }

  bool strips_first_space() const override { return data_.add_space_prefix; }

 private:
  struct Symbol {
    size_t start;
    size_t len;  // 0 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  struct Bigram {
    float score;
    int32_t left;
    size_t len;  // bytes of the merged piece; a stale entry no longer matches it
    bool operator<(const Bigram& o) const {  // priority_queue pops the largest
      return score != o.score ? score < o.score : left > o.left;
    }
  };

  float score_of(int32_t id) const { return data_.scores.empty() ? 0.0f : data_.scores[id]; }

  void merge_pieces(std::string_view text, std::vector<int32_t>& ids) const {
    std::vector<Symbol> syms;
    for (size_t pos = 0; pos < text.size();) {
      uint32_t cp;
      size_t len = unicode::utf8_decode(text, pos, &cp);
      auto index = static_cast<int32_t>(syms.size());
      syms.push_back({pos, len, index - 1, -1});
      if (index > 0) syms[index - 1].next = index;
      pos += len;
    }
    std::vector<Bigram> heap;
    auto try_add = [&](int32_t left) {
      if (left < 0 || syms[left].next < 0) return;
      const Symbol& a = syms[left];
      const Symbol& b = syms[a.next];
      auto it = pieces_.find(text.substr(a.start, a.len + b.len));
      if (it == pieces_.end()) return;
      heap.push_back({score_of(it->second), left, a.len + b.len});
      std::push_heap(heap.begin(), heap.end());
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) try_add(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      Bigram top = heap.back();
      heap.pop_back();
      Symbol& left = syms[top.left];
      if (left.len == 0 || left.next < 0) continue;
      Symbol& right = syms[left.next];
      if (left.len + right.len != top.len) continue;
      left.len += right.len;
      right.len = 0;
      left.next = right.next;
      if (left.next >= 0) syms[left.next].prev = top.left;
      try_add(left.prev);
      try_add(top.left);
    }
    for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
      std::string_view piece = text.substr(syms[i].start, syms[i].len);
      auto it = pieces_.find(piece);
      if (it != pieces_.end()) {
        ids.push_back(it->second);
        continue;
      }
      bool all_bytes = std::all_of(piece.begin(), piece.end(),
                                   [&](char c) { return byte_tokens_[static_cast<unsigned char>(c)] >= 0; });
      if (all_bytes) {
        for (char c : piece) ids.push_back(byte_tokens_[static_cast<unsigned char>(c)]);
      } else if (data_.unk_id >= 0) {
        ids.push_back(data_.unk_id);
      }
    }
  }


  SpecialTokenMatcher specials_;
  std::unordered_map<std::string_view, int32_t> pieces_;  // keys view data_.tokens
  int32_t byte_tokens_[256];
  std::vector<std::string> decoded_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_bpe_tokenizer(const TokenizerData& data) {
  return std::make_unique<SentencePieceBpeTokenizer>(data);
}

}  // namespace jarvis
