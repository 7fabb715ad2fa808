// cpp-httplib's server with the connection handling a public endpoint needs: a bounded number of
// connection threads and of connections waiting for one (beyond it: an immediate 503), a deadline
// for reading each whole request (slowloris), idle keep-alive connections closed on shutdown,
// and a way for a handler to learn that its client went away (to cancel its generation).
#pragma once

#include <atomic>
#include <cstddef>
#include <string>

#include <httplib.h>

namespace jarvis::server {

struct HttpLimits {
  int threads = 128;                 // connections served at once (a stream holds one)
  int max_pending = 256;             // accepted connections waiting for a thread; beyond: 503
  double request_timeout_s = 10.0;   // request line, headers and body must all arrive within this
  double keep_alive_s = 5.0;         // idle time allowed between requests on one connection
  int keep_alive_max = 1000;         // requests on one connection
  double write_timeout_s = 10.0;     // a client that reads nothing for this long is dropped
};

class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(const HttpLimits& limits);

  // Binds host:port (port 0: any free port). Throws jarvis::Error when it cannot.
  void bind(const std::string& host, int port);
  int port() const { return port_; }
  // Serves until begin_shutdown(), then returns once every connection has closed.
  void run();
  // Stops accepting; each connection finishes the request it is serving, then closes.
  void begin_shutdown();
  bool shutting_down() const { return shutting_down_.load(); }

  // For handlers, on their connection's thread:
  // false once the client closed or reset its connection.
  static bool client_connected();
  // The request body was not (fully) read: close the connection after this response.
  static void close_after_response();

 private:
  class ConnectionStream;
  class BoundedPool;
  bool process_and_close_socket(socket_t sock) override;
  bool wait_for_request(socket_t sock, double seconds) const;

  HttpLimits limits_;
  int port_ = 0;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace jarvis::server
