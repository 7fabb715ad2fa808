// Byte-level BPE (GPT-2 family): bytes map to printable chars, a regex pre-tokenizer splits the
// text, and merges apply to each piece by rank, lowest first, leftmost on ties (as HF's BPE model).
#include <algorithm>
#include <array>
#include <unordered_map>

#include "csrc/tokenizer/pre_tokenizer.h"
#include "csrc/tokenizer/special_tokens.h"
#include "csrc/tokenizer/tokenizer_impl.h"
#include "csrc/tokenizer/unicode.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// (controls, space, 0x7F-0xA0, 0xAD) take the code points 256, 257, ... in byte order.
std::array<uint32_t, 256> byte_to_code_point() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    map[b] = printable ? b : next++;
  }
  return map;
}

struct Merge {
  int32_t rank;
  int32_t id;
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  explicit ByteLevelBpeTokenizer(const TokenizerData& data)
      : Tokenizer(data), config_(byte_level_config(data.pre)), specials_(data_) {
    const auto& tokens = data_.tokens;
    vocab_.reserve(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id) vocab_.emplace(tokens[id], static_cast<int32_t>(id));

    std::array<uint32_t, 256> cps = byte_to_code_point();
    std::unordered_map<uint32_t, uint8_t> char_to_byte;
    for (int b = 0; b < 256; ++b) {
      unicode::utf8_append(byte_char_[b], cps[b]);
      char_to_byte[cps[b]] = static_cast<uint8_t>(b);
      auto it = vocab_.find(byte_char_[b]);
      byte_token_[b] = it == vocab_.end() ? -1 : it->second;
    }

    merges_.reserve(data_.merges.size());
    for (size_t rank = 0; rank < data_.merges.size(); ++rank) {
      const std::string& m = data_.merges[rank];
      size_t space = m.find(' ');
      if (space == std::string::npos) throw Error("tokenizer merge #" + std::to_string(rank) + " has no space: " + m);
      auto left = vocab_.find(std::string_view(m).substr(0, space));
      auto right = vocab_.find(std::string_view(m).substr(space + 1));
      auto merged = vocab_.find(m.substr(0, space) + m.substr(space + 1));
      if (left == vocab_.end() || right == vocab_.end() || merged == vocab_.end()) {
        throw Error("tokenizer merge #" + std::to_string(rank) + " '" + m + "' names a token not in the vocabulary");
      }
      // A pair listed twice keeps its first (best) rank, as HF does.
      merges_.emplace(pair_key(left->second, right->second), Merge{static_cast<int32_t>(rank), merged->second});
    }

    decoded_.resize(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id) {
      TokenType type = data_.token_types.empty() ? TokenType::kNormal : data_.token_types[id];
      const std::string& text = tokens[id];
      bool added = type == TokenType::kControl || type == TokenType::kUserDefined || type == TokenType::kUnknown;
      std::string bytes;
      bool mapped = !added;
      for (size_t pos = 0; mapped && pos < text.size();) {
        uint32_t cp;
        pos += unicode::utf8_decode(text, pos, &cp);
        auto it = char_to_byte.find(cp);
        if (it == char_to_byte.end()) {
          mapped = false;
        } else {
          bytes.push_back(static_cast<char>(it->second));
        }
      }
      // Like HF's ByteLevel decoder: a token with a char outside the byte map decodes to its text.
      decoded_[id] = mapped ? bytes : text;
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> ids;
    if (add_bos && data_.add_bos && data_.bos_id >= 0) ids.push_back(data_.bos_id);
    std::vector<TextSegment> segments;
    specials_.split(text, parse_special, segments);
    Workspace ws;
    for (const TextSegment& seg : segments) {
      if (seg.token >= 0) {
        ids.push_back(seg.token);
      } else if (config_.nfc) {
        encode_text(unicode::nfc(seg.text), ids, ws);
      } else {
        encode_text(seg.text, ids, ws);
      }
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
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    check_id(id);
    return decoded_[id];
  }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  struct Workspace {
    std::vector<std::string_view> pieces;
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string mapped;
  };

  void encode_text(std::string_view text, std::vector<int32_t>& ids, Workspace& ws) const {
    ws.pieces.clear();
    pre_tokenize(config_.pre_tokenizer, text, ws.pieces);
    for (std::string_view piece : ws.pieces) {
      if (config_.ignore_merges) {
        ws.mapped.clear();
        for (unsigned char b : piece) ws.mapped += byte_char_[b];
        auto it = vocab_.find(ws.mapped);
        if (it != vocab_.end() && !is_control(it->second)) {
          ids.push_back(it->second);
          continue;
        }
      }
      bpe(piece, ids, ws);
    }
  }

  void push_candidate(std::vector<Candidate>& heap, const std::vector<Symbol>& syms, int32_t pos) const {
    int32_t next = syms[pos].next;
    if (next < 0) return;
    auto it = merges_.find(pair_key(syms[pos].id, syms[next].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.id});
    std::push_heap(heap.begin(), heap.end());
  }

  // HF's BPE word merge: candidates in a heap by (rank, position); a popped candidate still
  // applies when the pair now at its position merges into the same token.
  void bpe(std::string_view piece, std::vector<int32_t>& ids, Workspace& ws) const {
    auto& syms = ws.symbols;
    auto& heap = ws.heap;
    syms.clear();
    heap.clear();
    // A byte without a token is left out, so its neighbours may merge (HF with no unk_token does
    // this; SmolLM2's vocabulary lacks 21 of the 256 byte chars).
    for (unsigned char b : piece) {
      if (byte_token_[b] < 0) continue;
      auto i = static_cast<int32_t>(syms.size());
      syms.push_back({byte_token_[b], i - 1, i + 1, true});
    }
    const auto n = static_cast<int32_t>(syms.size());
    if (n > 0) syms[n - 1].next = -1;
    for (int32_t i = 0; i + 1 < n; ++i) push_candidate(heap, syms, i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      Candidate top = heap.back();
      heap.pop_back();
      Symbol& left = syms[top.pos];
      if (!left.alive || left.next < 0) continue;
      auto it = merges_.find(pair_key(left.id, syms[left.next].id));
      if (it == merges_.end() || it->second.id != top.id) continue;
      int32_t right = left.next;
      left.id = top.id;
      syms[right].alive = false;
      left.next = syms[right].next;
      if (left.next >= 0) syms[left.next].prev = top.pos;
      if (left.prev >= 0) push_candidate(heap, syms, left.prev);
      push_candidate(heap, syms, top.pos);
    }
    for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) {
      ids.push_back(syms[i].id);
    }
  }


  ByteLevelConfig config_;
  SpecialTokenMatcher specials_;
  std::unordered_map<std::string_view, int32_t> vocab_;  // keys view data_.tokens
  std::unordered_map<uint64_t, Merge> merges_;
  std::string byte_char_[256];  // UTF-8 of the char each byte maps to
  int32_t byte_token_[256];
  std::vector<std::string> decoded_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_bpe_tokenizer(const TokenizerData& data) {
  return std::make_unique<ByteLevelBpeTokenizer>(data);
}

}  // namespace jarvis
