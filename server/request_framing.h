// Where one HTTP/1.1 request ends in the bytes received so far, or why it is refused, decided
// before any handler thread is involved. The connection front (connection_front.h) buffers a
// request until this says it is complete, so a slow client costs a buffer, never a thread.
// Strict on purpose: anything two parsers (ours and a proxy's) could read differently is refused
// (two Content-Lengths, Content-Length with Transfer-Encoding, bare LF line ends, folded headers),
// so no request can hide inside another.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace jarvis::server {

struct FramingLimits {
  size_t max_head_bytes = size_t(64) << 10;  // request line and headers
  size_t max_target_bytes = 8192;            // the request target (path and query)
  size_t max_body_bytes = size_t(1) << 20;   // declared or chunked body
};

struct Framing {
  enum class State { kIncomplete, kComplete, kRefused };
  State state = State::kIncomplete;
  size_t begin = 0;              // empty lines before the request line (RFC 9112 2.2 lets us skip them)
  size_t end = 0;                // kComplete: the request is bytes [begin, end)
  bool expect_continue = false;  // head complete, body still to come, client waits for "100 Continue"
  int status = 0;                // kRefused: the status to answer (then close)
  std::string message;           // kRefused: why, for the error body
};

// Looks at the bytes a connection has received since its last request ended.
Framing frame_request(std::string_view data, const FramingLimits& limits);

}  // namespace jarvis::server
