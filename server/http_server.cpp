#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <functional>
#include <memory>

#include "csrc/util/error.h"
#include "server/worker_pool.h"

namespace jarvis::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 4096;  // httplib's compiled-in 5 drops SYNs under a burst of clients
constexpr rlim_t kSpareDescriptors = 256;  // for the model file, pipeline links, logs, ...

// Connections the process can hold open: raises the soft descriptor limit (often 1024) towards
// `wanted` plus spares; if the hard limit is lower, fewer. Running out of descriptors would stop
// accepting for everyone, so the cap must sit below it.
int connection_budget(int wanted) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return wanted;
  const rlim_t need = static_cast<rlim_t>(wanted) + kSpareDescriptors;
  if (lim.rlim_cur < need) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? need : std::min(need, lim.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur >= need) return wanted;
  const int budget = lim.rlim_cur > 2 * kSpareDescriptors ? static_cast<int>(lim.rlim_cur - kSpareDescriptors)
                                                          : static_cast<int>(lim.rlim_cur / 2);
  std::fprintf(stderr, "jarvis-serve: only %llu file descriptors allowed: at most %d connections (not %d)\n",
               static_cast<unsigned long long>(lim.rlim_cur), budget, wanted);
  return budget;
}

struct ConnectionState {
  socket_t sock;
  bool must_close = false;
};
thread_local ConnectionState* t_connection = nullptr;

int millis(double seconds) { return static_cast<int>(std::max(0.0, seconds) * 1000.0); }

// poll() one socket; returns revents (0 on timeout).
short poll_one(socket_t sock, short events, int timeout_ms) {
  pollfd p{sock, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0 ? p.revents : 0;
  }
}

void address_of(socket_t sock, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  const int r = peer ? getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len)
                     : getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len);
  if (r != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

}  // namespace

// httplib's view of one request: reads come from the bytes the front buffered (the whole
// request, nothing past it), writes go to the socket.
class HttpServer::RequestStream : public httplib::Stream {
 public:
  RequestStream(const Connection& c, const HttpLimits& limits)
      : sock_(c.fd), limits_(limits), data_(c.data), pos_(c.request_begin), end_(c.request_end) {}

  bool is_readable() const override { return pos_ < end_; }

  bool is_writable() const override {
    const short r = poll_one(sock_, POLLOUT, millis(limits_.write_timeout_s));
    return (r & POLLOUT) && !(r & (POLLERR | POLLHUP));
  }

  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, end_ - pos_);
    std::copy(data_.data() + pos_, data_.data() + pos_ + n, ptr);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {  // the socket is non-blocking (the front's): wait for room, then send
      if (!is_writable()) return -1;
      const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(sock_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(sock_, false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  socket_t sock_;
  const HttpLimits& limits_;
  const std::string& data_;
  size_t pos_, end_;
};

HttpServer::HttpServer(const HttpLimits& limits) : limits_(limits) {
  set_payload_max_length(limits_.max_body_bytes);
  // Only for the "Keep-Alive: timeout=, max=" header httplib writes; the front enforces both.
  set_keep_alive_max_count(static_cast<size_t>(std::max(1, limits_.keep_alive_max)));
  set_keep_alive_timeout(static_cast<time_t>(std::max(1.0, limits_.keep_alive_s)));
}

HttpServer::~HttpServer() {
  if (svr_sock_ != INVALID_SOCKET) {
    ::close(svr_sock_);
    svr_sock_ = INVALID_SOCKET;
  }
}

void HttpServer::bind(const std::string& host, int port) {
  if (port < 0 || port > 65535) throw InvalidArgument("port must be in [0, 65535], got " + std::to_string(port));
  if (port == 0) {
    port_ = bind_to_any_port(host);
    if (port_ <= 0) throw Error("cannot bind " + host + " to a free port");
  } else {
    if (!bind_to_port(host, port)) throw Error("cannot bind " + host + ":" + std::to_string(port));
    port_ = port;
  }
  ::listen(svr_sock_, kListenBacklog);  // Linux raises the backlog of a listening socket in place
}

void HttpServer::run() {
  WorkerPool pool(limits_.threads, limits_.max_pending);
  FrontLimits fl;
  fl.max_connections = connection_budget(limits_.max_connections);
  fl.max_per_address = limits_.max_per_address;
  fl.request_timeout_s = limits_.request_timeout_s;
  fl.keep_alive_s = limits_.keep_alive_s;
  fl.framing.max_body_bytes = limits_.max_body_bytes;
  {
    std::lock_guard<std::mutex> lock(front_mu_);
    front_ = std::make_unique<ConnectionFront>(svr_sock_, fl, [this, &pool](Connection& c) {
      auto held = std::make_shared<Connection>(std::move(c));
      std::function<void()> job = [this, held] { answer(*held); };
      if (pool.try_submit(job)) return true;
      c = std::move(*held);
      return false;
    }, on_refusal_);
    if (shutting_down_) front_->begin_drain();
  }
  front_->run([&pool] { return pool.quiet(); });
  pool.shutdown();
  {
    std::lock_guard<std::mutex> lock(front_mu_);
    front_.reset();
  }
  ::close(svr_sock_);
  svr_sock_ = INVALID_SOCKET;
}

void HttpServer::begin_shutdown() {
  if (shutting_down_.exchange(true)) return;
  std::lock_guard<std::mutex> lock(front_mu_);
  if (front_) front_->begin_drain();
}

void HttpServer::answer(Connection& c) {
  ConnectionState state{c.fd};
  t_connection = &state;
  RequestStream stream(c, limits_);
  ++c.served;
  const bool last = c.served >= limits_.keep_alive_max || shutting_down_;
  bool parsed = false;
  bool client_closes = false;
  const bool ok = process_request(stream, last, client_closes, [&parsed](httplib::Request& req) {
    parsed = true;
    req.headers.erase("Expect");  // the front already answered "100 Continue" and read the body
  });
  t_connection = nullptr;
  // A request httplib could not parse (the front's framing let it through) is not followed by
  // reading more of the same connection: what comes next could be anything.
  const bool keep_alive = ok && parsed && !client_closes && !last && !state.must_close && !shutting_down_;
  front_->give_back(std::move(c), keep_alive);
}

bool HttpServer::client_connected() {
  if (!t_connection) return true;
  const short r = poll_one(t_connection->sock, POLLRDHUP, 0);
  return !(r & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

void HttpServer::close_after_response() {
  if (t_connection) t_connection->must_close = true;
}

}  // namespace jarvis::server
