// Per-rank and per-link metrics of a pipeline ring, exported by rank 0 beside the serving metrics
// (same registry, same /metrics): stage busy and idle time, the idle (bubble) fraction, data bytes
// and messages per link and direction, and link round-trip times. Every metric is listed in
// metrics/README.md. Rank 0 learns the workers' counters every second or so (engine/pipeline/
// ring_stats.h) and hands them to update(); the counters here follow those cumulative values.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
template <typename T>
class Family;
}  // namespace prometheus

namespace jarvis::metrics {

// One rank's cumulative counters (see StageRankStats in engine/pipeline/stage_message.h).
struct RankSample {
  int rank = 0;   // ring position, 0 = rank 0
  int ranks = 0;  // ring size: the output link goes to (rank + 1) % ranks
  double busy_seconds = 0, wall_seconds = 0;
  uint64_t steps = 0, tokens = 0;
  uint64_t sent_messages = 0, sent_bytes = 0;          // on the output link, rank -> next
  uint64_t received_messages = 0, received_bytes = 0;  // on the input link, previous -> rank
  uint64_t rtt_samples = 0;                            // output link round trips; 0: none yet
  double rtt_smoothed_seconds = 0, rtt_min_seconds = 0;
};

class PipelineMetrics {
 public:
  // Registers the families in `registry` (ServingMetrics::registry() in jarvis-serve).
  PipelineMetrics(prometheus::Registry& registry, const std::string& model_name);
  ~PipelineMetrics();

  // One gathering round, every rank of the ring. A counter that went backwards (a restarted
  // rank) is taken as a new start: Prometheus counters never decrease.
  void update(const std::vector<RankSample>& ranks);

  // "a-b": the link from rank a to rank b in ring direction.
  static std::string link_name(int from, int to) { return std::to_string(from) + "-" + std::to_string(to); }

 private:
  // The series of `f` with `labels` (and model_name), moved on to the cumulative `value`.
  prometheus::Counter& counter(prometheus::Family<prometheus::Counter>& f,
                               const std::map<std::string, std::string>& labels, double value);

  std::mutex mu_;
  std::string model_name_;
  prometheus::Family<prometheus::Counter>* busy_ = nullptr;
  prometheus::Family<prometheus::Counter>* idle_ = nullptr;
  prometheus::Family<prometheus::Counter>* steps_ = nullptr;
  prometheus::Family<prometheus::Counter>* tokens_ = nullptr;
  prometheus::Family<prometheus::Counter>* link_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* link_messages_ = nullptr;
  prometheus::Family<prometheus::Gauge>* idle_fraction_ = nullptr;
  prometheus::Family<prometheus::Gauge>* rtt_ = nullptr;
  prometheus::Family<prometheus::Gauge>* rtt_min_ = nullptr;
  std::map<prometheus::Counter*, double> last_;               // the cumulative value each counter follows
  std::map<int, std::pair<double, double>> last_busy_wall_;  // per rank, for the window's idle fraction
};

}  // namespace jarvis::metrics
