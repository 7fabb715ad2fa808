// Typed errors of the transport layer. transport/ depends on nothing of ours, so these derive from
// std::runtime_error directly; callers catch TransportError (or the narrower kinds) and never hang.
#pragma once

#include <stdexcept>
#include <string>

namespace jarvis::transport {

class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The link is gone: peer closed or died, socket reset, heartbeats missing past the timeout, or a
// protocol violation made the stream unusable. Every later call on the link throws it again.
class LinkBroken : public TransportError {
 public:
  using TransportError::TransportError;
};

// A frame failed its checks (magic, version, length, checksum, sequence number).
class FrameError : public TransportError {
 public:
  using TransportError::TransportError;
};

// recv() with a deadline found no message in time; the link itself is still healthy.
class LinkTimeout : public TransportError {
 public:
  using TransportError::TransportError;
};

// A link specification (--link-delay, --link-bandwidth, ...) or an option that cannot be used.
class LinkSpecError : public TransportError {
 public:
  using TransportError::TransportError;
};

}  // namespace jarvis::transport
