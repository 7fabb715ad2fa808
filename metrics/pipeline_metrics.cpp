#include "metrics/pipeline_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cmath>

namespace jarvis::metrics {

PipelineMetrics::PipelineMetrics(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name) {
  auto counter_family = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry);
  };
  auto gauge_family = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry);
  };
  busy_ = counter_family("jarvis:stage_busy_seconds_total",
                         "Time a pipeline rank spent computing its layers (rank 0: with embedding and head).");
  idle_ = counter_family("jarvis:stage_idle_seconds_total",
                         "Time a pipeline rank was not computing (waiting for input, moving records).");
  steps_ = counter_family("jarvis:stage_steps_total", "Steps (micro-batches) a pipeline rank ran through its layers.");
  tokens_ = counter_family("jarvis:stage_tokens_total", "Token rows a pipeline rank ran through its layers.");
  link_bytes_ = counter_family(
      "jarvis:link_bytes_total", "Payload bytes of ring records on a link: tx counted by its sender, rx by its receiver.");
  link_messages_ = counter_family("jarvis:link_messages_total",
                                  "Ring records on a link: tx counted by its sender, rx by its receiver.");
  idle_fraction_ = gauge_family("jarvis:stage_idle_fraction",
                                "Share of the last gathering window (about 1 s) a pipeline rank was idle (bubble).");
  rtt_ = gauge_family("jarvis:link_rtt_seconds", "Smoothed round-trip time of the pings over a link (weight 1/8).");
  rtt_min_ = gauge_family("jarvis:link_rtt_min_seconds", "Smallest round-trip time of the pings over a link.");
}

PipelineMetrics::~PipelineMetrics() = default;

prometheus::Counter& PipelineMetrics::counter(prometheus::Family<prometheus::Counter>& f,
                                              const std::map<std::string, std::string>& labels, double value) {
  prometheus::Labels l(labels.begin(), labels.end());
  l["model_name"] = model_name_;
  prometheus::Counter& c = f.Add(l);
  const auto it = last_.find(&c);
  const double before = it == last_.end() ? 0.0 : it->second;
  if (std::isfinite(value) && value >= before) c.Increment(value - before);
  last_[&c] = value;  // a smaller value: the rank restarted; count on from its new start
  return c;
}

void PipelineMetrics::update(const std::vector<RankSample>& ranks) {
  std::lock_guard<std::mutex> lk(mu_);
  for (const RankSample& s : ranks) {
    if (s.ranks < 1 || s.rank < 0 || s.rank >= s.ranks) continue;
    const std::string rank = std::to_string(s.rank);
    const double busy = std::max(0.0, s.busy_seconds);
    const double wall = std::max(busy, s.wall_seconds);
    counter(*busy_, {{"rank", rank}}, busy);
    counter(*idle_, {{"rank", rank}}, wall - busy);
    counter(*steps_, {{"rank", rank}}, static_cast<double>(s.steps));
    counter(*tokens_, {{"rank", rank}}, static_cast<double>(s.tokens));

    // Idle share of the window since the previous round (since the start for the first one).
    auto& prev = last_busy_wall_[s.rank];
    double d_busy = busy - prev.first, d_wall = wall - prev.second;
    if (d_wall < 0 || d_busy < 0) d_busy = busy, d_wall = wall;  // restarted rank
    prev = {busy, wall};
    if (d_wall > 0) {
      idle_fraction_->Add({{"model_name", model_name_}, {"rank", rank}})
          .Set(std::clamp(1.0 - d_busy / d_wall, 0.0, 1.0));
    }

    const std::string out = link_name(s.rank, (s.rank + 1) % s.ranks);
    const std::string in = link_name((s.rank + s.ranks - 1) % s.ranks, s.rank);
    counter(*link_bytes_, {{"link", out}, {"direction", "tx"}}, static_cast<double>(s.sent_bytes));
    counter(*link_messages_, {{"link", out}, {"direction", "tx"}}, static_cast<double>(s.sent_messages));
    counter(*link_bytes_, {{"link", in}, {"direction", "rx"}}, static_cast<double>(s.received_bytes));
    counter(*link_messages_, {{"link", in}, {"direction", "rx"}}, static_cast<double>(s.received_messages));
    if (s.rtt_samples > 0) {
      rtt_->Add({{"model_name", model_name_}, {"link", out}}).Set(s.rtt_smoothed_seconds);
      rtt_min_->Add({{"model_name", model_name_}, {"link", out}}).Set(s.rtt_min_seconds);
    }
  }
}

}  // namespace jarvis::metrics
