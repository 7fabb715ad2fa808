// The accept path and everything a connection does while it is not being answered: one thread,
// one epoll set, every connection non-blocking. It accepts, enforces the connection caps (total
// and per client address), reads each request into a buffer until request_framing.h says it is
// complete (refusing bad framing itself, then closing), enforces the request and keep-alive
// deadlines, and only then hands the connection to a worker thread. The worker answers and gives
// the connection back for its next request. So a client that sends slowly, or not at all, holds
// a buffer and a file descriptor for at most the request deadline, never a thread.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/request_framing.h"

namespace jarvis::server {

struct FrontLimits {
  int max_connections = 4096;       // open connections at most (each is a file descriptor)
  int max_per_address = 512;        // from one client address (0: no cap); beyond: 429 and close
  double request_timeout_s = 10.0;  // a request's line, headers and body must all arrive within this
  double keep_alive_s = 5.0;        // idle time allowed between requests on one connection
  FramingLimits framing;
};

// A connection between the front and a worker. When handed to a worker, bytes
// [request_begin, request_end) of `data` are one complete request.
struct Connection {
  int fd = -1;
  std::string peer;  // the client's address
  std::string data;  // received, not yet answered
  size_t request_begin = 0;
  size_t request_end = 0;
  int served = 0;  // requests answered on it so far
};

class ConnectionFront {
 public:
  // Takes a connection holding a complete request; returns false (leaving it) when no worker can
  // take it, and the front answers 503.
  using Dispatch = std::function<bool(Connection&)>;
  // Told the status of every answer the front gives itself (refusals, timeouts); may be empty.
  using RefusalObserver = std::function<void(int status)>;

  // listen_fd: a bound, listening socket (the front makes it non-blocking; the caller closes it).
  ConnectionFront(int listen_fd, const FrontLimits& limits, Dispatch dispatch, RefusalObserver on_refusal = {});
  ~ConnectionFront();  // closes every connection it still holds
  ConnectionFront(const ConnectionFront&) = delete;
  ConnectionFront& operator=(const ConnectionFront&) = delete;

  // Serves until draining and `finished()` is true (checked every tick).
  void run(const std::function<bool()>& finished);
  // From any thread: idle connections close from now on; new ones are still accepted and read
  // (so /health can say 503 while in-flight requests finish).
  void begin_drain();
  // From a worker, once its response is written: wait for the connection's next request, or close.
  void give_back(Connection&& c, bool keep_alive);

 private:
  using Clock = std::chrono::steady_clock;
  enum class Phase { kReading, kLingering };
  struct Open {
    Connection c;
    Phase phase = Phase::kReading;
    Clock::time_point deadline;
    bool request_started = false;  // bytes of a request have arrived (the request deadline runs)
    bool sent_continue = false;    // "100 Continue" sent for the request being read
    size_t lingered = 0;           // bytes read and dropped while lingering
  };

  void accept_new();
  void on_readable(int fd);
  void advance(Open& o);  // frames what has arrived: dispatch, refuse, or wait for more
  void refuse(Open& o, int status, const std::string& code, const std::string& message);
  void linger(Open& o);  // answered: let the client read it, drop what it still sends, then close
  void close_connection(int fd);
  void observe(int status) {
    if (on_refusal_) on_refusal_(status);
  }
  void take_back_given();
  void expire(Clock::time_point now);
  void watch(int fd);
  void unwatch(int fd);
  void count_in(const std::string& peer);
  void count_out(const std::string& peer);

  const int listen_fd_;
  const FrontLimits limits_;
  Dispatch dispatch_;
  RefusalObserver on_refusal_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: a worker gave a connection back, or draining began
  std::atomic<bool> draining_{false};
  bool accepting_paused_ = false;
  Clock::time_point resume_accepting_;

  std::unordered_map<int, Open> open_;  // connections the front is reading or lingering on
  int at_workers_ = 0;                  // connections a worker holds
  std::unordered_map<std::string, int> per_address_;

  std::mutex given_mu_;
  std::vector<std::pair<Connection, bool>> given_;  // from workers, for the front's thread
};

}  // namespace jarvis::server
