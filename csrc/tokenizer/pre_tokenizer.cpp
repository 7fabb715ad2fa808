#include "csrc/tokenizer/pre_tokenizer.h"

#include "csrc/tokenizer/unicode.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

// The text as code points with their classes and byte offsets (offset[n] = text size).
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<uint8_t> flags;
  std::vector<size_t> offset;

  explicit Chars(std::string_view text) {
    cp.reserve(text.size());
    flags.reserve(text.size());
    offset.reserve(text.size() + 1);
    for (size_t pos = 0; pos < text.size();) {
      uint32_t c;
      size_t len = unicode::utf8_decode(text, pos, &c);
      cp.push_back(c);
      flags.push_back(unicode::category_flags(c));
      offset.push_back(pos);
      pos += len;
    }
    offset.push_back(text.size());
  }
  size_t size() const { return cp.size(); }
  bool letter(size_t i) const { return flags[i] & unicode::kLetter; }
  bool number(size_t i) const { return flags[i] & unicode::kNumber; }
  bool space(size_t i) const { return flags[i] & unicode::kWhitespace; }
  // [^\s\p{L}\p{N}]
  bool other(size_t i) const {
    return !(flags[i] & (unicode::kLetter | unicode::kNumber | unicode::kWhitespace));
  }
  bool newline(size_t i) const { return cp[i] == '\r' || cp[i] == '\n'; }
};

// End of the run of chars in [i, end) that satisfy pred.
template <typename Pred>
size_t run_end(const Chars& s, size_t i, size_t end, Pred pred) {
  while (i < end && pred(i)) ++i;
  return i;
}

// Case folding as Oniguruma applies it to the ASCII letters of the contractions: besides A-Z,
// U+017F LATIN SMALL LETTER LONG S folds to 's' (probed against HF; no other letter folds to one
// of s, t, m, d, r, e, v, l).
uint32_t fold(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + ('a' - 'A');
  if (c == 0x17F) return 's';
  return c;
}

size_t match_contraction(const Chars& s, size_t i, size_t end, bool ignore_case) {
  if (s.cp[i] != '\'' || i + 1 >= end) return 0;
  auto at = [&](size_t k) { return ignore_case ? fold(s.cp[k]) : s.cp[k]; };
  uint32_t c1 = at(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
  if (i + 2 >= end) return 0;
  uint32_t c2 = at(i + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
  return 0;
}

// One match of the GPT-2 regex starting at i, inside [i, end); returns where it ends.
size_t match_gpt2(const Chars& s, size_t i, size_t end) {
  if (size_t j = match_contraction(s, i, end, false)) return j;
  // ` ?X+` for X in \p{L}, \p{N}, [^\s\p{L}\p{N}]: the space is taken only if X follows it.
  size_t k = (s.cp[i] == ' ' && i + 1 < end) ? i + 1 : i;
  if (s.letter(k)) return run_end(s, k, end, [&](size_t x) { return s.letter(x); });
  if (s.letter(i)) return run_end(s, i, end, [&](size_t x) { return s.letter(x); });
  if (s.number(k)) return run_end(s, k, end, [&](size_t x) { return s.number(x); });
  if (s.number(i)) return run_end(s, i, end, [&](size_t x) { return s.number(x); });
  if (s.other(k)) return run_end(s, k, end, [&](size_t x) { return s.other(x); });
  if (s.other(i)) return run_end(s, i, end, [&](size_t x) { return s.other(x); });
  // \s+(?!\S) backs off one char when non-space follows, unless that leaves nothing; then \s+.
  size_t w = run_end(s, i, end, [&](size_t x) { return s.space(x); });
  if (w < end && w - i >= 2) return w - 1;
  return w > i ? w : i + 1;
}

// One match of the Llama 3 (digit_group 3) or Qwen2 (digit_group 1) regex.
size_t match_llama3(const Chars& s, size_t i, size_t end, size_t digit_group) {
  if (size_t j = match_contraction(s, i, end, true)) return j;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!s.newline(i) && !s.letter(i) && !s.number(i) && i + 1 < end && s.letter(i + 1)) {
    return run_end(s, i + 1, end, [&](size_t x) { return s.letter(x); });
  }
  if (s.letter(i)) return run_end(s, i, end, [&](size_t x) { return s.letter(x); });
  if (s.number(i)) {
    size_t j = i;
    while (j < end && j - i < digit_group && s.number(j)) ++j;
    return j;
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t k = (s.cp[i] == ' ' && i + 1 < end && s.other(i + 1)) ? i + 1 : i;
  if (s.other(k)) {
    size_t j = run_end(s, k, end, [&](size_t x) { return s.other(x); });
    return run_end(s, j, end, [&](size_t x) { return s.newline(x); });
  }
  size_t w = run_end(s, i, end, [&](size_t x) { return s.space(x); });
  if (w == i) return i + 1;  // unreachable: every char is a letter, number, space or other
  // \s*[\r\n]+ : through the last newline of the whitespace run.
  for (size_t p = w; p > i; --p) {
    if (s.newline(p - 1)) return p;
  }
  // \s+(?!\S) | \s+
  if (w < end && w - i >= 2) return w - 1;
  return w;
}

void split_range(PreTokenizer kind, const Chars& s, size_t begin, size_t end, std::string_view text,
                 std::vector<std::string_view>& pieces) {
  for (size_t i = begin; i < end;) {
    size_t j = 0;
    switch (kind) {
      case PreTokenizer::kGpt2:
      case PreTokenizer::kDigitsGpt2: j = match_gpt2(s, i, end); break;
      case PreTokenizer::kLlama3: j = match_llama3(s, i, end, 3); break;
      case PreTokenizer::kQwen2: j = match_llama3(s, i, end, 1); break;
    }
    pieces.push_back(text.substr(s.offset[i], s.offset[j] - s.offset[i]));
    i = j;
  }
}

}  // namespace

ByteLevelConfig byte_level_config(const std::string& pre) {
  ByteLevelConfig c;
  if (pre == "gpt2" || pre == "gpt-2" || pre == "olmo") {
    c.pre_tokenizer = PreTokenizer::kGpt2;
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    c.pre_tokenizer = PreTokenizer::kDigitsGpt2;
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe" || pre == "dbrx") {
    c.pre_tokenizer = PreTokenizer::kLlama3;
    c.ignore_merges = true;
  } else if (pre == "qwen2") {
    c.pre_tokenizer = PreTokenizer::kQwen2;
    c.nfc = true;
  } else {
    throw Error("unsupported byte-level BPE pre-tokenizer '" + pre +
                "' (supported: gpt2, smollm, starcoder, refact, olmo, llama-bpe, llama3, smaug-bpe, dbrx, qwen2)");
  }
  return c;
}

void pre_tokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& pieces) {
  Chars s(text);
  if (kind != PreTokenizer::kDigitsGpt2) {
    split_range(kind, s, 0, s.size(), text, pieces);
    return;
  }
  // Digits(individual_digits) first: each number char alone, the text between split further.
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!s.number(i)) continue;
    split_range(kind, s, start, i, text, pieces);
    pieces.push_back(text.substr(s.offset[i], s.offset[i + 1] - s.offset[i]));
    start = i + 1;
  }
  split_range(kind, s, start, s.size(), text, pieces);
}

}  // namespace jarvis
