// PipelineMetrics: rank samples in, Prometheus series out (rendered through ServingMetrics, the
// registry jarvis-serve exposes). Values are checked against numbers computed here from the
// samples; a restarted rank (counters back at zero) never makes a counter go down.
#include "metrics/pipeline_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>

#include "metrics/serving_metrics.h"

namespace {

using jarvis::metrics::PipelineMetrics;
using jarvis::metrics::RankSample;
using jarvis::metrics::ServingMetrics;

// The value of the one series of `name` whose label text contains every piece of `labels`
// ("rank=\"1\""), from the exposition text; NaN when absent.
double value(const std::string& text, const std::string& name, const std::vector<std::string>& labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0) continue;
    bool all = true;
    for (const std::string& l : labels) all = all && line.find(l) != std::string::npos;
    if (all) return std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  }
  return std::nan("");
}

RankSample sample(int rank, double busy, double wall, uint64_t sent, uint64_t received) {
  RankSample s;
  s.rank = rank;
  s.ranks = 3;
  s.busy_seconds = busy;
  s.wall_seconds = wall;
  s.steps = 10 * (rank + 1);
  s.tokens = 100 * (rank + 1);
  s.sent_messages = sent / 100;
  s.sent_bytes = sent;
  s.received_messages = received / 100;
  s.received_bytes = received;
  s.rtt_samples = rank == 2 ? 0 : 4;  // rank 2's output link has no round trip yet
  s.rtt_smoothed_seconds = 0.005 + rank * 0.001;
  s.rtt_min_seconds = 0.004;
  return s;
}

TEST(PipelineMetrics, SeriesPerRankAndLinkFollowTheSamples) {
  ServingMetrics serving("m");
  PipelineMetrics pm(serving.registry(), "m");
  pm.update({sample(0, 1.0, 4.0, 1000, 900), sample(1, 2.0, 4.0, 2000, 1000), sample(2, 3.0, 4.0, 900, 2000)});
  pm.update({sample(0, 1.5, 6.0, 1500, 1300), sample(1, 3.5, 6.0, 2600, 1500), sample(2, 3.0, 6.0, 1300, 2600)});
  const std::string t = serving.render();
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_busy_seconds_total", {"rank=\"1\"", "model_name=\"m\""}), 3.5);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_idle_seconds_total", {"rank=\"1\""}), 6.0 - 3.5);
  // The idle share of the last window: rank 0 computed 0.5 s of 2 s, rank 2 nothing.
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_idle_fraction", {"rank=\"0\""}), 0.75);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_idle_fraction", {"rank=\"1\""}), 0.25);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_idle_fraction", {"rank=\"2\""}), 1.0);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_steps_total", {"rank=\"2\""}), 30);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_tokens_total", {"rank=\"0\""}), 100);
  // Link a-b: tx counted by rank a, rx by rank b.
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_bytes_total", {"link=\"0-1\"", "direction=\"tx\""}), 1500);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_bytes_total", {"link=\"0-1\"", "direction=\"rx\""}), 1500);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_bytes_total", {"link=\"2-0\"", "direction=\"tx\""}), 1300);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_bytes_total", {"link=\"2-0\"", "direction=\"rx\""}), 1300);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_messages_total", {"link=\"1-2\"", "direction=\"tx\""}), 26);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_rtt_seconds", {"link=\"1-2\""}), 0.006);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_rtt_min_seconds", {"link=\"0-1\""}), 0.004);
  EXPECT_TRUE(std::isnan(value(t, "jarvis:link_rtt_seconds", {"link=\"2-0\""}))) << "no sample, no series";
  EXPECT_NE(t.find("# TYPE jarvis:link_bytes_total counter"), std::string::npos);
  EXPECT_NE(t.find("# TYPE jarvis:stage_idle_fraction gauge"), std::string::npos);
}

TEST(PipelineMetrics, ARestartedRankNeverMakesACounterGoDown) {
  ServingMetrics serving("m");
  PipelineMetrics pm(serving.registry(), "m");
  pm.update({sample(0, 5.0, 10.0, 5000, 5000), sample(1, 5.0, 10.0, 5000, 5000), sample(2, 5.0, 10.0, 5000, 5000)});
  // Rank 1 restarted: its counters start again from small values.
  pm.update({sample(0, 6.0, 12.0, 6000, 6000), sample(1, 0.5, 1.0, 300, 200), sample(2, 6.0, 12.0, 6000, 6000)});
  std::string t = serving.render();
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_busy_seconds_total", {"rank=\"1\""}), 5.0);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_bytes_total", {"link=\"1-2\"", "direction=\"tx\""}), 5000);
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_idle_fraction", {"rank=\"1\""}), 0.5);  // 0.5 of 1.0 since its restart
  pm.update({sample(0, 7.0, 14.0, 7000, 7000), sample(1, 1.5, 3.0, 1300, 700), sample(2, 7.0, 14.0, 7000, 7000)});
  t = serving.render();
  EXPECT_DOUBLE_EQ(value(t, "jarvis:stage_busy_seconds_total", {"rank=\"1\""}), 6.0);  // counts on: +1.0
  EXPECT_DOUBLE_EQ(value(t, "jarvis:link_bytes_total", {"link=\"1-2\"", "direction=\"tx\""}), 6000);
}

}  // namespace
