#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "transport/inproc_link.h"
#include "transport/rtt.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

TEST(TransportInproc, KeepsOrderAndContentAcrossThreads) {
  auto [a, b] = make_inproc_link_pair();
  constexpr uint32_t kCount = 20000;
  std::thread sender([&, &a = a] {
    for (uint32_t i = 0; i < kCount; ++i) {
      std::vector<uint8_t> p(i % 97, static_cast<uint8_t>(i));
      a->send(MessageType::kData, i, p.data(), p.size());
    }
  });
  for (uint32_t i = 0; i < kCount; ++i) {
    Message m = b->recv(5s);
    ASSERT_EQ(m.tag, i);
    ASSERT_EQ(m.seq, i);
    ASSERT_EQ(m.payload.size(), i % 97);
    for (uint8_t v : m.payload) ASSERT_EQ(v, static_cast<uint8_t>(i));
  }
  sender.join();
}

TEST(TransportInproc, TimeoutReturnsNothingAndCloseBreaksPeer) {
  auto [a, b] = make_inproc_link_pair();
  const auto t0 = Clock::now();
  EXPECT_FALSE(b->try_recv(20ms).has_value());
  EXPECT_GE(Clock::now() - t0, 20ms);
  EXPECT_THROW(b->recv(1ms), LinkTimeout);
  a->send({1, 2, 3});
  a.reset();
  EXPECT_EQ(b->recv(1s).payload.size(), 3u);  // what was sent before the close still arrives
  EXPECT_THROW(b->try_recv(1s), LinkBroken);
  EXPECT_THROW(b->send({1}), LinkBroken);
}

TEST(TransportInproc, CloseWakesABlockedReceiver) {
  auto [a, b] = make_inproc_link_pair();
  std::thread closer([&a = a] {
    std::this_thread::sleep_for(50ms);
    a.reset();
  });
  const auto t0 = Clock::now();
  EXPECT_THROW(b->try_recv(10s), LinkBroken);
  EXPECT_LT(Clock::now() - t0, 2s);
  closer.join();
}

TEST(TransportInproc, ThroughputAndRoundTrip) {
  auto [a, b] = make_inproc_link_pair();
  std::thread echo([&b = b] { echo_pings(*b, 2000); });
  const RttStats s = measure_rtt(*a, 16384, 2000);
  echo.join();
  std::printf("inproc 16 KB round trip: median %.1f us, p99 %.1f us\n", s.median.count() / 1e3, s.p99.count() / 1e3);
  EXPECT_EQ(s.samples, 2000u);

  constexpr size_t kBytes = 1 << 20, kMessages = 200;
  std::vector<uint8_t> p(kBytes, 1);
  const auto t0 = Clock::now();
  std::thread sender([&, &a = a] {
    for (size_t i = 0; i < kMessages; ++i) a->send(p);
  });
  for (size_t i = 0; i < kMessages; ++i) ASSERT_EQ(b->recv(5s).payload.size(), kBytes);
  sender.join();
  const double gbs = kBytes * kMessages / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
  std::printf("inproc 1 MB messages: %.2f GB/s\n", gbs);
  EXPECT_GT(gbs, 0.05);  // a loose floor: only catches pathological slowness on a loaded 2-core box
}
