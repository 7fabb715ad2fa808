#include "engine/pipeline/ring_stats.h"

#include "transport/measured_link.h"

namespace jarvis {

StageRankStats make_rank_stats(uint32_t rank, int first_layer, int end_layer, uint64_t steps, uint64_t tokens,
                               std::chrono::nanoseconds busy, std::chrono::nanoseconds wall,
                               const transport::Link* in, const transport::Link* out) {
  StageRankStats s;
  s.rank = rank;
  s.first_layer = static_cast<uint32_t>(first_layer);
  s.end_layer = static_cast<uint32_t>(end_layer);
  s.steps = steps;
  s.tokens = tokens;
  s.busy_ns = static_cast<uint64_t>(std::max<int64_t>(0, busy.count()));
  s.wall_ns = static_cast<uint64_t>(std::max<int64_t>(0, wall.count()));
  if (in != nullptr) {
    if (const auto ls = transport::link_stats(*in)) {
      s.received_messages = ls->received_messages;
      s.received_bytes = ls->received_bytes;
    }
  }
  if (out != nullptr) {
    if (const auto ls = transport::link_stats(*out)) {
      s.sent_messages = ls->sent_messages;
      s.sent_bytes = ls->sent_bytes;
      s.rtt_samples = ls->rtt_samples;
      s.rtt_last_ns = static_cast<uint64_t>(ls->rtt_last.count());
      s.rtt_min_ns = static_cast<uint64_t>(ls->rtt_min.count());
      s.rtt_smoothed_ns = static_cast<uint64_t>(ls->rtt_smoothed.count());
    }
  }
  return s;
}

std::vector<metrics::RankSample> metric_samples(const RingStats& stats) {
  std::vector<metrics::RankSample> out;
  const int ranks = static_cast<int>(stats.ranks.size());
  for (const StageRankStats& s : stats.ranks) {
    metrics::RankSample m;
    m.rank = static_cast<int>(s.rank);
    m.ranks = ranks;
    m.busy_seconds = static_cast<double>(s.busy_ns) * 1e-9;
    m.wall_seconds = static_cast<double>(s.wall_ns) * 1e-9;
    m.steps = s.steps;
    m.tokens = s.tokens;
    m.sent_messages = s.sent_messages;
    m.sent_bytes = s.sent_bytes;
    m.received_messages = s.received_messages;
    m.received_bytes = s.received_bytes;
    m.rtt_samples = s.rtt_samples;
    m.rtt_smoothed_seconds = static_cast<double>(s.rtt_smoothed_ns) * 1e-9;
    m.rtt_min_seconds = static_cast<double>(s.rtt_min_ns) * 1e-9;
    out.push_back(m);
  }
  return out;
}

}  // namespace jarvis
