#include "server/openai_response.h"

#include "engine/generator.h"
#include "server/json_body.h"

namespace jarvis::server {

using nlohmann::json;

namespace {

// Characters (code points) in UTF-8 text: Python's len(), which clients index the text with.
int64_t count_chars(const std::string& text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

json bytes_json(const std::string& piece) {
  json b = json::array();
  for (unsigned char c : piece) b.push_back(static_cast<int>(c));
  return b;
}

const char* finish_text(const ChoiceState& s) { return openai_finish_reason(s.finish); }

bool is_continuation_byte(unsigned char c) { return (c & 0xC0) == 0x80; }

// A completions logprobs token: its text, or for a token that is only part of a UTF-8 character
// (byte-level BPE splits emoji and CJK), OpenAI's "bytes:\xf0\x9f" spelling of its bytes, so
// no byte is lost to U+FFFD.
std::string completion_token_text(const std::string& piece) {
  if (is_valid_utf8(piece)) return piece;
  static const char* kHex = "0123456789abcdef";
  std::string out = "bytes:";
  for (unsigned char c : piece) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

}  // namespace

json usage_json(int prompt_tokens, int completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string token_piece(const Tokenizer& tok, int32_t id) {
  if (id < 0 || id >= tok.vocab_size()) return {};  // padded vocabulary rows carry no text
  return tok.token_bytes(id);
}

bool is_content_token(const Tokenizer& tok, int32_t id, bool ignore_eos) {
  return ignore_eos || !tok.is_end_of_generation(id);
}

void CompletionLogprobs::add(int32_t token, const json& logprob, const json& top) {
  const std::string piece = token_piece(tok_, token);
  tokens_.push_back(completion_token_text(piece));
  logprobs_.push_back(logprob);
  top_.push_back(top);
  // A token that starts inside a character (after a lead byte) points at that character.
  const bool inside = !piece.empty() && is_continuation_byte(static_cast<unsigned char>(piece[0])) && offset_ > 0;
  offsets_.push_back(inside ? offset_ - 1 : offset_);
  offset_ += count_chars(piece);
}

void CompletionLogprobs::add_prompt(const std::vector<PromptTokenLogprob>& prompt) {
  for (const PromptTokenLogprob& p : prompt) {
    if (!p.logprob) {  // the first prompt token has no logprob: OpenAI gives null for both
      add(p.token, json(), json());
      continue;
    }
    json top = json::object();
    for (size_t i = 0; i < p.top_logprobs.size() && static_cast<int>(i) < top_n_; ++i) {
      top[completion_token_text(token_piece(tok_, p.top_logprobs[i].token))] = p.top_logprobs[i].logprob;
    }
    add(p.token, *p.logprob, top);
  }
}

void CompletionLogprobs::add_generated(const StreamEvent& e) {
  json top = json::object();
  for (size_t i = 0; i < e.top_logprobs.size() && static_cast<int>(i) < top_n_; ++i) {
    top[completion_token_text(token_piece(tok_, e.top_logprobs[i].token))] = e.top_logprobs[i].logprob;
  }
  add(e.token, e.logprob, top);
}

void CompletionLogprobs::skip_text(const std::string& text) { offset_ += count_chars(text); }

json CompletionLogprobs::take() {
  json out = {{"tokens", std::move(tokens_)},
              {"token_logprobs", std::move(logprobs_)},
              {"top_logprobs", std::move(top_)},
              {"text_offset", std::move(offsets_)}};
  tokens_ = json::array();
  logprobs_ = json::array();
  top_ = json::array();
  offsets_ = json::array();
  return out;
}

json chat_logprob_entry(const Tokenizer& tok, const StreamEvent& e, int top_n) {
  const std::string piece = token_piece(tok, e.token);
  json top = json::array();
  for (size_t i = 0; i < e.top_logprobs.size() && static_cast<int>(i) < top_n; ++i) {
    const std::string alt = token_piece(tok, e.top_logprobs[i].token);
    top.push_back({{"token", alt}, {"logprob", e.top_logprobs[i].logprob}, {"bytes", bytes_json(alt)}});
  }
  return {{"token", piece}, {"logprob", e.logprob}, {"bytes", bytes_json(piece)}, {"top_logprobs", top}};
}

json completion_response(const ResponseMeta& meta, const GenerationRun& run, const OutputOptions& out,
                         const Tokenizer& tok) {
  json choices = json::array();
  int completion_tokens = 0;
  for (size_t i = 0; i < run.choices().size(); ++i) {
    const ChoiceState& s = run.choices()[i];
    std::string text = out.echo ? s.prompt_text : std::string();
    json logprobs;  // null unless asked for
    if (out.logprobs >= 0) {
      CompletionLogprobs lp(tok, out.logprobs);
      if (out.echo) {
        if (s.prompt_logprobs.empty()) {
          lp.skip_text(s.prompt_text);
        } else {
          lp.add_prompt(s.prompt_logprobs);
        }
      }
      if (!out.score_only) {
        for (const StreamEvent& e : s.tokens) {
          if (is_content_token(tok, e.token, out.ignore_eos)) lp.add_generated(e);
        }
      }
      logprobs = lp.take();
    }
    if (!out.score_only) {
      text += s.text;
      completion_tokens += s.generated_tokens;
    }
    choices.push_back({{"index", i}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", finish_text(s)}});
  }
  return {{"id", meta.id},
          {"object", "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", choices},
          {"usage", usage_json(run.prompt_tokens(), completion_tokens)}};
}

json chat_response(const ResponseMeta& meta, const GenerationRun& run, const OutputOptions& out,
                   const Tokenizer& tok) {
  json choices = json::array();
  for (size_t i = 0; i < run.choices().size(); ++i) {
    const ChoiceState& s = run.choices()[i];
    json logprobs;
    if (out.logprobs >= 0) {
      json content = json::array();
      for (const StreamEvent& e : s.tokens) {
        if (is_content_token(tok, e.token, out.ignore_eos)) content.push_back(chat_logprob_entry(tok, e, out.logprobs));
      }
      logprobs = {{"content", content}};
    }
    choices.push_back({{"index", i},
                       {"message", {{"role", "assistant"}, {"content", s.text}}},
                       {"logprobs", logprobs},
                       {"finish_reason", finish_text(s)}});
  }
  return {{"id", meta.id},
          {"object", "chat.completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", choices},
          {"usage", usage_json(run.prompt_tokens(), run.completion_tokens())}};
}

json completion_chunk(const ResponseMeta& meta, int index, const std::string& text, json logprobs,
                      const char* finish_reason, bool with_usage) {
  json chunk = {{"id", meta.id},
                {"object", "text_completion"},
                {"created", meta.created},
                {"model", meta.model},
                {"choices", json::array({{{"index", index},
                                          {"text", text},
                                          {"logprobs", std::move(logprobs)},
                                          {"finish_reason", finish_reason ? json(finish_reason) : json()}}})}};
  if (with_usage) chunk["usage"] = nullptr;
  return chunk;
}

json chat_chunk(const ResponseMeta& meta, int index, json delta, json logprobs, const char* finish_reason,
                bool with_usage) {
  json chunk = {{"id", meta.id},
                {"object", "chat.completion.chunk"},
                {"created", meta.created},
                {"model", meta.model},
                {"choices", json::array({{{"index", index},
                                          {"delta", std::move(delta)},
                                          {"logprobs", std::move(logprobs)},
                                          {"finish_reason", finish_reason ? json(finish_reason) : json()}}})}};
  if (with_usage) chunk["usage"] = nullptr;
  return chunk;
}

json usage_chunk(const ResponseMeta& meta, const char* object, int prompt_tokens, int completion_tokens) {
  return {{"id", meta.id},
          {"object", object},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array()},
          {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

std::string sse_event(const json& value) { return "data: " + dump_json(value) + "\n\n"; }

}  // namespace jarvis::server
