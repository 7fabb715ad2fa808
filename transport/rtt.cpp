#include "transport/rtt.h"

#include <algorithm>
#include <vector>

namespace jarvis::transport {

RttStats measure_rtt(Link& link, size_t bytes, size_t count, std::chrono::nanoseconds timeout) {
  std::vector<uint8_t> payload(bytes);
  std::vector<std::chrono::nanoseconds> rtts;
  rtts.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const uint32_t tag = static_cast<uint32_t>(i);
    const auto t0 = Clock::now();
    link.send(MessageType::kPing, tag, payload.data(), payload.size());
    Message m = link.recv(timeout);
    const auto t1 = Clock::now();
    if (m.type != MessageType::kPong || m.tag != tag || m.payload.size() != bytes)
      throw FrameError(link.describe() + ": unexpected reply while measuring round trips");
    rtts.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0));
  }
  RttStats s;
  s.samples = rtts.size();
  if (rtts.empty()) return s;
  std::sort(rtts.begin(), rtts.end());
  std::chrono::nanoseconds sum{0};
  for (auto r : rtts) sum += r;
  s.min = rtts.front();
  s.max = rtts.back();
  s.median = rtts[rtts.size() / 2];
  s.p99 = rtts[std::min(rtts.size() - 1, rtts.size() * 99 / 100)];
  s.mean = sum / static_cast<int64_t>(rtts.size());
  return s;
}

bool answer_ping(Link& link, const Message& m) {
  if (m.type != MessageType::kPing) return false;
  link.send(MessageType::kPong, m.tag, m.payload.data(), m.payload.size());
  return true;
}

void echo_pings(Link& link, size_t count, std::chrono::nanoseconds timeout) {
  for (size_t i = 0; i < count; ++i) {
    Message m = link.recv(timeout);
    if (!answer_ping(link, m)) throw FrameError(link.describe() + ": expected a ping");
  }
}

}  // namespace jarvis::transport
