// Shaper accuracy, measured over an in-process link so the only added latency is the shaper's.
// Each payload carries its send time (steady clock, same process), the receiver computes one-way
// latency.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "transport/inproc_link.h"
#include "transport/rtt.h"
#include "transport/shaper.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

namespace {

std::vector<uint8_t> stamped(size_t bytes) {
  std::vector<uint8_t> p(std::max<size_t>(bytes, 8));
  const int64_t t = Clock::now().time_since_epoch().count();
  std::memcpy(p.data(), &t, 8);
  return p;
}

double one_way_us(const Message& m) {
  int64_t t;
  std::memcpy(&t, m.payload.data(), 8);
  return (Clock::now().time_since_epoch().count() - t) / 1e3;
}

// One-way latencies (us) of `n` messages sent `gap` apart through a shaped link.
std::vector<double> latencies(LinkShape shape, int n, std::chrono::microseconds gap) {
  auto [a, b] = make_inproc_link_pair();
  auto shaped = make_shaped_link(std::move(a), shape, 42);
  std::vector<double> out;
  std::thread rx([&, &b = b] {
    for (int i = 0; i < n; ++i) {
      Message m = b->recv(5s);
      EXPECT_EQ(m.tag, static_cast<uint32_t>(i));  // order kept even with jitter
      out.push_back(one_way_us(m));
    }
  });
  for (int i = 0; i < n; ++i) {
    auto p = stamped(64);
    shaped->send(MessageType::kData, static_cast<uint32_t>(i), p.data(), p.size());
    std::this_thread::sleep_for(gap);
  }
  rx.join();
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Timing checks share 2 CPU cores with builds and other tests: a burst of load can delay thread
// wake-ups by milliseconds, which no user-space shaper can prevent. A real shaper bug fails every
// attempt; a load burst rarely spans three, so a check passes if any of 3 attempts meets it.
template <typename F>
bool any_of_3(F attempt) {
  for (int i = 0; i < 3; ++i)
    if (attempt()) return true;
  return false;
}

}  // namespace

TEST(TransportShaper, DelayIsAccurate) {
  for (auto delay : {2ms, 10ms}) {
    LinkShape s;
    s.delay = delay;
    const double want = std::chrono::duration<double, std::micro>(delay).count();
    EXPECT_TRUE(any_of_3([&] {
      const auto lat = latencies(s, 60, 3ms);
      const double med = median(lat), lo = *std::min_element(lat.begin(), lat.end());
      std::printf("shaper delay %.0f us: median one-way %.1f us, min %.1f us\n", want, med, lo);
      // "Within a few hundred microseconds": the median within 300 us (spinning the last 200 us
      // makes the typical error tens of us), and never early.
      return std::abs(med - want) < 300.0 && lo >= want - 1.0;
    }));
  }
}

TEST(TransportShaper, JitterStaysInRangeAndOrderIsKept) {
  LinkShape s;
  s.delay = 5ms;
  s.jitter = 2ms;
  // Messages 0.5 ms apart with +-2 ms jitter would overtake each other without the ordering rule;
  // latencies() asserts the tags arrive in order.
  EXPECT_TRUE(any_of_3([&] {
    const auto lat = latencies(s, 200, 500us);
    const double lo = *std::min_element(lat.begin(), lat.end()), hi = *std::max_element(lat.begin(), lat.end());
    std::printf("shaper 5ms+-2ms: one-way min %.0f us, median %.0f us, max %.0f us\n", lo, median(lat), hi);
    // Never below delay - jitter; jitter really applied (uniform over 4 ms); order-keeping only
    // pushes arrivals later by a few message gaps, so the median stays below the 7 ms upper edge
    // plus 2 ms.
    return lo >= 3000.0 - 1.0 && hi - lo > 1000.0 && median(lat) < 7000.0 + 2000.0;
  }));
}

TEST(TransportShaper, BandwidthCapWithinTenPercent) {
  LinkShape s;
  s.bits_per_second = 200e6;  // 200 Mbit/s: 4 MB take 168 ms
  EXPECT_TRUE(any_of_3([&] {
    auto [a, b] = make_inproc_link_pair();
    auto shaped = make_shaped_link(std::move(a), s);
    static constexpr size_t kChunk = 16384, kChunks = 256;
    std::vector<uint8_t> p(kChunk, 3);
    std::thread rx([&b = b] {
      for (size_t i = 0; i < kChunks; ++i) ASSERT_EQ(b->recv(5s).payload.size(), kChunk);
    });
    const auto t0 = Clock::now();
    for (size_t i = 0; i < kChunks; ++i) shaped->send(p);
    rx.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double mbit = kChunk * kChunks * 8 / secs / 1e6;
    std::printf("shaper cap 200 mbit: measured %.1f mbit/s\n", mbit);
    return std::abs(mbit - 200.0) < 20.0;  // the brief's "within ~10%"
  }));
}

TEST(TransportShaper, InnerFailureSurfacesOnSend) {
  auto [a, b] = make_inproc_link_pair();
  LinkShape s;
  s.delay = 1ms;
  auto shaped = make_shaped_link(std::move(a), s);
  b.reset();
  try {
    shaped->send({1});
  } catch (const LinkBroken&) {
    return;  // already noticed
  }
  std::this_thread::sleep_for(20ms);  // delivery thread hits the broken link after the delay
  EXPECT_THROW(shaped->send({2}), LinkBroken);
}

// Both ends shaped with 1 ms: a ping's round trip is the two one-way delays (plus ~tens of us).
TEST(TransportShaper, RoundTripThroughBothEndsIsTwiceTheDelay) {
  LinkShape s;
  s.delay = 1ms;
  EXPECT_TRUE(any_of_3([&] {
    auto [a, b] = make_inproc_link_pair();
    auto sa = shape_if_needed(std::move(a), s), sb = shape_if_needed(std::move(b), s);
    std::thread echo([&sb = sb] { echo_pings(*sb, 20); });
    const RttStats r = measure_rtt(*sa, 1024, 20);
    echo.join();
    std::printf("rtt through 1 ms + 1 ms: median %.1f us\n", r.median.count() / 1e3);
    // Never early (both hops delayed), and well short of 3 ms (a third delay, or one hop
    // delayed twice, would put the median at 3-4 ms); the slack absorbs two thread wake-ups.
    return r.min >= 2ms && r.median < 2ms + 900us;
  }));
  // An unshaped spec adds nothing: the link is returned as is.
  auto [a, b] = make_inproc_link_pair();
  Link* raw = a.get();
  EXPECT_EQ(shape_if_needed(std::move(a), LinkShape{}).get(), raw);
}
