// Per-link shapes for experiments, parsed from command-line specs:
//   --link-delay 0-1:2ms,1-2:10ms   --link-jitter 0-1:500us   --link-bandwidth 0-1:100mbit
// A key "A-B" names the undirected link between ranks A and B; "*" sets the default for every
// link not named; a bare value ("--link-delay 5ms") is the same as "*:5ms". Durations: ns, us, ms, s. Bandwidth (tc units): bit, kbit, mbit, gbit (bits/s),
// bps, kbps, mbps, gbps (bytes/s). Throws LinkSpecError with the offending item.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace jarvis::transport {

struct LinkShape {
  std::chrono::nanoseconds delay{0};   // one-way, added to every message
  std::chrono::nanoseconds jitter{0};  // each message gets delay + uniform[-jitter, +jitter] (>= 0)
  double bits_per_second = 0;          // 0: no cap
  bool shaped() const { return delay.count() > 0 || jitter.count() > 0 || bits_per_second > 0; }
};

class LinkShapes {
 public:
  // Shape of the link between ranks a and b (either order); the "*" default when not named.
  LinkShape get(int a, int b) const;
  void set_delay(int a, int b, std::chrono::nanoseconds d) { at(a, b).delay = d; }
  void set_jitter(int a, int b, std::chrono::nanoseconds j) { at(a, b).jitter = j; }
  void set_bandwidth(int a, int b, double bps) { at(a, b).bits_per_second = bps; }

 private:
  LinkShape& at(int a, int b);
  std::map<std::pair<int, int>, LinkShape> links_;  // key (min, max); (-1, -1) is "*"
};

std::chrono::nanoseconds parse_duration(std::string_view text);
double parse_bandwidth(std::string_view text);  // bits per second
// Any spec may be empty.
LinkShapes parse_link_shapes(std::string_view delay_spec, std::string_view jitter_spec = {},
                             std::string_view bandwidth_spec = {});

}  // namespace jarvis::transport
