#include "transport/ucx/bootstrap_socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "transport/transport_error.h"

namespace jarvis::transport {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

sockaddr_in resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.empty() ? "0.0.0.0" : host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) throw LinkSpecError("cannot resolve host '" + host + "': " + gai_strerror(rc));
  sockaddr_in addr{};
  std::memcpy(&addr, res->ai_addr, sizeof(addr));
  freeaddrinfo(res);
  addr.sin_port = htons(port);
  return addr;
}

int remaining_ms(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on fd; false on timeout.
bool wait_fd(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) throw LinkBroken(sys_error("poll"));
  }
}

}  // namespace

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Socket tcp_listen(const std::string& host, uint16_t port) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.fd() < 0) throw TransportError(sys_error("socket"));
  int one = 1;
  ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = resolve(host, port);
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw TransportError(sys_error("bind " + host + ":" + std::to_string(port)));
  if (::listen(s.fd(), 16) != 0) throw TransportError(sys_error("listen"));
  return s;
}

uint16_t bound_port(const Socket& s) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) throw TransportError(sys_error("getsockname"));
  return ntohs(addr.sin_port);
}

Socket tcp_accept(const Socket& listener, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    if (!wait_fd(listener.fd(), POLLIN, deadline)) throw LinkTimeout("accept: no peer connected in time");
    const int fd = ::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return Socket(fd);
    if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) throw LinkBroken(sys_error("accept"));
  }
}

Socket tcp_connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  const sockaddr_in addr = resolve(host, port);
  for (;;) {
    Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.fd() < 0) throw TransportError(sys_error("socket"));
    if (::connect(s.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return s;
    const int err = errno;
    // The peer may not be listening yet: retry refused connections until the deadline.
    if ((err != ECONNREFUSED && err != EINTR) || SteadyClock::now() >= deadline)
      throw LinkBroken("connect " + host + ":" + std::to_string(port) + ": " + std::strerror(err));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void send_all(const Socket& s, const void* data, size_t bytes, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  const auto* p = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    if (!wait_fd(s.fd(), POLLOUT, deadline)) throw LinkTimeout("bootstrap send timed out");
    const ssize_t n = ::send(s.fd(), p, bytes, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw LinkBroken(sys_error("bootstrap send"));
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void recv_all(const Socket& s, void* data, size_t bytes, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto* p = static_cast<uint8_t*>(data);
  while (bytes > 0) {
    if (!wait_fd(s.fd(), POLLIN, deadline)) throw LinkTimeout("bootstrap receive timed out");
    const ssize_t n = ::recv(s.fd(), p, bytes, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) throw LinkBroken("bootstrap peer closed the connection");
    if (n < 0) throw LinkBroken(sys_error("bootstrap receive"));
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

}  // namespace jarvis::transport
