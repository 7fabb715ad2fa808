// Request parsing of the HTTP API: UTF-8 and JSON checks, typed fields, OpenAI parameter rules.
// Expected values come from the OpenAI API reference and RFC 3629, not from our own output.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/json_body.h"
#include "server/json_fields.h"
#include "server/openai_request.h"

namespace jarvis::server {
namespace {

using nlohmann::json;

int status_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e.status();
  }
  return 0;
}

std::string param_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e.param();
  }
  return "<no error>";
}

TEST(JsonBody, Utf8ValidationFollowsRfc3629) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 \xE6\x9D\xB1 \xF0\x9F\x9A\x80"));  // é 東 🚀
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));                          // U+10FFFF, the last one
  EXPECT_FALSE(is_valid_utf8("\xFF"));
  EXPECT_FALSE(is_valid_utf8("\x80"));                   // lone continuation byte
  EXPECT_FALSE(is_valid_utf8("\xC3"));                   // truncated
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));               // truncated
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));               // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\xAF"));           // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));           // UTF-16 surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));       // past U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF8\x88\x80\x80\x80"));   // 5-byte form
}

TEST(JsonBody, RefusesWhatIsNotOneObject) {
  EXPECT_EQ(status_of([] { parse_json_body(""); }), 400);
  EXPECT_EQ(status_of([] { parse_json_body("[1]"); }), 400);
  EXPECT_EQ(status_of([] { parse_json_body("{\"a\": 1"); }), 400);
  EXPECT_EQ(status_of([] { parse_json_body("{\"a\": 1e400}"); }), 400);
  EXPECT_EQ(status_of([] { parse_json_body("{\"a\": \"\xff\"}"); }), 400);
  EXPECT_EQ(parse_json_body("{\"a\": [1, 2]}")["a"][1], 2);
  const std::string deep(kMaxJsonDepth + 1, '[');
  EXPECT_EQ(status_of([&] { parse_json_body("{\"a\": " + deep + std::string(deep.size(), ']') + "}"); }), 400);
  const std::string ok(kMaxJsonDepth - 1, '[');
  EXPECT_NO_THROW(parse_json_body("{\"a\": " + ok + std::string(ok.size(), ']') + "}"));
}

TEST(JsonBody, DumpReplacesBrokenUtf8) {
  EXPECT_EQ(dump_json(json{{"t", std::string("a\xC3")}}), "{\"t\":\"a\xEF\xBF\xBD\"}");
}

TEST(JsonFields, IntegersAcceptIntegralFloatsOnly) {
  const json j = json::parse(R"({"a": 3, "b": 3.0, "c": 3.5, "d": true, "e": "3", "f": -1, "g": null,
                                 "h": 18446744073709551615})");
  const JsonFields f(j);
  EXPECT_EQ(f.integer("a", 0, 10), 3);
  EXPECT_EQ(f.integer("b", 0, 10), 3);
  EXPECT_EQ(status_of([&] { f.integer("c", 0, 10); }), 400);
  EXPECT_EQ(status_of([&] { f.integer("d", 0, 10); }), 400);  // JSON true is not a number
  EXPECT_EQ(status_of([&] { f.integer("e", 0, 10); }), 400);
  EXPECT_EQ(status_of([&] { f.integer("f", 0, 10); }), 400);
  EXPECT_EQ(status_of([&] { f.integer("h", 0, 10); }), 400);
  EXPECT_FALSE(f.integer("g", 0, 10).has_value());  // null is absent
  EXPECT_FALSE(f.integer("missing", 0, 10).has_value());
  EXPECT_EQ(param_of([&] { f.number("e", 0, 1); }), "e");
}

TEST(OpenAiRequest, CompletionPromptForms) {
  EXPECT_EQ(parse_completion_request(json::parse(R"({"prompt": "hi"})")).prompts.size(), 1u);
  const auto ids = parse_completion_request(json::parse(R"({"prompt": [1, 2, 3]})"));
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_ids);
  EXPECT_EQ(ids.prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(parse_completion_request(json::parse(R"({"prompt": ["a", "b"]})")).prompts.size(), 2u);
  EXPECT_EQ(parse_completion_request(json::parse(R"({"prompt": [[1], [2, 3]]})")).prompts.size(), 2u);
  EXPECT_EQ(param_of([] { parse_completion_request(json::parse(R"({"prompt": ["a", [1]]})")); }), "prompt");
  EXPECT_EQ(param_of([] { parse_completion_request(json::parse(R"({"prompt": [-1]})")); }), "prompt");
  EXPECT_EQ(param_of([] { parse_completion_request(json::parse(R"({})")); }), "prompt");
  EXPECT_EQ(param_of([] { parse_completion_request(json::parse(R"({"prompt": 5})")); }), "prompt");
}

