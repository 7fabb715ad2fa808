// The HTTP front's metrics, on the serving metrics' registry (same /metrics endpoint):
//   jarvis:http_requests_total{model_name, route, status}  every answered request
//   jarvis:engine_up{model_name}                           1 while the engine serves, 0 degraded or draining
// Routes are the API's fixed paths ("/v1/completions", "/v1/models/{id}", ...) or "other", so a
// client sending random paths cannot grow the series without bound. Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace prometheus {
class Counter;
class Gauge;
template <typename T> class Family;
class Registry;
}  // namespace prometheus

namespace jarvis::metrics {

class HttpMetrics {
 public:
  HttpMetrics(prometheus::Registry& registry, const std::string& model_name);

  // route: one of the server's route labels; status: the HTTP status answered.
  void count_request(const std::string& route, int status);
  void set_engine_up(bool up);

 private:
  std::string model_name_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Gauge* engine_up_;
  std::mutex mu_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> by_route_status_;
};

}  // namespace jarvis::metrics
