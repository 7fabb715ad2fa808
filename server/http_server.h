// cpp-httplib's request handling (parsing, routing, responses) behind our own accept path:
// connection_front.h owns every connection while it is idle or still sending (connection caps,
// deadlines, strict framing), and a worker thread (worker_pool.h) only ever holds a connection
// whose whole request has arrived. Also: a way for a handler to learn that its client went away
// (to cancel its generation), and a drain on shutdown that keeps answering (503) while in-flight
// requests finish.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include <httplib.h>

#include "server/connection_front.h"

namespace jarvis::server {

struct HttpLimits {
  int threads = 128;                 // requests answered at once (a stream holds one)
  int max_pending = 256;             // complete requests waiting for a thread; beyond: 503
  int max_connections = 4096;        // open connections; beyond: 503 and close
  int max_per_address = 512;         // open connections from one client address (0: no cap); beyond: 429
  double request_timeout_s = 10.0;   // request line, headers and body must all arrive within this
  double keep_alive_s = 5.0;         // idle time allowed between requests on one connection
  int keep_alive_max = 1000;         // requests on one connection
  double write_timeout_s = 10.0;     // a client that reads nothing for this long is dropped
  size_t max_body_bytes = size_t(1) << 20;  // larger declared or chunked bodies: 413 before reading them
};

class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(const HttpLimits& limits);
  ~HttpServer() override;

  // Binds host:port (port 0: any free port). Throws jarvis::Error when it cannot.
  void bind(const std::string& host, int port);
  int port() const { return port_; }
  // Serves until begin_shutdown() and then until no request is being answered; returns with
  // every connection closed.
  void run();
  // From any thread: every response from now on closes its connection, idle connections close,
  // and run() returns once in-flight requests are answered. New requests are still read and
  // answered (handlers see shutting_down()), so /health can say 503 during the drain.
  void begin_shutdown();
  bool shutting_down() const { return shutting_down_.load(); }

  // Told the status of each answer the connection front gives by itself (refusals, timeouts).
  void set_refusal_observer(ConnectionFront::RefusalObserver observer) { on_refusal_ = std::move(observer); }

  // For handlers, on their connection's thread:
  // false once the client closed or reset its connection.
  static bool client_connected();
  // Close the connection after this response.
  static void close_after_response();

 private:
  class RequestStream;
  void answer(Connection& c);

  HttpLimits limits_;
  int port_ = 0;
  std::atomic<bool> shutting_down_{false};
  ConnectionFront::RefusalObserver on_refusal_;
  std::mutex front_mu_;                     // begin_shutdown() may race run() creating the front
  std::unique_ptr<ConnectionFront> front_;  // while run() runs
};

}  // namespace jarvis::server
