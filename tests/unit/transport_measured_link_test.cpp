// transport/measured_link.h: exact data counts, pings that never reach the application nor
// reorder its data, round trips measured on a link the application only sends on, and link
// failures reported as before (LinkBroken; a wrapped link's FrameError once, then LinkBroken).
// The shaped-link RTT accuracy is in tests/timing/ (it needs a quiet machine).
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <thread>

#include "transport/inproc_link.h"
#include "transport/measured_link.h"
#include "transport/shaper.h"
#include "transport/ucx/ucx_link.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

namespace {

MeasuredLinkOptions pinging(std::chrono::milliseconds every) {
  MeasuredLinkOptions o;
  o.ping_interval = every;
  o.poll = 5ms;
  return o;
}

std::vector<uint8_t> numbered(uint32_t i, size_t bytes) {
  std::vector<uint8_t> p(std::max<size_t>(bytes, 4), static_cast<uint8_t>(i * 7));
  std::memcpy(p.data(), &i, 4);
  return p;
}

// Waits until `pred` holds (checked every ms) or `limit` passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

TEST(TransportMeasuredLink, CountsDataExactlyAndNotPings) {
  auto [a_raw, b_raw] = make_inproc_link_pair();
  auto a = make_measured_link(std::move(a_raw), pinging(2ms));
  auto b = make_measured_link(std::move(b_raw), pinging(2ms));
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < 50; ++i) {
    const auto p = numbered(i, 10 + 37 * i);
    bytes += p.size();
    a->send(p, i);
  }
  a->send(MessageType::kData, 99, nullptr, 0);  // an empty message counts as one message, 0 bytes
  for (uint32_t i = 0; i < 51; ++i) ASSERT_TRUE(b->try_recv(5s).has_value());
  b->send(numbered(1, 1000), 1);
  ASSERT_TRUE(a->try_recv(5s).has_value());
  // Pings went both ways meanwhile (2 ms apart): wait for a few round trips, then count again.
  ASSERT_TRUE(eventually([&] { return link_stats(*a)->rtt_samples >= 3 && link_stats(*b)->rtt_samples >= 3; }));
  const LinkStats sa = *link_stats(*a), sb = *link_stats(*b);
  EXPECT_EQ(sa.sent_messages, 51u);
  EXPECT_EQ(sa.sent_bytes, bytes);
  EXPECT_EQ(sb.received_messages, 51u);
  EXPECT_EQ(sb.received_bytes, bytes);
  EXPECT_EQ(sb.sent_messages, 1u);
  EXPECT_EQ(sb.sent_bytes, 1000u);
  EXPECT_EQ(sa.received_messages, 1u);
  EXPECT_EQ(sa.received_bytes, 1000u);
  EXPECT_FALSE(a->try_recv(20ms).has_value()) << "a ping or pong reached the application";
  EXPECT_FALSE(b->try_recv(20ms).has_value()) << "a ping or pong reached the application";
  EXPECT_GT(sa.rtt_min.count(), 0);
  EXPECT_LE(sa.rtt_min, sa.rtt_last);
  EXPECT_FALSE(link_stats(*make_inproc_link_pair().first).has_value());
}

// Both ends ping every millisecond while both stream numbered messages: every message arrives
// once, in order, intact, as kData with its tag.
TEST(TransportMeasuredLink, PingsDoNotReorderOrCorruptData) {
  auto [a_raw, b_raw] = make_inproc_link_pair();
  auto a = make_measured_link(std::move(a_raw), pinging(1ms));
  auto b = make_measured_link(std::move(b_raw), pinging(1ms));
  constexpr uint32_t kN = 3000;
  std::thread back([&b = b] {
    for (uint32_t i = 0; i < kN; ++i) {
      if (i % 500 == 0) std::this_thread::sleep_for(3ms);  // let pings interleave
      b->send(numbered(i, 64 + i % 300), i);
    }
  });
  for (uint32_t i = 0; i < kN; ++i) {
    if (i % 500 == 0) std::this_thread::sleep_for(3ms);
    a->send(numbered(i, 100 + i % 200), i);
  }
  for (uint32_t i = 0; i < kN; ++i) {
    Message m = b->recv(5s);
    ASSERT_EQ(m.type, MessageType::kData);
    ASSERT_EQ(m.tag, i);
    ASSERT_EQ(m.payload, numbered(i, 100 + i % 200));
  }
  for (uint32_t i = 0; i < kN; ++i) {
    Message m = a->recv(5s);
    ASSERT_EQ(m.type, MessageType::kData);
    ASSERT_EQ(m.tag, i);
    ASSERT_EQ(m.payload, numbered(i, 64 + i % 300));
  }
  back.join();
  EXPECT_GT(link_stats(*a)->rtt_samples, 0u);
  EXPECT_GT(link_stats(*b)->rtt_samples, 0u);
}

