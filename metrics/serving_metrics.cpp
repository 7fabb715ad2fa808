#include "metrics/serving_metrics.h"

#include <cmath>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace jarvis::metrics {
namespace {

// Bucket bounds follow vLLM's (so percentiles read the same on a shared dashboard), extended
// downwards because a small model on a GPU answers in under a millisecond per token, and upwards
// because a CPU-only edge node may take minutes for a long prompt.
const prometheus::Histogram::BucketBoundaries kFirstTokenBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5,   5.0,   7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const prometheus::Histogram::BucketBoundaries kPerTokenBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
    0.1,    0.15,  0.2,    0.3,   0.4,    0.5,  0.75,  1.0,  2.5,   5.0,  7.5,  10.0, 20.0,
    40.0,   80.0};
const prometheus::Histogram::BucketBoundaries kRequestBuckets = {
    0.01, 0.05, 0.1,  0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,   5.0,    10.0,  15.0,
    20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const prometheus::Histogram::BucketBoundaries kQueueBuckets = {
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,   0.25,  0.5,   1.0,   2.5,
    5.0,    10.0,  20.0,  40.0, 80.0,  160.0, 320.0, 640.0, 1280.0, 2560.0};

// Reasons the engine reports; created at start so that rate() and the dashboard see a zero
// series before the first request of each kind finishes (Prometheus' advice for known labels).
const char* const kKnownFinishReasons[] = {"stop", "length", "abort", "error"};

}  // namespace

struct ServingMetrics::Impl {
  explicit Impl(const std::string& model)
      : registry(std::make_shared<prometheus::Registry>()), labels{{"model_name", model}} {}

  prometheus::Histogram& histogram(const std::string& name, const std::string& help,
                                   const prometheus::Histogram::BucketBoundaries& buckets) {
    return prometheus::BuildHistogram().Name(name).Help(help).Register(*registry).Add(labels,
                                                                                       buckets);
  }
  prometheus::Counter& counter(const std::string& name, const std::string& help) {
    return prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add(labels);
  }
  prometheus::Gauge& gauge(const std::string& name, const std::string& help) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add(labels);
  }

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Labels labels;

  prometheus::Histogram* time_to_first_token = nullptr;
  prometheus::Histogram* inter_token_latency = nullptr;
  prometheus::Histogram* time_per_output_token = nullptr;
  prometheus::Histogram* e2e_latency = nullptr;
  prometheus::Histogram* queue_time = nullptr;
  prometheus::Counter* prompt_tokens = nullptr;
  prometheus::Counter* generation_tokens = nullptr;
  prometheus::Counter* preemptions = nullptr;
  prometheus::Family<prometheus::Counter>* finished = nullptr;
  prometheus::Gauge* running = nullptr;
  prometheus::Gauge* waiting = nullptr;
  prometheus::Gauge* kv_cache_usage = nullptr;

  // Family::Add hashes the label set on every call; remembering the counters keeps the engine
  // thread's per-request cost to one map lookup.
  std::mutex finished_mutex;
  std::map<std::string, prometheus::Counter*> finished_by_reason;
};

namespace {

// A duration is never negative or NaN when it comes from a steady clock; a caller bug that makes
// one must not poison the histogram's sum (NaN) or land below every bucket.
bool usable(double seconds) { return std::isfinite(seconds); }
double non_negative(double seconds) { return seconds < 0.0 ? 0.0 : seconds; }

}  // namespace

