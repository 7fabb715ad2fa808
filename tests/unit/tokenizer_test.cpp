// Tokenizer properties that need no reference implementation: streaming never splits a UTF-8
// character, empty input, id validation, bad data rejected, UTF-8 decoding per RFC 3629.
// (Ids themselves are checked against HF tokenizers in tests/python/test_tokenizer.py.)
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "csrc/tokenizer/chat_template.h"
#include "csrc/tokenizer/tokenizer.h"
#include "csrc/tokenizer/tokenizer_loader.h"
#include "csrc/tokenizer/unicode.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

const char* const kMixedText = "h\xC3\xA9llo \xF0\x9F\x91\x8B \xE4\xB8\xAD\xE6\x96\x87 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D!";

// GPT-2's byte-to-char map (its definition: printable Latin-1 bytes map to themselves).
std::string byte_char(int b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
      unicode::utf8_append(t[i], printable ? static_cast<uint32_t>(i) : next++);
    }
    return t;
  }();
  return table[b];
}

// Byte-level vocabulary: the 256 byte chars, then <|eot|> (control); no merges.
TokenizerData byte_level_data() {
  TokenizerData d;
  d.model = "gpt2";
  d.pre = "gpt2";
  for (int b = 0; b < 256; ++b) d.tokens.push_back(byte_char(b));
  d.tokens.push_back("<|eot|>");
  d.token_types.assign(d.tokens.size(), TokenType::kNormal);
  d.token_types.back() = TokenType::kControl;
  d.eos_id = 256;
  return d;
}

// SentencePiece layout: <unk> <s> </s>, 256 byte tokens, "▁" — every character falls back to bytes.
TokenizerData sentencepiece_data() {
  TokenizerData d;
  d.model = "llama";
  d.tokens = {"<unk>", "<s>", "</s>"};
  d.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    d.tokens.push_back(buf);
    d.token_types.push_back(TokenType::kByte);
  }
  d.tokens.push_back("\xE2\x96\x81");
  d.token_types.push_back(TokenType::kNormal);
  d.scores.assign(d.tokens.size(), 0.0f);
  d.unk_id = 0;
  d.bos_id = 1;
  d.eos_id = 2;
  d.add_bos = true;
  d.add_space_prefix = true;
  return d;
}

bool valid_utf8(const std::string& s) {
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    pos += unicode::utf8_decode(s, pos, &cp);
    if (cp == unicode::kInvalidCodePoint) return false;
  }
  return true;
}

void expect_stream_keeps_chars_whole(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  StreamDecoder stream(tok);
  std::string joined;
  for (int32_t id : ids) {
    std::string piece = stream.push(id);
    EXPECT_TRUE(valid_utf8(piece)) << "piece splits a character";
    joined += piece;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, tok.decode(ids, /*skip_special=*/true));
}

TEST(Tokenizer, StreamDecoderNeverSplitsUtf8ByteLevel) {
  auto tok = Tokenizer::create(byte_level_data());
  std::vector<int32_t> ids = tok->encode(kMixedText, false, true);
  EXPECT_EQ(ids.size(), std::string(kMixedText).size());  // one token per byte: the worst case
  expect_stream_keeps_chars_whole(*tok, ids);
  EXPECT_EQ(tok->decode(ids, false), kMixedText);
}

TEST(Tokenizer, StreamDecoderNeverSplitsUtf8SentencePiece) {
  auto tok = Tokenizer::create(sentencepiece_data());
  std::vector<int32_t> ids = tok->encode(kMixedText, false, true);
  expect_stream_keeps_chars_whole(*tok, ids);
  EXPECT_EQ(tok->decode(ids, false), kMixedText);  // the added space prefix is taken off again
}

TEST(Tokenizer, StreamDecoderHoldsIncompleteTailAndSkipsControl) {
  auto tok = Tokenizer::create(byte_level_data());
  StreamDecoder stream(*tok);
  EXPECT_EQ(stream.push(0xE4), "");  // first byte of a 3-byte character
  EXPECT_EQ(stream.push(256), "");   // control token: no text
  EXPECT_EQ(stream.push(0xB8), "");
  EXPECT_EQ(stream.push(0xAD), "\xE4\xB8\xAD");
  EXPECT_EQ(stream.push(0xF0), "");
  EXPECT_EQ(stream.flush(), "\xF0");  // whatever was held back comes out at the end
}

TEST(Tokenizer, EmptyInput) {
  for (const TokenizerData& d : {byte_level_data(), sentencepiece_data()}) {
    auto tok = Tokenizer::create(d);
    EXPECT_TRUE(tok->encode("", false, true).empty());
    EXPECT_EQ(tok->decode({}, false), "");
  }
  auto spm = Tokenizer::create(sentencepiece_data());
  EXPECT_EQ(spm->encode("", true, true), std::vector<int32_t>{1});  // BOS only
}

TEST(Tokenizer, UnknownIdsThrowInvalidArgument) {
  for (const TokenizerData& d : {byte_level_data(), sentencepiece_data()}) {
    auto tok = Tokenizer::create(d);
    EXPECT_THROW(tok->decode({0, tok->vocab_size()}, false), InvalidArgument);
    EXPECT_THROW(tok->decode({-1}, true), InvalidArgument);
    EXPECT_THROW(tok->token_bytes(tok->vocab_size()), InvalidArgument);
    StreamDecoder stream(*tok);
    EXPECT_THROW(stream.push(-5), InvalidArgument);
  }
}

