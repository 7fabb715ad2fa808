#include "metrics/http_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace jarvis::metrics {

HttpMetrics::HttpMetrics(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name),
      requests_(&prometheus::BuildCounter()
                     .Name("jarvis:http_requests_total")
                     .Help("HTTP requests answered, by route and status (refusals by the connection front: route "
                           "\"other\").")
                     .Register(registry)),
      engine_up_(&prometheus::BuildGauge()
                      .Name("jarvis:engine_up")
                      .Help("1 while the engine takes requests; 0 once degraded (a pipeline rank died) or draining.")
                      .Register(registry)
                      .Add({{"model_name", model_name}})) {
  engine_up_->Set(1);
}

void HttpMetrics::count_request(const std::string& route, int status) {
  prometheus::Counter* counter = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_pair(route, status);
    auto it = by_route_status_.find(key);
    if (it == by_route_status_.end()) {
      prometheus::Counter& c =
          requests_->Add({{"model_name", model_name_}, {"route", route}, {"status", std::to_string(status)}});
      it = by_route_status_.emplace(std::move(key), &c).first;
    }
    counter = it->second;
  }
  counter->Increment();
}

void HttpMetrics::set_engine_up(bool up) { engine_up_->Set(up ? 1 : 0); }

}  // namespace jarvis::metrics
