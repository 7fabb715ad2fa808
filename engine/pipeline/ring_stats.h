// Per-rank and per-link counters of a pipeline ring, as rank 0 gathers them with kStats records
// (stage_message.h): each rank's entry is made here from its own counters and its measured links
// (transport/measured_link.h), and rank 0 turns the whole round into Prometheus samples
// (metrics/pipeline_metrics.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "engine/pipeline/stage_message.h"
#include "metrics/pipeline_metrics.h"
#include "transport/link.h"

namespace jarvis {

struct RingStats {
  std::chrono::steady_clock::time_point at;  // when rank 0 read the round
  std::vector<StageRankStats> ranks;         // ring order, rank 0 first
};

// One rank's entry. `in` / `out` are its input and output links (may be the same link, or null);
// links not made by transport::make_measured_link contribute zeros.
StageRankStats make_rank_stats(uint32_t rank, int first_layer, int end_layer, uint64_t steps, uint64_t tokens,
                               std::chrono::nanoseconds busy, std::chrono::nanoseconds wall,
                               const transport::Link* in, const transport::Link* out);

// The samples metrics::PipelineMetrics::update() takes.
std::vector<metrics::RankSample> metric_samples(const RingStats& stats);

}  // namespace jarvis
