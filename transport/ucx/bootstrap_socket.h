// Plain TCP sockets for bootstrapping UCX links: the two ends swap UCX worker addresses over this
// socket, then keep it open as a liveness signal (a killed peer's kernel closes it at once).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace jarvis::transport {

// Owns a file descriptor; closes it on destruction.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& o) noexcept : fd_(o.release()) {}
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

// Listens on host:port (port 0 picks a free one; see bound_port()).
Socket tcp_listen(const std::string& host, uint16_t port);
uint16_t bound_port(const Socket& s);
// Waits up to `timeout` for a connection; throws LinkTimeout.
Socket tcp_accept(const Socket& listener, std::chrono::milliseconds timeout);
// Connects, retrying while the peer is not listening yet, up to `timeout`; throws LinkBroken.
Socket tcp_connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout);
// Whole-buffer transfers with a deadline; throw LinkBroken on EOF/error, LinkTimeout on timeout.
void send_all(const Socket& s, const void* data, size_t bytes, std::chrono::milliseconds timeout);
void recv_all(const Socket& s, void* data, size_t bytes, std::chrono::milliseconds timeout);

}  // namespace jarvis::transport
