#include "server/connection_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "csrc/util/error.h"
#include "server/api_error.h"

namespace jarvis::server {
namespace {

constexpr int kTickMs = 100;              // deadlines are checked this often
constexpr int kMaxAcceptsPerTick = 1024;  // so a flood of connects cannot starve reading
constexpr double kLingerSeconds = 2.0;
constexpr size_t kLingerBytes = size_t(64) << 20;
constexpr double kAcceptPauseSeconds = 0.1;  // out of file descriptors: retry after this

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// The error code of a refusal by framing, by its status.
const char* framing_code(int status) {
  switch (status) {
    case 411: return "length_required";
    case 413: return "request_too_large";
    case 414: return "uri_too_long";
    case 431: return "headers_too_large";
    case 501: return "unsupported_transfer_encoding";
    default: return "malformed_request";
  }
}

// Best effort: a small answer fits the socket's send buffer; a client that does not take it is
// not waited for.
void send_now(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

void send_error_now(int fd, int status, const std::string& code, const std::string& message) {
  const std::string type = status == 503 ? "service_unavailable" : status == 429 ? "rate_limit_error"
                                                                                 : "invalid_request_error";
  const std::string body = error_body(status, message, type, {}, code);
  send_now(fd, "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                   "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\nConnection: close\r\n\r\n" + body);
}

void hard_close(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// Refused at accept: drop what already arrived first, as closing a socket with unread bytes
// resets it, and a reset can overtake the answer.
void refuse_at_accept(int fd, int status, const std::string& code, const std::string& message) {
  char buf[4096];
  while (::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
  send_error_now(fd, status, code, message);
  ::shutdown(fd, SHUT_WR);
  while (::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
  ::close(fd);
}

std::string peer_address(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buf, sizeof(buf));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

ConnectionFront::ConnectionFront(int listen_fd, const FrontLimits& limits, Dispatch dispatch,
                                 RefusalObserver on_refusal)
    : listen_fd_(listen_fd), limits_(limits), dispatch_(std::move(dispatch)), on_refusal_(std::move(on_refusal)) {
  ::fcntl(listen_fd_, F_SETFL, ::fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    throw Error(std::string("cannot set up the connection front: ") + std::strerror(errno));
  }
  watch(listen_fd_);
  watch(wake_fd_);
}

ConnectionFront::~ConnectionFront() {
  for (auto& [fd, o] : open_) hard_close(fd);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void ConnectionFront::watch(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
}

void ConnectionFront::unwatch(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void ConnectionFront::count_in(const std::string& peer) { ++per_address_[peer]; }

void ConnectionFront::count_out(const std::string& peer) {
  auto it = per_address_.find(peer);
  if (it != per_address_.end() && --it->second <= 0) per_address_.erase(it);
}

void ConnectionFront::begin_drain() {
  draining_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void ConnectionFront::give_back(Connection&& c, bool keep_alive) {
  {
    std::lock_guard<std::mutex> lock(given_mu_);
    given_.emplace_back(std::move(c), keep_alive);
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void ConnectionFront::run(const std::function<bool()>& finished) {
  std::vector<epoll_event> events(256);
  auto last_sweep = Clock::now();
  for (;;) {
    // `finished` first: a worker gives its connection back before it counts as done, so
    // everything given back by then is taken below.
    const bool done = draining_ && finished();
    take_back_given();
    if (done) return;
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), kTickMs);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_fd_) {
        accept_new();
      } else if (fd == wake_fd_) {
        uint64_t count;
        (void)!::read(wake_fd_, &count, sizeof(count));
      } else {
        on_readable(fd);
      }
    }
    const auto now = Clock::now();
    if (accepting_paused_ && now >= resume_accepting_) {
      accepting_paused_ = false;
      watch(listen_fd_);
    }
    if (now - last_sweep >= std::chrono::milliseconds(kTickMs) || draining_) {
      expire(now);
      last_sweep = now;
    }
  }
}

void ConnectionFront::accept_new() {
  for (int i = 0; i < kMaxAcceptsPerTick; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The pending connection stays in the backlog; stop polling for it a moment rather than spin.
        std::fprintf(stderr, "jarvis-serve: accept: %s; pausing accepts for %.1f s\n", std::strerror(errno),
                     kAcceptPauseSeconds);
        unwatch(listen_fd_);
        accepting_paused_ = true;
        resume_accepting_ = Clock::now() + seconds(kAcceptPauseSeconds);
      }
      return;  // EAGAIN: nothing more to accept
    }
    const std::string peer = peer_address(addr);
    const int total = static_cast<int>(open_.size()) + at_workers_;
    if (total >= limits_.max_connections) {
      observe(503);
      refuse_at_accept(fd, 503, "server_overloaded",
                       "server overloaded: " + std::to_string(limits_.max_connections) +
                           " connections are open, retry later");
      continue;
    }
    auto it = per_address_.find(peer);
    if (limits_.max_per_address > 0 && it != per_address_.end() && it->second >= limits_.max_per_address) {
      observe(429);
      refuse_at_accept(fd, 429, "too_many_connections",
                       "too many connections from " + peer + " (at most " +
                           std::to_string(limits_.max_per_address) + "), retry later");
      continue;
    }
    count_in(peer);
    Open& o = open_[fd];
    o.c.fd = fd;
    o.c.peer = peer;
    o.deadline = Clock::now() + seconds(limits_.request_timeout_s);
    o.request_started = true;  // a new connection exists to send a request: the request deadline runs
    watch(fd);
  }
}

void ConnectionFront::on_readable(int fd) {
  auto it = open_.find(fd);
  if (it == open_.end()) return;
  Open& o = it->second;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {  // closed or reset by the client
      close_connection(fd);
      return;
    }
    if (o.phase == Phase::kLingering) {
      o.lingered += static_cast<size_t>(n);
      if (o.lingered > kLingerBytes) {
        close_connection(fd);
        return;
      }
      continue;
    }
    if (!o.request_started) {
      o.request_started = true;
      o.deadline = Clock::now() + seconds(limits_.request_timeout_s);
    }
    o.c.data.append(buf, static_cast<size_t>(n));
    // Framing decides long before this; the bound only keeps one read loop from growing forever.
    if (o.c.data.size() > limits_.framing.max_head_bytes + limits_.framing.max_body_bytes + sizeof(buf)) break;
  }
  if (o.phase == Phase::kReading) advance(o);
}

void ConnectionFront::advance(Open& o) {
  const Framing f = frame_request(o.c.data, limits_.framing);
  switch (f.state) {
    case Framing::State::kIncomplete:
      if (f.expect_continue && !o.sent_continue) {
        send_now(o.c.fd, "HTTP/1.1 100 Continue\r\n\r\n");
        o.sent_continue = true;
      }
      return;
    case Framing::State::kRefused:
      refuse(o, f.status, framing_code(f.status), f.message);
      return;
    case Framing::State::kComplete:
      break;
  }
  const int fd = o.c.fd;
  Connection c = std::move(o.c);
  c.request_begin = f.begin;
  c.request_end = f.end;
  unwatch(fd);
  open_.erase(fd);
  ++at_workers_;
  if (!dispatch_(c)) {
    --at_workers_;
    Open& back = open_[fd];
    back.c = std::move(c);
    watch(fd);
    refuse(back, 503, "server_overloaded", "server overloaded: every HTTP thread is busy and the queue is full");
  }
}

void ConnectionFront::refuse(Open& o, int status, const std::string& code, const std::string& message) {
  observe(status);
  send_error_now(o.c.fd, status, code, message);
  linger(o);
}

void ConnectionFront::linger(Open& o) {
  ::shutdown(o.c.fd, SHUT_WR);
  o.phase = Phase::kLingering;
  o.deadline = Clock::now() + seconds(kLingerSeconds);
  o.c.data.clear();
}

void ConnectionFront::close_connection(int fd) {
  auto it = open_.find(fd);
  if (it == open_.end()) return;
  unwatch(fd);
  count_out(it->second.c.peer);
  hard_close(fd);
  open_.erase(it);
}

void ConnectionFront::take_back_given() {
  std::vector<std::pair<Connection, bool>> given;
  {
    std::lock_guard<std::mutex> lock(given_mu_);
    given.swap(given_);
  }
  for (auto& [c, keep_alive] : given) {
    --at_workers_;
    const int fd = c.fd;
    c.data.erase(0, c.request_end);
    c.request_begin = c.request_end = 0;
    Open& o = open_[fd];
    o.c = std::move(c);
    watch(fd);
    if (!keep_alive) {
      linger(o);
      continue;
    }
    o.request_started = !o.c.data.empty();
    o.deadline = Clock::now() + seconds(o.request_started ? limits_.request_timeout_s : limits_.keep_alive_s);
    if (o.request_started) advance(o);  // a pipelined request already here
  }
}

void ConnectionFront::expire(Clock::time_point now) {
  std::vector<int> timed_out;
  for (auto& [fd, o] : open_) {
    const bool idle = o.phase == Phase::kReading && o.c.data.empty() && !o.request_started;
    if (now >= o.deadline || (draining_ && idle)) timed_out.push_back(fd);
  }
  for (int fd : timed_out) {
    Open& o = open_.at(fd);
    if (o.phase == Phase::kReading && o.request_started && !o.c.data.empty()) {
      observe(408);
      send_error_now(fd, 408, "request_timeout",
                     "the request did not arrive within " + std::to_string(limits_.request_timeout_s) + " s");
    }
    close_connection(fd);
  }
}

}  // namespace jarvis::server
