#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "csrc/util/error.h"
#include "server/api_error.h"

namespace jarvis::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 1024;  // httplib's compiled-in 5 drops SYNs under a burst of clients
// Unread request bytes drained before closing, so the client reads our answer instead of a reset.
constexpr size_t kLingerBytes = size_t(64) << 20;
constexpr double kLingerSeconds = 2.0;
constexpr int kShutdownPollMs = 100;

struct ConnectionState {
  socket_t sock;
  bool must_close = false;
};
thread_local ConnectionState* t_connection = nullptr;
thread_local bool t_reject = false;  // set while the accept thread refuses an overflow connection

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

void send_all(socket_t sock, const std::string& data, int timeout_ms) {
  size_t off = 0;
  while (off < data.size()) {
    if (!(poll_one(sock, POLLOUT, timeout_ms) & POLLOUT)) return;
    const ssize_t n = ::send(sock, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Reads and drops what the client still sends, for a bounded time and amount, then closes.
void linger_close(socket_t sock) {
  ::shutdown(sock, SHUT_WR);
  const auto deadline = Clock::now() + std::chrono::duration<double>(kLingerSeconds);
  size_t drained = 0;
  char buf[16384];
  while (drained < kLingerBytes) {
    const auto left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0 || !(poll_one(sock, POLLIN, millis(left)) & (POLLIN | POLLHUP | POLLERR))) break;
    const ssize_t n = ::recv(sock, buf, sizeof(buf), 0);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
}

}  // namespace

// httplib's socket stream, with one deadline for reading the whole request.
class HttpServer::ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(socket_t sock, const HttpLimits& limits) : sock_(sock), limits_(limits) {}

  void start_request() {
    deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(limits_.request_timeout_s));
  }

  bool is_readable() const override {
    const double left = std::chrono::duration<double>(deadline_ - Clock::now()).count();
    if (left <= 0) return false;
    return poll_one(sock_, POLLIN, millis(left)) & (POLLIN | POLLHUP | POLLERR);
  }

  bool is_writable() const override {
    const short r = poll_one(sock_, POLLOUT, millis(limits_.write_timeout_s));
    return (r & POLLOUT) && !(r & (POLLERR | POLLHUP));
  }

  ssize_t read(char* ptr, size_t size) override {
    if (!is_readable()) return -1;
    for (;;) {
      const ssize_t n = ::recv(sock_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    for (;;) {
      const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(sock_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(sock_, false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  socket_t sock_;
  const HttpLimits& limits_;
  Clock::time_point deadline_ = Clock::now();
};

// A fixed set of connection threads and a bounded queue of accepted connections. Past the
// bound the connection is answered 503 right away on the accepting thread.
class HttpServer::BoundedPool : public httplib::TaskQueue {
 public:
  BoundedPool(int threads, int max_pending) : max_pending_(static_cast<size_t>(std::max(0, max_pending))) {
    for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { work(); });
  }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (jobs_.size() < max_pending_ || idle_ > jobs_.size()) {
        jobs_.push_back(std::move(fn));
        cv_.notify_one();
        return;
      }
    }
    t_reject = true;
    fn();  // process_and_close_socket sees t_reject: a 503 and close, no reading
    t_reject = false;
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ++idle_;
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        --idle_;
        if (jobs_.empty()) return;  // stop_ with nothing left
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
    }
  }

  size_t max_pending_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t idle_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

HttpServer::HttpServer(const HttpLimits& limits) : limits_(limits) {
  new_task_queue = [this] { return new BoundedPool(limits_.threads, limits_.max_pending); };
  set_keep_alive_max_count(static_cast<size_t>(std::max(1, limits_.keep_alive_max)));
  set_keep_alive_timeout(static_cast<time_t>(std::max(1.0, limits_.keep_alive_s)));
  set_read_timeout(static_cast<time_t>(std::max(1.0, limits_.request_timeout_s)));
  set_write_timeout(static_cast<time_t>(std::max(1.0, limits_.write_timeout_s)));
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

void HttpServer::run() { listen_after_bind(); }

void HttpServer::begin_shutdown() {
  if (shutting_down_.exchange(true)) return;
  // Wakes the accept loop with an error: httplib closes the socket and joins the connection
  // threads, which finish their current request first. (httplib's own stop() would also end
  // streams that are still being written.)
  ::shutdown(svr_sock_, SHUT_RDWR);
}

bool HttpServer::client_connected() {
  if (!t_connection) return true;
  const short r = poll_one(t_connection->sock, POLLRDHUP, 0);
  return !(r & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

void HttpServer::close_after_response() {
  if (t_connection) t_connection->must_close = true;
}

bool HttpServer::wait_for_request(socket_t sock, double seconds) const {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    const short r = poll_one(sock, POLLIN, std::min(kShutdownPollMs, millis(left) + 1));
    if (r & (POLLIN | POLLHUP | POLLERR)) return true;
    if (shutting_down_) return false;  // an idle keep-alive connection: nothing to finish
  }
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  ConnectionState state{sock};
  t_connection = &state;
  if (t_reject || shutting_down_) {
    const std::string body = t_reject ? error_body(503, "server overloaded: too many connections, retry later",
                                                   "service_unavailable", {}, "server_overloaded")
                                      : error_body(503, "the server is shutting down", "service_unavailable", {},
                                                   "shutting_down");
    send_all(sock,
             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body,
             100);
  } else {
    ConnectionStream stream(sock, limits_);
    for (int served = 0; served < limits_.keep_alive_max; ++served) {
      if (!wait_for_request(sock, served == 0 ? limits_.request_timeout_s : limits_.keep_alive_s)) break;
      stream.start_request();
      const bool last = served + 1 == limits_.keep_alive_max || shutting_down_;
      bool closed = false;
      const bool ok = process_request(stream, last, closed, nullptr);
      if (!ok || closed || last || state.must_close) break;
    }
    if (state.must_close) linger_close(sock);
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  t_connection = nullptr;
  return true;
}

}  // namespace jarvis::server
