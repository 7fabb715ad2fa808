// The round-trip time a measured link reports over an in-process link shaped at the pinging end
// with 5 ms one-way delay: the ping is delayed 5 ms, the pong comes back unshaped, so the RTT is
// 5 ms plus two thread hand-offs per direction (reader threads, tens of microseconds when the
// machine is quiet, which is why this runs alone). Slack: 1.5 ms for the smallest sample (the
// shaper itself is accurate to +6..+50 us, transport/README.md; a sleep that wakes a scheduler
// tick late on a busy core costs up to ~1 ms), 3 ms for the smoothed value.
#include <gtest/gtest.h>

#include <thread>

#include "transport/inproc_link.h"
#include "transport/measured_link.h"
#include "transport/shaper.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

TEST(TransportMeasuredLinkTiming, RttOfAFiveMillisecondShapedLink) {
  auto [a_raw, b_raw] = make_inproc_link_pair();
  LinkShape shape;
  shape.delay = 5ms;
  MeasuredLinkOptions o;
  o.ping_interval = 20ms;
  auto a = make_measured_link(make_shaped_link(std::move(a_raw), shape), o);
  o.ping_interval = 0ms;
  auto b = make_measured_link(std::move(b_raw), o);
  const auto deadline = Clock::now() + 5s;
  while (link_stats(*a)->rtt_samples < 20 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  const LinkStats s = *link_stats(*a);
  std::printf("5 ms shaped link: %llu pings, RTT min %.3f ms, smoothed %.3f ms, last %.3f ms\n",
              static_cast<unsigned long long>(s.rtt_samples), s.rtt_min.count() / 1e6, s.rtt_smoothed.count() / 1e6,
              s.rtt_last.count() / 1e6);
  ASSERT_GE(s.rtt_samples, 20u);
  EXPECT_GE(s.rtt_min, 5ms);
  EXPECT_LT(s.rtt_min, 5ms + 1500us);
  EXPECT_GE(s.rtt_smoothed, 5ms);
  EXPECT_LT(s.rtt_smoothed, 5ms + 3ms);
}
