#include "benchmarks/serving/openai_stream_client.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "csrc/util/error.h"

namespace jarvis::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct ParsedUrl {
  std::string origin;  // scheme://host[:port], what httplib::Client takes
  std::string prefix;  // path without a trailing slash, e.g. "/v1"
};

ParsedUrl parse_base_url(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos)
    throw InvalidArgument("base URL '" + url + "' needs a scheme (http:// or https://)");
  const size_t path_start = url.find('/', scheme_end + 3);
  ParsedUrl out;
  out.origin = url.substr(0, path_start);
  out.prefix = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!out.prefix.empty() && out.prefix.back() == '/') out.prefix.pop_back();
  return out;
}

// Whether a chunk's choice stands for a generated token, and its text. Completions carry `text`,
// chat `delta.content`. A token may decode to no text (a special token kept by ignore_eos, half a
// UTF-8 character), and a server that streams token by token still sends its chunk: such an empty
// chunk counts, except chat's role-only first chunk and a closing chunk that only carries
// finish_reason.
bool token_chunk(const nlohmann::json& choice, bool chat, std::string* text) {
  const nlohmann::json* field = nullptr;
  if (chat) {
    auto delta = choice.find("delta");
    if (delta == choice.end() || !delta->is_object()) return false;
    auto content = delta->find("content");
    if (content == delta->end() || !content->is_string()) return false;
    field = &*content;
    if (field->get_ref<const std::string&>().empty() && delta->contains("role")) return false;
  } else {
    auto t = choice.find("text");
    if (t == choice.end() || !t->is_string()) return false;
    field = &*t;
  }
  *text = field->get<std::string>();
  const auto finish = choice.find("finish_reason");
  const bool closing = finish != choice.end() && finish->is_string();
  return !text->empty() || !closing;
}

}  // namespace

std::vector<std::string> SseParser::feed(const char* data, size_t size) {
  buffer_.append(data, size);
  std::vector<std::string> out;
  for (;;) {
    size_t end = buffer_.find("\n\n");
    size_t sep = 2;
    const size_t crlf = buffer_.find("\r\n\r\n");
    if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
      end = crlf;
      sep = 4;
    }
    if (end == std::string::npos) break;
    const std::string event = buffer_.substr(0, end);
    buffer_.erase(0, end + sep);
    // An event's data is its `data:` lines joined by newlines; comments (":") and other fields
    // (event:, id:, retry:) carry nothing we time.
    std::string payload;
    bool has_data = false;
    size_t pos = 0;
    while (pos <= event.size()) {
      size_t nl = event.find('\n', pos);
      if (nl == std::string::npos) nl = event.size();
      std::string line = event.substr(pos, nl - pos);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data:", 0) == 0) {
        std::string value = line.substr(5);
        if (!value.empty() && value[0] == ' ') value.erase(0, 1);
        if (has_data) payload += '\n';
        payload += value;
        has_data = true;
      }
      pos = nl + 1;
    }
    if (has_data) out.push_back(std::move(payload));
  }
  return out;
}

struct OpenAiStreamClient::Impl {
  explicit Impl(const EndpointConfig& c) : config(c), url(parse_base_url(c.base_url)), http(url.origin) {
    const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::duration<double>(c.timeout_s));
    http.set_connection_timeout(std::chrono::seconds(10));
    http.set_read_timeout(timeout);
    http.set_write_timeout(timeout);
    http.set_keep_alive(true);
    // httplib writes headers and body separately: with Nagle's algorithm the body waits for the
    // server's (delayed, up to 40 ms) ACK of the headers, which would be charged to TTFT.
    http.set_tcp_nodelay(true);
    if (!c.api_key.empty()) http.set_bearer_token_auth(c.api_key.c_str());
  }

  EndpointConfig config;
  ParsedUrl url;
  httplib::Client http;
};

