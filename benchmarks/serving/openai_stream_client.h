// One streaming (SSE) request to an OpenAI-compatible server, timed chunk by chunk on the client:
// the latencies a user sees, network and HTTP included.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace jarvis::bench {

struct EndpointConfig {
  std::string base_url = "http://127.0.0.1:8000/v1";  // scheme://host:port[/prefix]
  std::string endpoint = "completions";               // "completions" or "chat"
  std::string model;                                  // empty: the first of GET /models
  std::string api_key;
  bool ignore_eos = true;     // vLLM-style extension: output length is exactly max_tokens
  bool include_usage = true;  // stream_options.include_usage: server-side token counts
  double temperature = 0.0;
  double timeout_s = 600;
};

struct RequestResult {
  bool ok = false;
  std::string error;
  double start_s = 0;       // send time, from the run's start
  double ttft_s = 0;        // send to the first chunk carrying a token
  double e2e_s = 0;         // send to the end of the stream
  std::vector<double> itl_s;  // every gap between consecutive token-carrying chunks
  int output_tokens = 0;    // server's usage when it reports one, else token chunks counted
  int prompt_tokens = 0;    // server's usage, 0 when not reported
  bool usage_reported = false;
  std::string text;         // generated text, concatenated
  std::string finish_reason;
  // Sent again on a new connection: the kept-alive one had been closed by the server before
  // any of the response arrived. The timings are those of the attempt the server answered.
  bool resent = false;
};

// Turns a byte stream into SSE `data:` payloads, following the event-stream rules of the HTML
// Living Standard: lines end with LF, CRLF or a lone CR; a blank line ends an event; the event's
// data is its `data` fields joined by newlines; comments (":") and other fields carry nothing.
class SseParser {
 public:
  // Appends bytes; returns the payloads of the events completed by them, in order.
  std::vector<std::string> feed(const char* data, size_t size);
  // At the end of the stream: the last event's payload when the server ended the stream without
  // the blank line that should close it (the standard drops it; a benchmark should not), else
  // nothing. The parser is empty afterwards.
  std::vector<std::string> finish();

 private:
  void take_line(std::string line, std::vector<std::string>* out);

  std::string line_;       // bytes of the line being read
  bool after_cr_ = false;  // the last byte was a CR: an LF right after it ends no second line
  bool first_line_ = true; // a byte-order mark may open the stream
  std::string data_;       // data of the event being read
  bool has_data_ = false;
};

// One per thread (keeps its connection alive between requests). Never throws for a failed
// request: the result says ok = false and why.
//
// A server may close a kept-alive connection whenever it likes (RFC 9112, 9.6); llama.cpp's
// server closes it after every streamed response without saying so. A request written into such
// a connection gets a reset and no response: when that happens to a reused connection, the
// request is sent once more on a new one. Nothing received means the server answered nothing,
// but may not prove it did nothing; for a benchmark's generation requests that is harmless.
class OpenAiStreamClient {
 public:
  explicit OpenAiStreamClient(const EndpointConfig& config);
  ~OpenAiStreamClient();
  OpenAiStreamClient(const OpenAiStreamClient&) = delete;
  OpenAiStreamClient& operator=(const OpenAiStreamClient&) = delete;

  RequestResult send(const std::string& prompt, int max_tokens,
                     std::chrono::steady_clock::time_point run_start);

  // GET {base}/models: the first model id. Throws Error when the server does not answer.
  std::string first_model_id();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jarvis::bench
