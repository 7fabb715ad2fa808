#include <gtest/gtest.h>

#include "transport/link_spec.h"
#include "transport/transport_error.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

TEST(TransportLinkSpec, ParsesDurationsAndBandwidths) {
  EXPECT_EQ(parse_duration("2ms"), 2ms);
  EXPECT_EQ(parse_duration(" 250us "), 250us);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("0ns"), 0ns);
  EXPECT_DOUBLE_EQ(parse_bandwidth("100mbit"), 100e6);
  EXPECT_DOUBLE_EQ(parse_bandwidth("1Gbit"), 1e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth("10mbps"), 80e6);  // tc: bps = bytes per second
  EXPECT_DOUBLE_EQ(parse_bandwidth("512kbit"), 512e3);
}

TEST(TransportLinkSpec, PerLinkTable) {
  const LinkShapes s = parse_link_shapes("0-1:2ms, 1-2:10ms", "1-2:1ms", "0-1:100mbit");
  EXPECT_EQ(s.get(0, 1).delay, 2ms);
  EXPECT_EQ(s.get(1, 0).delay, 2ms);  // undirected
  EXPECT_DOUBLE_EQ(s.get(1, 0).bits_per_second, 100e6);
  EXPECT_EQ(s.get(0, 1).jitter, 0ns);
  EXPECT_EQ(s.get(2, 1).delay, 10ms);
  EXPECT_EQ(s.get(2, 1).jitter, 1ms);
  EXPECT_DOUBLE_EQ(s.get(1, 2).bits_per_second, 0);
  EXPECT_FALSE(s.get(2, 3).shaped());
}

TEST(TransportLinkSpec, DefaultAppliesToUnnamedAndSeedsNamedLinks) {
  const LinkShapes s = parse_link_shapes("0-1:5ms,*:1ms", "", "*:1gbit");
  EXPECT_EQ(s.get(3, 4).delay, 1ms);
  EXPECT_EQ(s.get(0, 1).delay, 5ms);
  EXPECT_DOUBLE_EQ(s.get(0, 1).bits_per_second, 1e9);  // named for delay, default bandwidth
  EXPECT_TRUE(parse_link_shapes("", "", "").get(0, 1).delay == 0ns);
}

TEST(TransportLinkSpec, BareValueSetsEveryLink) {
  const LinkShapes s = parse_link_shapes("5ms", "500us", "100mbit");
  EXPECT_EQ(s.get(0, 1).delay, 5ms);
  EXPECT_EQ(s.get(2, 7).delay, 5ms);
  EXPECT_EQ(s.get(1, 2).jitter, 500us);
  EXPECT_DOUBLE_EQ(s.get(2, 0).bits_per_second, 100e6);
  EXPECT_EQ(parse_link_shapes("5ms,1-2:10ms").get(1, 2).delay, 10ms);  // named links still override it
  EXPECT_EQ(parse_link_shapes("5ms,1-2:10ms").get(0, 1).delay, 5ms);
}

TEST(TransportLinkSpec, RejectsMalformedItems) {
  for (const char* bad : {"0-1", "0-1:", "0-1:2", "0-1:2m", "0-1:ms", "01:2ms", "0-0:2ms", "a-1:2ms", "0-1:-2ms",
                          "0-1:2ms,", ",0-1:2ms", "0-1:2ms,,1-2:3ms", "0-1:1e3ms", "0-1:2 hours", "0-1:99999s"})
    EXPECT_THROW(parse_link_shapes(bad), LinkSpecError) << bad;
  for (const char* bad : {"0-1:100", "0-1:0mbit", "0-1:100mb", "0-1:fast"})
    EXPECT_THROW(parse_link_shapes("", "", bad), LinkSpecError) << bad;
  try {
    parse_link_shapes("0-1:2ms,1-2:3parsecs");
    FAIL();
  } catch (const LinkSpecError& e) {
    EXPECT_NE(std::string(e.what()).find("3parsecs"), std::string::npos) << e.what();
  }
}
