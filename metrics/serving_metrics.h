// The serving metrics of the placement thesis (TTFT, ITL, TPOT, throughput) and the queue/KV
// gauges, exported in Prometheus text format under the names vLLM users already query, with a
// `jarvis:` prefix (jarvis:time_to_first_token_seconds, ...); every metric is listed in
// metrics/README.md. Thread-safe: the engine thread records, the HTTP thread renders.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace prometheus { class Registry; }

namespace jarvis::metrics {

class ServingMetrics {
 public:
  explicit ServingMetrics(const std::string& model_name);
  ~ServingMetrics();

  // Per request, in seconds.
  void observe_time_to_first_token(double seconds);
  void observe_inter_token_latency(double seconds);    // between consecutive tokens of a stream
  void observe_time_per_output_token(double seconds);  // (e2e - ttft) / (generated - 1)
  void observe_e2e_latency(double seconds);
  void observe_queue_time(double seconds);             // arrival to first scheduled
  // Counters.
  void add_prompt_tokens(int64_t n);
  void add_generation_tokens(int64_t n);
  // jarvis:request_finished_total{finished_reason}: "stop", "length", "abort", "error".
  void count_request_finished(const std::string& finish_reason);
  void count_preemption();
  // Gauges, set by the engine after every step.
  void set_requests_running(int n);
  void set_requests_waiting(int n);
  void set_kv_cache_usage(double fraction);  // [0, 1]

  // Prometheus text exposition (format 0.0.4) of everything registered.
  std::string render() const;
  // For later metric families (per rank, per link) that share the endpoint.
  prometheus::Registry& registry();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jarvis::metrics