ServingMetrics::ServingMetrics(const std::string& model_name)
    : impl_(std::make_unique<Impl>(model_name)) {
  Impl& m = *impl_;
  m.time_to_first_token = &m.histogram("jarvis:time_to_first_token_seconds",
                                       "Time from request arrival to its first output token.",
                                       kFirstTokenBuckets);
  m.inter_token_latency = &m.histogram("jarvis:inter_token_latency_seconds",
                                       "Time between consecutive output tokens of one request.",
                                       kPerTokenBuckets);
  m.time_per_output_token =
      &m.histogram("jarvis:request_time_per_output_token_seconds",
                   "Per request: (e2e latency - time to first token) / (output tokens - 1).",
                   kPerTokenBuckets);
  m.e2e_latency = &m.histogram("jarvis:e2e_request_latency_seconds",
                               "Time from request arrival to its last output token.",
                               kRequestBuckets);
  m.queue_time = &m.histogram("jarvis:request_queue_time_seconds",
                              "Time a request waited from arrival until first scheduled.",
                              kQueueBuckets);
  m.prompt_tokens = &m.counter("jarvis:prompt_tokens_total", "Prompt tokens processed.");
  m.generation_tokens = &m.counter("jarvis:generation_tokens_total", "Output tokens generated.");
  m.preemptions = &m.counter("jarvis:num_preemptions_total",
                             "Running requests preempted to free KV cache blocks.");
  m.finished = &prometheus::BuildCounter()
                    .Name("jarvis:request_finished_total")
                    .Help("Requests that ended, by finish reason (stop, length, abort, error).")
                    .Register(*m.registry);
  for (const char* reason : kKnownFinishReasons) {
    prometheus::Labels labels = m.labels;
    labels["finished_reason"] = reason;
    m.finished_by_reason[reason] = &m.finished->Add(labels);
  }
  m.running = &m.gauge("jarvis:num_requests_running", "Requests in the running batch.");
  m.waiting = &m.gauge("jarvis:num_requests_waiting", "Requests queued, not yet scheduled.");
  m.kv_cache_usage =
      &m.gauge("jarvis:kv_cache_usage_perc", "Fraction of KV cache blocks in use (0 to 1).");
}

ServingMetrics::~ServingMetrics() = default;

void ServingMetrics::observe_time_to_first_token(double seconds) {
  if (usable(seconds)) impl_->time_to_first_token->Observe(non_negative(seconds));
}
void ServingMetrics::observe_inter_token_latency(double seconds) {
  if (usable(seconds)) impl_->inter_token_latency->Observe(non_negative(seconds));
}
void ServingMetrics::observe_time_per_output_token(double seconds) {
  if (usable(seconds)) impl_->time_per_output_token->Observe(non_negative(seconds));
}
void ServingMetrics::observe_e2e_latency(double seconds) {
  if (usable(seconds)) impl_->e2e_latency->Observe(non_negative(seconds));
}
void ServingMetrics::observe_queue_time(double seconds) {
  if (usable(seconds)) impl_->queue_time->Observe(non_negative(seconds));
}

// Counters only go up: Prometheus treats a decrease as a restart, so negative counts are dropped.
void ServingMetrics::add_prompt_tokens(int64_t n) {
  if (n > 0) impl_->prompt_tokens->Increment(static_cast<double>(n));
}
void ServingMetrics::add_generation_tokens(int64_t n) {
  if (n > 0) impl_->generation_tokens->Increment(static_cast<double>(n));
}

void ServingMetrics::count_request_finished(const std::string& finish_reason) {
  Impl& m = *impl_;
  prometheus::Counter* counter = nullptr;
  {
    std::lock_guard<std::mutex> lock(m.finished_mutex);
    auto it = m.finished_by_reason.find(finish_reason);
    if (it == m.finished_by_reason.end()) {
      prometheus::Labels labels = m.labels;
      labels["finished_reason"] = finish_reason;
      it = m.finished_by_reason.emplace(finish_reason, &m.finished->Add(labels)).first;
    }
    counter = it->second;
  }
  counter->Increment();
}

void ServingMetrics::count_preemption() { impl_->preemptions->Increment(); }

void ServingMetrics::set_requests_running(int n) { impl_->running->Set(n); }
void ServingMetrics::set_requests_waiting(int n) { impl_->waiting->Set(n); }
void ServingMetrics::set_kv_cache_usage(double fraction) {
  if (!usable(fraction)) return;
  impl_->kv_cache_usage->Set(fraction < 0.0 ? 0.0 : (fraction > 1.0 ? 1.0 : fraction));
}

std::string ServingMetrics::render() const {
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

prometheus::Registry& ServingMetrics::registry() { return *impl_->registry; }

}  // namespace jarvis::metrics
