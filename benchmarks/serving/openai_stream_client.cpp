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
  std::vector<std::string> out;
  for (size_t i = 0; i < size; ++i) {
    const char c = data[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;  // CRLF: the line ended at the CR
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      take_line(std::move(line_), &out);
      line_.clear();
    } else {
      line_ += c;
    }
  }
  return out;
}

std::vector<std::string> SseParser::finish() {
  std::vector<std::string> out;
  if (!line_.empty()) take_line(std::move(line_), &out);
  take_line(std::string(), &out);  // the blank line the stream lacked, if it did
  *this = SseParser();
  return out;
}

void SseParser::take_line(std::string line, std::vector<std::string>* out) {
  if (first_line_) {
    first_line_ = false;
    static const std::string kBom = "\xEF\xBB\xBF";
    if (line.compare(0, kBom.size(), kBom) == 0) line.erase(0, kBom.size());
  }
  if (line.empty()) {  // dispatch
    if (has_data_) out->push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line[0] == ':') return;  // comment (llama.cpp's server pings with one)
  const size_t colon = line.find(':');
  if (line.compare(0, colon, "data") != 0) return;  // event:, id:, retry: carry nothing we time
  std::string value = colon == std::string::npos ? std::string() : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  if (has_data_) data_ += '\n';
  data_ += value;
  has_data_ = true;
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

  // One try of a request on the current connection (a new one when httplib has none open).
  struct Attempt {
    RequestResult result;
    int status = 0;  // HTTP status; 0 when no status line arrived
    httplib::Error http_error = httplib::Error::Success;
    bool nothing_received = false;  // failed before any byte of a response
  };

  bool chat() const { return config.endpoint == "chat"; }
  std::string request_body(const std::string& prompt, int max_tokens) const;
  Attempt attempt(const std::string& body, Clock::time_point run_start);

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

std::string OpenAiStreamClient::Impl::request_body(const std::string& prompt, int max_tokens) const {
  nlohmann::json body = {{"model", config.model}, {"max_tokens", max_tokens}, {"stream", true},
                         {"temperature", config.temperature}};
  if (chat())
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", prompt}}});
  else
    body["prompt"] = prompt;
  if (config.ignore_eos) body["ignore_eos"] = true;
  if (config.include_usage) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

OpenAiStreamClient::Impl::Attempt OpenAiStreamClient::Impl::attempt(const std::string& body,
                                                                    Clock::time_point run_start) {
  httplib::Request req;
  req.method = "POST";
  req.path = url.prefix + (chat() ? "/chat/completions" : "/completions");
  req.headers = {{"Accept", "text/event-stream"}};
  req.body = body;
  req.set_header("Content-Type", "application/json");

  Attempt a;
  RequestResult& r = a.result;
  SseParser parser;
  int text_chunks = 0;  // chunks that stand for tokens (see token_chunk)
  bool done = false;
  std::string error_body;
  Clock::time_point last_chunk;
  const Clock::time_point start = Clock::now();
  r.start_s = seconds_between(run_start, start);

  // Returns false (cancelling the request) on a payload that is not a chunk of a completion.
  auto take_payload = [&](const std::string& payload, Clock::time_point now) {
    if (payload == "[DONE]") {
      done = true;
      return true;
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
    if (!j.contains("choices") || !j["choices"].is_array()) return true;
    for (const auto& choice : j["choices"]) {
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
        r.finish_reason = choice["finish_reason"].get<std::string>();
      std::string text;
      if (!token_chunk(choice, chat(), &text)) continue;
      if (text_chunks == 0)
        r.ttft_s = seconds_between(start, now);
      else
        r.itl_s.push_back(seconds_between(last_chunk, now));
      last_chunk = now;
      ++text_chunks;
      r.text += text;
    }
    return true;
  };

  req.response_handler = [&](const httplib::Response& res) {
    a.status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const Clock::time_point now = Clock::now();
    if (a.status != 200) {
      if (error_body.size() < 2000) error_body.append(data, size);
      return true;
    }
    for (const std::string& payload : parser.feed(data, size))
      if (!take_payload(payload, now)) return false;
    return true;
  };

  httplib::Response res;
  const bool sent = http.send(req, res, a.http_error);
  const Clock::time_point end = Clock::now();
  r.e2e_s = seconds_between(start, end);
  if (!r.error.empty()) return a;
  if (!sent) {
    // No status line: the server answered nothing. Within the timeout, that is a closed or reset
    // connection, not a slow server.
    a.nothing_received = a.status == 0 && r.e2e_s < config.timeout_s &&
                         (a.http_error == httplib::Error::Read || a.http_error == httplib::Error::Write);
    r.error = "HTTP " + httplib::to_string(a.http_error);
    return a;
  }
  if (a.status != 200) {
    r.error = "HTTP " + std::to_string(a.status) + ": " + error_body.substr(0, 300);
    return a;
  }
  for (const std::string& payload : parser.finish())
    if (!take_payload(payload, end)) return a;
  if (!done) {
    r.error = "stream ended without [DONE]";
    return a;
  }
  if (text_chunks == 0) {
    r.error = "no token in the stream";
    return a;
  }
  if (!r.usage_reported) r.output_tokens = text_chunks;
  r.ok = true;
  return a;
}

RequestResult OpenAiStreamClient::send(const std::string& prompt, int max_tokens,
                                       Clock::time_point run_start) {
  const std::string body = impl_->request_body(prompt, max_tokens);
  const bool reused = impl_->http.is_socket_open() > 0;
  Impl::Attempt a = impl_->attempt(body, run_start);
  if (reused && a.nothing_received) {
    // httplib closed the dead socket; this attempt connects anew.
    a = impl_->attempt(body, run_start);
    a.result.resent = true;
  }
  return std::move(a.result);
}

}  // namespace jarvis::bench
