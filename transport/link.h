// One point-to-point link between two ranks: ordered, reliable messages made of a small header
// (type, tag, sequence number) plus tensor bytes. Backends: inproc_link.h (threads), ucx/ (between
// processes), shaper.h wraps any of them; nccl/ moves GPU buffers beside a control link.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "transport/transport_error.h"

namespace jarvis::transport {

using Clock = std::chrono::steady_clock;

enum class MessageType : uint16_t {
  kData = 1,       // application payload (hidden states, tokens, control records)
  kPing = 2,       // rtt.h: answered by the peer with kPong carrying the same payload
  kPong = 3,
  kHeartbeat = 4,  // internal to a backend; never returned by recv()
  kClose = 5,      // internal: orderly shutdown, the peer sees LinkBroken("closed by peer")
};

struct Message {
  MessageType type = MessageType::kData;
  uint32_t tag = 0;  // free for the application (micro-batch id, layer, ...)
  uint64_t seq = 0;  // set by the link on send: 0, 1, 2, ... per direction
  std::vector<uint8_t> payload;
};

class Link {
 public:
  virtual ~Link() = default;
  Link() = default;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Sends one message; returns once the bytes are handed over (the buffer may be reused).
  // Throws LinkBroken when the link is down. Safe to call from one thread while another receives.
  virtual void send(MessageType type, uint32_t tag, const void* data, size_t bytes) = 0;

  // The next message in order, or nullopt when none arrived within `timeout`.
  // Throws LinkBroken when the link is (or becomes) down, FrameError on a corrupt frame.
  virtual std::optional<Message> try_recv(std::chrono::nanoseconds timeout) = 0;

  // Human-readable endpoint description for logs and errors.
  virtual std::string describe() const = 0;

  void send(const std::vector<uint8_t>& payload, uint32_t tag = 0) {
    send(MessageType::kData, tag, payload.data(), payload.size());
  }
  // Like try_recv but throws LinkTimeout instead of returning nullopt.
  Message recv(std::chrono::nanoseconds timeout) {
    auto m = try_recv(timeout);
    if (!m) throw LinkTimeout(describe() + ": no message within " +
                              std::to_string(std::chrono::duration<double>(timeout).count()) + " s");
    return std::move(*m);
  }
};

}  // namespace jarvis::transport
