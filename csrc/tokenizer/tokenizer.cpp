#include "csrc/tokenizer/tokenizer.h"

#include <algorithm>

#include "csrc/tokenizer/tokenizer_impl.h"
#include "csrc/tokenizer/unicode.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

void validate(const TokenizerData& d) {
  auto n = static_cast<int64_t>(d.tokens.size());
  if (n == 0) throw Error("tokenizer has no tokens");
  if (!d.token_types.empty() && static_cast<int64_t>(d.token_types.size()) != n) {
    throw Error("tokenizer has " + std::to_string(d.token_types.size()) + " token types for " +
                std::to_string(n) + " tokens");
  }
  auto check = [&](int32_t id, const char* what) {
    if (id < -1 || id >= n) throw Error(std::string("tokenizer ") + what + " id " + std::to_string(id) + " is out of range");
  };
  check(d.bos_id, "BOS");
  check(d.eos_id, "EOS");
  check(d.unk_id, "unknown-token");
  check(d.pad_id, "padding");
  for (int32_t id : d.eot_ids) check(id, "end-of-turn");
}

}  // namespace

Tokenizer::Tokenizer(TokenizerData data) : data_(std::move(data)) {}

std::unique_ptr<Tokenizer> Tokenizer::create(const TokenizerData& data) {
  validate(data);
  if (data.model == "gpt2") return make_byte_level_bpe_tokenizer(data);
  if (data.model == "llama") return make_sentencepiece_bpe_tokenizer(data);
  throw Error("unsupported tokenizer model '" + data.model + "' (supported: gpt2, llama)");
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw InvalidArgument("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                          std::to_string(vocab_size()) + ")");
  }
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return id >= 0 && (id == data_.eos_id || std::find(data_.eot_ids.begin(), data_.eot_ids.end(), id) != data_.eot_ids.end());
}

bool Tokenizer::is_control(int32_t id) const {
  if (id < 0 || id >= vocab_size() || data_.token_types.empty()) return false;
  TokenType t = data_.token_types[id];
  return t == TokenType::kControl || t == TokenType::kUnknown;
}

std::string StreamDecoder::push(int32_t id) {
  if (tok_.is_control(id)) return {};
  pending_ += tok_.token_bytes(id);
  if (first_ && !pending_.empty()) {
    first_ = false;
    if (tok_.strips_first_space() && pending_[0] == ' ') pending_.erase(0, 1);
  }
  size_t ready = unicode::utf8_complete_prefix(pending_);
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace jarvis
