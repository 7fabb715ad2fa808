// TokenStream with the real SmolLM2 tokenizer: expected texts come from the input strings
// themselves (encode a known text, feed its ids back), never from the stream.
#include "engine/token_stream.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "csrc/model/model.h"

namespace jarvis {
namespace {

const Tokenizer& tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    auto model = load_model(std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    return Tokenizer::create(model->tokenizer_data());
  }();
  return *tok;
}

struct Fed {
  std::string text;
  int pushed = 0;
  FinishReason finish = FinishReason::kMaxTokens;
  bool finished = false;
};

Fed feed(const std::vector<int32_t>& ids, const StopConditions& c) {
  TokenStream s(tokenizer(), c);
  Fed out;
  for (int32_t id : ids) {
    SampleResult r;
    r.token = id;
    const StreamEvent e = s.push(r);
    EXPECT_EQ(e.index, out.pushed);
    out.text += e.text;
    ++out.pushed;
    if (s.finished()) break;
  }
  out.finished = s.finished();
  out.finish = s.finish();
  return out;
}

StopConditions conditions(int max_tokens) {
  StopConditions c;
  c.max_tokens = max_tokens;
  c.prompt_tokens = 3;
  c.context_length = 1000;
  return c;
}

TEST(TokenStream, StreamsTheTextAndStopsAtMaxTokens) {
  const std::string text = "Caf\xC3\xA9 au lait, s'il vous pla\xC3\xAEt!";
  const std::vector<int32_t> ids = tokenizer().encode(text, false, false);
  const Fed all = feed(ids, conditions(static_cast<int>(ids.size())));
  EXPECT_EQ(all.text, text);
  EXPECT_TRUE(all.finished);
  EXPECT_EQ(static_cast<int>(all.finish), static_cast<int>(FinishReason::kMaxTokens));
  const Fed two = feed(ids, conditions(2));
  EXPECT_EQ(two.pushed, 2);
  EXPECT_EQ(two.text, tokenizer().decode({ids[0], ids[1]}, true));
}

TEST(TokenStream, StopStringCutsTheTextBeforeIt) {
  const std::vector<int32_t> ids = tokenizer().encode("The cat sat on the mat. Then it slept.", false, false);
  StopConditions c = conditions(100);
  c.stop = {" on the", "slept"};
  const Fed f = feed(ids, c);
  EXPECT_EQ(f.text, "The cat sat");
  EXPECT_EQ(static_cast<int>(f.finish), static_cast<int>(FinishReason::kStopString));
  EXPECT_LT(f.pushed, static_cast<int>(ids.size()));
}

TEST(TokenStream, EndOfGenerationUnlessIgnored) {
  std::vector<int32_t> ids = tokenizer().encode("Yes.", false, false);
  ids.push_back(tokenizer().eos_id());
  ids.push_back(ids[0]);
  const Fed f = feed(ids, conditions(100));
  EXPECT_EQ(f.text, "Yes.");  // the EOS token's text is not content
  EXPECT_EQ(f.pushed, static_cast<int>(ids.size()) - 1);
  EXPECT_EQ(static_cast<int>(f.finish), static_cast<int>(FinishReason::kEndOfGeneration));
  StopConditions c = conditions(static_cast<int>(ids.size()));
  c.ignore_eos = true;
  const Fed g = feed(ids, c);
  EXPECT_EQ(g.pushed, static_cast<int>(ids.size()));
  EXPECT_EQ(static_cast<int>(g.finish), static_cast<int>(FinishReason::kMaxTokens));
}

TEST(TokenStream, ContextFullWhenNoPositionIsLeft) {
  const std::vector<int32_t> ids = tokenizer().encode("one two three four five six", false, false);
  StopConditions c = conditions(100);
  c.prompt_tokens = 10;
  c.context_length = 13;  // room for 3 generated tokens
  const Fed f = feed(ids, c);
  EXPECT_EQ(f.pushed, 3);
  EXPECT_EQ(static_cast<int>(f.finish), static_cast<int>(FinishReason::kContextFull));
  EXPECT_STREQ(openai_finish_reason(FinishReason::kContextFull), "length");
  EXPECT_STREQ(openai_finish_reason(FinishReason::kCancelled), "abort");
}

}  // namespace
}  // namespace jarvis

namespace jarvis {
namespace {

TEST(TokenStream, StopTokenIdsEndLikeEosEvenWithIgnoreEos) {
  const std::string text = "one two three four five";
  const std::vector<int32_t> ids = tokenizer().encode(text, false, false);
  ASSERT_GE(ids.size(), 4u);
  StopConditions c = conditions(100);
  c.ignore_eos = true;
  c.stop_token_ids = {ids[2]};
  const Fed fed = feed(ids, c);
  EXPECT_TRUE(fed.finished);
  EXPECT_EQ(fed.finish, FinishReason::kEndOfGeneration);
  EXPECT_EQ(fed.pushed, 3);
  EXPECT_EQ(fed.text, tokenizer().decode({ids[0], ids[1]}, true));  // the stop token's text is not output
}

TEST(TokenStream, IncludeStopStrKeepsTheStopString) {
  const std::string text = "alpha beta gamma delta";
  const std::vector<int32_t> ids = tokenizer().encode(text, false, false);
  StopConditions c = conditions(100);
  c.stop = {"ta ga"};  // crosses tokens
  EXPECT_EQ(feed(ids, c).text, "alpha be");
  c.include_stop_str = true;
  const Fed fed = feed(ids, c);
  EXPECT_EQ(fed.finish, FinishReason::kStopString);
  EXPECT_EQ(fed.text, "alpha beta ga");
}

}  // namespace
}  // namespace jarvis