// A ring of 3+ ranks sends on its output link and never receives there: the reader thread still
// reads the pongs, and the far end's application sees only data.
TEST(TransportMeasuredLink, MeasuresALinkTheApplicationOnlySendsOn) {
  auto [a_raw, b_raw] = make_inproc_link_pair();
  auto out = make_measured_link(std::move(a_raw), pinging(2ms));
  auto in = make_measured_link(std::move(b_raw), pinging(0ms));  // the receiving end does not ping
  for (uint32_t i = 0; i < 20; ++i) out->send(numbered(i, 8), i);
  ASSERT_TRUE(eventually([&] { return link_stats(*out)->rtt_samples >= 5; }));
  for (uint32_t i = 0; i < 20; ++i) {
    Message m = in->recv(5s);
    EXPECT_EQ(m.tag, i);
  }
  EXPECT_FALSE(in->try_recv(10ms).has_value());
  EXPECT_EQ(link_stats(*in)->rtt_samples, 0u);
}

// The shaper delays what its end sends: a ping through a 5 ms shaped end takes at least 5 ms.
// (The upper bound is checked in tests/timing/, alone on the machine.)
TEST(TransportMeasuredLink, RttThroughAShapedEndIsAtLeastItsDelay) {
  auto [a_raw, b_raw] = make_inproc_link_pair();
  LinkShape shape;
  shape.delay = 5ms;
  auto a = make_measured_link(make_shaped_link(std::move(a_raw), shape), pinging(10ms));
  auto b = make_measured_link(std::move(b_raw), pinging(0ms));
  ASSERT_TRUE(eventually([&] { return link_stats(*a)->rtt_samples >= 3; }));
  EXPECT_GE(link_stats(*a)->rtt_min, 5ms);
}

TEST(TransportMeasuredLink, PeerGoneIsLinkBrokenAfterWhatItSent) {
  auto [a_raw, b_raw] = make_inproc_link_pair();
  auto a = make_measured_link(std::move(a_raw), pinging(1ms));
  auto b = make_measured_link(std::move(b_raw), pinging(1ms));
  for (uint32_t i = 0; i < 3; ++i) b->send(numbered(i, 16), i);
  b.reset();
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(a->recv(5s).tag, i);
  EXPECT_THROW(a->try_recv(5s), LinkBroken);
  EXPECT_THROW(a->try_recv(5s), LinkBroken);  // and stays broken
  EXPECT_THROW(a->send(numbered(0, 4)), LinkBroken);
}

TEST(TransportMeasuredLink, UcxPeerGoneIsLinkBroken) {
  UcxListener listener("127.0.0.1", 0);
  std::unique_ptr<Link> server;
  std::thread t([&] { server = listener.accept(10s); });
  auto client = make_measured_link(ucx_connect("127.0.0.1", listener.port()), pinging(5ms));
  t.join();
  server = make_measured_link(std::move(server), pinging(5ms));
  client->send(numbered(7, 20000), 7);
  EXPECT_EQ(server->recv(10s).tag, 7u);
  ASSERT_TRUE(eventually([&] { return link_stats(*client)->rtt_samples >= 2; }));
  server.reset();
  const auto t0 = Clock::now();
  EXPECT_THROW(client->try_recv(10s), LinkBroken);
  EXPECT_LT(Clock::now() - t0, 5s);
}

// A stand-in for a backend whose stream went corrupt: one FrameError, then LinkBroken.
class CorruptLink final : public Link {
 public:
  void send(MessageType, uint32_t, const void*, size_t) override {}
  std::optional<Message> try_recv(std::chrono::nanoseconds) override {
    if (calls_++ == 0) throw FrameError("corrupt link: bad checksum");
    throw LinkBroken("corrupt link: bad checksum");
  }
  std::string describe() const override { return "corrupt link"; }

 private:
  int calls_ = 0;
};

TEST(TransportMeasuredLink, FrameErrorIsReportedOnceThenLinkBroken) {
  auto link = make_measured_link(std::make_unique<CorruptLink>(), pinging(0ms));
  EXPECT_THROW(link->try_recv(5s), FrameError);
  try {
    link->try_recv(5s);
    ADD_FAILURE() << "no error after a corrupt frame";
  } catch (const LinkBroken& e) {
    EXPECT_NE(std::string(e.what()).find("bad checksum"), std::string::npos) << e.what();
  }
  EXPECT_EQ(link->describe(), "corrupt link");
}

}  // namespace
