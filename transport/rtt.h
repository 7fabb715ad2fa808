// Round-trip measurement over any link, for per-link metrics: one end pings, the other answers.
// The answering end must be receiving (answer_ping() from its message loop, or echo_pings()).
#pragma once

#include <chrono>
#include <cstddef>

#include "transport/link.h"

namespace jarvis::transport {

struct RttStats {
  size_t samples = 0;
  std::chrono::nanoseconds min{0}, median{0}, mean{0}, p99{0}, max{0};
};

// Sends `count` pings of `bytes` payload one after another and times each reply. Messages other
// than the matching kPong are a protocol error (FrameError); a missing reply is LinkTimeout.
RttStats measure_rtt(Link& link, size_t bytes, size_t count, std::chrono::nanoseconds timeout = std::chrono::seconds(5));

// If `m` is a ping, sends the pong back and returns true.
bool answer_ping(Link& link, const Message& m);

// Answers `count` pings (ignoring nothing: any other message is a FrameError).
void echo_pings(Link& link, size_t count, std::chrono::nanoseconds timeout = std::chrono::seconds(5));

}  // namespace jarvis::transport
