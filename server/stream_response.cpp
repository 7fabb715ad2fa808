#include "server/stream_response.h"

#include <chrono>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/http_server.h"

namespace jarvis::server {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kPollInterval{50};

struct StreamState {
  std::unique_ptr<GenerationRun> run;
  ResponseMeta meta;
  OutputOptions out;
  bool chat = false;
  bool include_usage = false;
  const Tokenizer* tok = nullptr;
  bool started = false;
  std::vector<bool> echoed;
  std::vector<CompletionLogprobs> logprobs;  // completions: one per choice (offsets run on)

  // SSE events for one update of one choice.
  void events_for(int c, const RequestUpdate& u, std::string& sse) {
    const ChoiceState& s = run->choices()[static_cast<size_t>(c)];
    const bool want_lp = out.logprobs >= 0;
    const bool failed = u.finished && !u.error.empty();
    const char* finish = u.finished && !failed ? openai_finish_reason(u.finish) : nullptr;
    std::string text;
    if (chat) {
      json content = json::array();
      for (const StreamEvent& e : u.tokens) {
        text += e.text;
        if (want_lp && is_content_token(*tok, e.token, out.ignore_eos)) {
          content.push_back(chat_logprob_entry(*tok, e, out.logprobs));
        }
      }
      if (!text.empty() || !content.empty()) {
        sse += sse_event(chat_chunk(meta, c, {{"content", text}},
                                    want_lp ? json{{"content", content}} : json(), nullptr, include_usage));
      }
      if (finish) sse += sse_event(chat_chunk(meta, c, json::object(), json(), finish, include_usage));
    } else {
      CompletionLogprobs& lp = logprobs[static_cast<size_t>(c)];
      if (out.echo && !echoed[static_cast<size_t>(c)]) {
        echoed[static_cast<size_t>(c)] = true;
        text += s.prompt_text;
        if (want_lp) {
          if (u.prompt_logprobs.empty()) lp.skip_text(s.prompt_text);
          else lp.add_prompt(u.prompt_logprobs);
        }
      }
      if (!out.score_only) {
        for (const StreamEvent& e : u.tokens) {
          text += e.text;
          if (want_lp && is_content_token(*tok, e.token, out.ignore_eos)) lp.add_generated(e);
        }
      }
      json lp_json = want_lp && !lp.empty() ? lp.take() : json();
      if (!text.empty() || !lp_json.is_null() || finish) {
        sse += sse_event(completion_chunk(meta, c, text, std::move(lp_json), finish, include_usage));
      }
    }
    if (failed) {
      sse += sse_event(json::parse(error_body(500, "generation failed: " + u.error, "internal_error", {},
                                              "engine_error")));
    }
  }

  // One call of httplib's content provider: what arrived since the last call.
  bool step(httplib::DataSink& sink) {
    std::string sse;
    if (!started) {
      started = true;
      if (chat) {
        for (size_t c = 0; c < run->choices().size(); ++c) {
          sse += sse_event(chat_chunk(meta, static_cast<int>(c), {{"role", "assistant"}, {"content", ""}}, json(),
                                      nullptr, include_usage));
        }
      }
    }
    for (const auto& [choice, update] : run->poll(kPollInterval)) events_for(choice, update, sse);
    const bool finished = run->all_finished();
    if (finished) {
      if (include_usage) {
        sse += sse_event(usage_chunk(meta, chat ? "chat.completion.chunk" : "text_completion", run->prompt_tokens(),
                                     out.score_only ? 0 : run->completion_tokens()));
      }
      sse += "data: [DONE]\n\n";
    }
    if (!sse.empty() && !sink.write(sse.data(), sse.size())) return false;
    if (finished) {
      sink.done();
      return true;
    }
    return HttpServer::client_connected();  // false: httplib drops the connection, we cancel
  }
};

}  // namespace

void start_stream(httplib::Response& res, std::unique_ptr<GenerationRun> run, const ResponseMeta& meta,
                  const OutputOptions& out, bool chat, bool include_usage, const Tokenizer& tok) {
  auto state = std::make_shared<StreamState>();
  const size_t n = run->choices().size();
  state->run = std::move(run);
  state->meta = meta;
  state->out = out;
  state->chat = chat;
  state->include_usage = include_usage;
  state->tok = &tok;
  state->echoed.assign(n, false);
  for (size_t i = 0; i < n; ++i) state->logprobs.emplace_back(tok, out.logprobs);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state](size_t, httplib::DataSink& sink) {
        try {
          return state->step(sink);
        } catch (...) {
          return false;  // never let an exception out of httplib's writer; the run is cancelled
        }
      },
      [state](bool) { state->run.reset(); });  // cancels unfinished choices right away
}

}  // namespace jarvis::server