// Arbitrary bytes (invalid UTF-8 included) must survive encode + decode with every pre-tokenizer
// that does not normalize, and with the SentencePiece byte fallback.
TEST(Tokenizer, ArbitraryBytesRoundTrip) {
  const std::string alphabet = std::string("  \t\r\n'sStTdlLrveE019aZ.,!<|>\x85\xA0\xC3\xA9\xE2\x96\x81\xF0\x9F\xE4\xB8\xAD") +
                               std::string(1, '\0');
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::vector<std::string> texts;
  for (int n = 0; n < 300; ++n) {
    std::string t;
    size_t len = next() % 64;
    for (size_t k = 0; k < len; ++k) {
      t.push_back(next() % 3 == 0 ? static_cast<char>(next() & 0xFF) : alphabet[next() % alphabet.size()]);
    }
    texts.push_back(t);
  }
  for (const char* pre : {"gpt2", "smollm", "llama-bpe"}) {
    TokenizerData d = byte_level_data();
    d.pre = pre;
    auto tok = Tokenizer::create(d);
    for (const std::string& t : texts) EXPECT_EQ(tok->decode(tok->encode(t, false, false), false), t) << pre;
  }
  auto spm = Tokenizer::create(sentencepiece_data());
  for (const std::string& t : texts) {
    if (t.find("\xE2\x96\x81") != std::string::npos) continue;  // a literal "▁" decodes as a space
    EXPECT_EQ(spm->decode(spm->encode(t, true, false), true), t);
  }
}

TEST(Tokenizer, ControlTokensParsedOnlyWhenAsked) {
  auto tok = Tokenizer::create(byte_level_data());
  EXPECT_EQ(tok->encode("<|eot|>", false, true), std::vector<int32_t>{256});
  EXPECT_EQ(tok->encode("<|eot|>", false, false).size(), 7u);
  EXPECT_TRUE(tok->is_end_of_generation(256));
  EXPECT_EQ(tok->decode({'a', 256, 'b'}, true), "ab");
  EXPECT_EQ(tok->decode({'a', 256, 'b'}, false), "a<|eot|>b");
}

TEST(Tokenizer, RejectsBadData) {
  TokenizerData d = byte_level_data();
  d.model = "unigram";
  EXPECT_THROW(Tokenizer::create(d), Error);
  d = byte_level_data();
  d.pre = "no-such-pre";
  EXPECT_THROW(Tokenizer::create(d), Error);
  d = byte_level_data();
  d.merges = {"a zz"};  // "zz" is not a token
  EXPECT_THROW(Tokenizer::create(d), Error);
  d = byte_level_data();
  d.token_types.pop_back();
  EXPECT_THROW(Tokenizer::create(d), Error);
  d = byte_level_data();
  d.bos_id = 100000;
  EXPECT_THROW(Tokenizer::create(d), Error);
  d = sentencepiece_data();
  d.tokens[3] = "<0xZZ>";  // a byte token that names no byte
  EXPECT_THROW(Tokenizer::create(d), Error);
}

TEST(Tokenizer, LoadersNameTheBadFile) {
  EXPECT_THROW(load_tokenizer_data("/nonexistent/model.gguf"), ModelFileError);
  std::string dir = ::testing::TempDir() + "/jarvis_bad_tokenizer";
  std::string mkdir = "mkdir -p " + dir;
  ASSERT_EQ(std::system(mkdir.c_str()), 0);
  std::ofstream(dir + "/tokenizer.json") << "{ not json";
  EXPECT_THROW(tokenizer_data_from_hf(dir), ModelFileError);
  std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "Unigram", "vocab": []}})";
  EXPECT_THROW(tokenizer_data_from_hf(dir), ModelFileError);
}

TEST(Unicode, Utf8DecodeFollowsRfc3629) {
  auto decode_one = [](const std::string& s, uint32_t* cp) { return unicode::utf8_decode(s, 0, cp); };
  uint32_t cp;
  EXPECT_EQ(decode_one("\xF0\x9F\x91\x8B", &cp), 4u);
  EXPECT_EQ(cp, 0x1F44Bu);
  for (const char* bad : {"\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\x80",
                          "\xE4\xB8", "\xE4\x41\x41"}) {
    EXPECT_EQ(decode_one(bad, &cp), 1u) << bad;
    EXPECT_EQ(cp, unicode::kInvalidCodePoint);
  }
  EXPECT_EQ(unicode::utf8_complete_prefix("ab\xE4\xB8"), 2u);
  EXPECT_EQ(unicode::utf8_complete_prefix("ab\xE4\xB8\xAD"), 5u);
  EXPECT_EQ(unicode::utf8_complete_prefix("\xF0\x9F\x91"), 0u);
}

TEST(Unicode, PythonStrip) {
  // Python: " \t\u3000x y\u00a0\n".strip() == "x y"; "\u200bx".strip() keeps U+200B (not a space).
  EXPECT_EQ(unicode::python_strip(" \t\xE3\x80\x80x y\xC2\xA0\n"), "x y");
  EXPECT_EQ(unicode::python_strip("\xE2\x80\x8Bx"), "\xE2\x80\x8Bx");
  EXPECT_EQ(unicode::python_strip("\x1c\x1fz\xC2\x85"), "z");  // U+001C, U+001F, U+0085 are Python spaces
  EXPECT_EQ(unicode::python_strip("z\x85"), "z\x85");  // a lone byte 0x85 is not a character
  EXPECT_EQ(unicode::python_strip("   "), "");
}

TEST(ChatTemplate, RejectsUnknownTemplatesAndEmptyChats) {
  EXPECT_THROW(detect_chat_format("{{ messages }}"), Error);
  std::string chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] }}{% endfor %}";
  EXPECT_EQ(detect_chat_format(chatml), ChatFormat::kChatML);
  EXPECT_THROW(apply_chat_template(chatml, {}, true, "", ""), InvalidArgument);
}

}  // namespace
}  // namespace jarvis