OpenAiStreamClient::OpenAiStreamClient(const EndpointConfig& config)
    : impl_(std::make_unique<Impl>(config)) {
  if (config.endpoint != "completions" && config.endpoint != "chat")
    throw InvalidArgument("endpoint must be 'completions' or 'chat', not '" + config.endpoint + "'");
}

OpenAiStreamClient::~OpenAiStreamClient() = default;

std::string OpenAiStreamClient::first_model_id() {
  auto res = impl_->http.Get(impl_->url.prefix + "/models");
  if (!res) throw Error("GET " + impl_->config.base_url + "/models: " + httplib::to_string(res.error()));
  if (res->status != 200)
    throw Error("GET " + impl_->config.base_url + "/models: HTTP " + std::to_string(res->status));
  const auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id"))
    throw Error("GET " + impl_->config.base_url + "/models: no model listed");
  return j["data"][0]["id"].get<std::string>();
}

RequestResult OpenAiStreamClient::send(const std::string& prompt, int max_tokens,
                                       Clock::time_point run_start) {
  const EndpointConfig& c = impl_->config;
  const bool chat = c.endpoint == "chat";
  nlohmann::json body = {{"model", c.model}, {"max_tokens", max_tokens}, {"stream", true},
                         {"temperature", c.temperature}};
  if (chat)
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", prompt}}});
  else
    body["prompt"] = prompt;
  if (c.ignore_eos) body["ignore_eos"] = true;
  if (c.include_usage) body["stream_options"] = {{"include_usage", true}};

  httplib::Request req;
  req.method = "POST";
  req.path = impl_->url.prefix + (chat ? "/chat/completions" : "/completions");
  req.headers = {{"Accept", "text/event-stream"}};
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");

  RequestResult r;
  SseParser parser;
  int status = 0;
  int text_chunks = 0;  // chunks that stand for tokens (see token_chunk)
  bool done = false;
  std::string error_body;
  Clock::time_point last_chunk;
  const Clock::time_point start = Clock::now();
  r.start_s = seconds_between(run_start, start);

  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const Clock::time_point now = Clock::now();
    if (status != 200) {
      if (error_body.size() < 2000) error_body.append(data, size);
      return true;
    }
    for (const std::string& payload : parser.feed(data, size)) {
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      const auto j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        r.error = "unparsable SSE data: " + payload.substr(0, 200);
        return false;
      }
      if (j.contains("error")) {
        r.error = "server error in stream: " + j["error"].dump().substr(0, 300);
        return false;
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        const auto& u = j["usage"];
        r.output_tokens = u.value("completion_tokens", 0);
        r.prompt_tokens = u.value("prompt_tokens", 0);
        r.usage_reported = true;
      }
      if (!j.contains("choices") || !j["choices"].is_array()) continue;
      for (const auto& choice : j["choices"]) {
        if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
          r.finish_reason = choice["finish_reason"].get<std::string>();
        std::string text;
        if (!token_chunk(choice, chat, &text)) continue;
        if (text_chunks == 0)
          r.ttft_s = seconds_between(start, now);
        else
          r.itl_s.push_back(seconds_between(last_chunk, now));
        last_chunk = now;
        ++text_chunks;
        r.text += text;
      }
    }
    return true;
  };

  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = impl_->http.send(req, res, err);
  r.e2e_s = seconds_between(start, Clock::now());
  if (!r.error.empty()) return r;
  if (!sent) {
    r.error = "HTTP " + httplib::to_string(err);
    return r;
  }
  if (status != 200) {
    r.error = "HTTP " + std::to_string(status) + ": " + error_body.substr(0, 300);
    return r;
  }
  if (!done) {
    r.error = "stream ended without [DONE]";
    return r;
  }
  if (text_chunks == 0) {
    r.error = "no token in the stream";
    return r;
  }
  if (!r.usage_reported) r.output_tokens = text_chunks;
  r.ok = true;
  return r;
}

}  // namespace jarvis::bench