TEST(OpenAiRequest, CompletionParameters) {
  const auto r = parse_completion_request(json::parse(
      R"({"prompt": "x", "max_tokens": 7, "temperature": 0, "top_p": 0.5, "top_k": -1, "stop": "END",
          "seed": -3, "n": 2, "logprobs": 3, "echo": true, "stream": true,
          "stream_options": {"include_usage": true}, "user": "u"})"));
  EXPECT_EQ(r.params.max_tokens, 7);
  EXPECT_EQ(r.params.options.sampling.temperature, 0.0f);
  EXPECT_EQ(r.params.options.sampling.top_p, 0.5f);
  EXPECT_EQ(r.params.options.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(r.params.options.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.params.n, 2);
  EXPECT_EQ(r.params.logprobs, 3);
  EXPECT_TRUE(r.echo && r.params.stream && r.params.include_usage);
  // OpenAI ranges.
  for (const char* bad : {R"({"prompt": "x", "temperature": -1})", R"({"prompt": "x", "temperature": 2.5})",
                          R"({"prompt": "x", "n": 0})", R"({"prompt": "x", "top_p": 0})",
                          R"({"prompt": "x", "presence_penalty": 2.1})", R"({"prompt": "x", "logprobs": 21})",
                          R"({"prompt": "x", "stream_options": {"include_usage": true}})",
                          R"({"prompt": "x", "max_tokens": 0})", R"({"prompt": "x", "stop": [""]})",
                          R"({"prompt": ["a", "b"], "n": 100})", R"({"prompt": "x", "logit_bias": {"5": 1}})"}) {
    EXPECT_EQ(status_of([&] { parse_completion_request(json::parse(bad)); }), 400) << bad;
  }
  // max_tokens 0 scores a prompt: allowed with echo.
  EXPECT_EQ(parse_completion_request(json::parse(R"({"prompt": "x", "max_tokens": 0, "echo": true})")).params.max_tokens,
            0);
}

TEST(OpenAiRequest, ChatMessages) {
  const auto r = parse_chat_request(json::parse(R"({"messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null}],
      "max_completion_tokens": 5, "max_tokens": 9, "logprobs": true, "top_logprobs": 2})"));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.params.max_tokens, 5);  // max_completion_tokens wins
  EXPECT_EQ(r.params.logprobs, 2);
  EXPECT_EQ(parse_chat_request(json::parse(R"({"messages": [{"role": "user", "content": "x"}]})")).params.logprobs,
            -1);
  EXPECT_EQ(param_of([] { parse_chat_request(json::parse(R"({"messages": [{"role": "bot", "content": "x"}]})")); }),
            "messages[0].role");
  EXPECT_EQ(param_of([] {
              parse_chat_request(json::parse(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 1})"));
            }),
            "top_logprobs");
  EXPECT_EQ(status_of([] {
              parse_chat_request(json::parse(
                  R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"));
            }),
            400);
  EXPECT_EQ(status_of([] { parse_chat_request(json::parse(R"({"messages": [{"role": "user"}]})")); }), 400);
}

TEST(OpenAiRequest, TokenizeShapes) {
  EXPECT_TRUE(parse_tokenize_request(json::parse(R"({"prompt": "x"})")).add_special_tokens);
  const auto chat = parse_tokenize_request(json::parse(R"({"messages": [{"role": "user", "content": "x"}]})"));
  EXPECT_TRUE(chat.is_chat);
  EXPECT_FALSE(chat.add_special_tokens);  // vLLM: the template already has what it needs
  EXPECT_EQ(status_of([] { parse_tokenize_request(json::parse(R"({})")); }), 400);
  EXPECT_EQ(parse_detokenize_request(json::parse(R"({"tokens": [5, 6]})")).tokens, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(status_of([] { parse_detokenize_request(json::parse(R"({"tokens": [1.5]})")); }), 400);
}

// vLLM's extras: implemented (stop_token_ids, include_stop_str_in_output), refused by name unless
// at their default, never silently dropped.
TEST(OpenAiRequest, VllmExtras) {
  const auto r = parse_completion_request(json::parse(
      R"({"prompt": "x", "stop_token_ids": [2, 7], "include_stop_str_in_output": true, "min_tokens": 0,
          "skip_special_tokens": true, "bad_words": [], "allowed_token_ids": null})"));
  EXPECT_EQ(r.params.options.stop_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_TRUE(r.params.options.include_stop_str_in_output);
  const std::pair<const char*, const char*> refused[] = {
      {R"({"prompt": "x", "min_tokens": 2})", "min_tokens"},
      {R"({"prompt": "x", "skip_special_tokens": false})", "skip_special_tokens"},
      {R"({"prompt": "x", "bad_words": ["a"]})", "bad_words"},
      {R"({"prompt": "x", "allowed_token_ids": [1]})", "allowed_token_ids"},
      {R"({"prompt": "x", "guided_regex": "a+"})", "guided_regex"},
      {R"({"prompt": "x", "stop_token_ids": 3})", "stop_token_ids"},
      {R"({"prompt": "x", "stop_token_ids": [-1]})", "stop_token_ids"},
  };
  for (const auto& [body, param] : refused) {
    EXPECT_EQ(param_of([&] { parse_completion_request(json::parse(body)); }), param) << body;
  }
  const char* msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  EXPECT_EQ(param_of([&] { parse_chat_request(json::parse(std::string("{") + msgs + R"(, "echo": true})")); }),
            "echo");
  EXPECT_EQ(param_of([&] {
              parse_chat_request(json::parse(std::string("{") + msgs + R"(, "continue_final_message": true})"));
            }),
            "continue_final_message");
  EXPECT_NO_THROW(parse_chat_request(json::parse(std::string("{") + msgs + R"(, "echo": false})")));
}

TEST(ApiError, OpenAiShape) {
  const json body = json::parse(error_body(bad_request("bad", "n")));
  EXPECT_EQ(body["error"]["message"], "bad");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "n");
  EXPECT_TRUE(json::parse(error_body(404, "x", "invalid_request_error"))["error"]["param"].is_null());
}

}  // namespace
}  // namespace jarvis::server
