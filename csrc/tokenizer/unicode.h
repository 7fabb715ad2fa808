// The bits of Unicode the tokenizers and chat templates need: UTF-8 decoding, the character
// classes of the pre-tokenizer regexes (\p{L}, \p{N}, \s), Python's isspace, and NFC.
// Tables are Unicode 16.0, the version HF tokenizers 0.22 matches against (see gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace jarvis::unicode {

enum CategoryFlag : uint8_t {
  kLetter = 1,      // \p{L}
  kNumber = 2,      // \p{N} (also Rust char::is_numeric)
  kWhitespace = 4,  // regex \s: the White_Space property
  kPySpace = 8,     // Python str.isspace (Jinja's trim)
};

// Stands for a byte that does not start a valid UTF-8 sequence; belongs to no category.
constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

uint8_t category_flags(uint32_t cp);
inline bool is_letter(uint32_t cp) { return category_flags(cp) & kLetter; }
inline bool is_number(uint32_t cp) { return category_flags(cp) & kNumber; }
inline bool is_whitespace(uint32_t cp) { return category_flags(cp) & kWhitespace; }

// Decodes the code point starting at s[pos]; returns its length in bytes (>= 1). A byte that does
// not begin a well-formed sequence (overlong, surrogate, truncated, > U+10FFFF) decodes as
// kInvalidCodePoint of length 1, so every input splits into pieces that cover it exactly.
size_t utf8_decode(std::string_view s, size_t pos, uint32_t* cp);
void utf8_append(std::string& out, uint32_t cp);
// Length a sequence starting with this byte claims (1 for ASCII and stray continuation bytes).
size_t utf8_sequence_length(uint8_t lead);
// Length of the longest prefix of s that does not end inside an incomplete multi-byte sequence.
size_t utf8_complete_prefix(std::string_view s);

// Canonical composition (NFC) as HF's NFC normalizer does it. Invalid bytes pass through as is.
std::string nfc(std::string_view s);

// Python's str.strip() with no argument (what Jinja's `trim` and `.strip()` call).
std::string_view python_strip(std::string_view s);

}  // namespace jarvis::unicode
