// A link decorator for per-link metrics: counts the data messages and bytes each way, and measures
// the round-trip time continuously with a small ping (16 bytes) every `ping_interval`.
//
// One reader thread per measured link owns the wrapped link's receive side: it answers the peer's
// kPing with kPong at once, consumes the kPong answers to its own pings, and queues everything
// else for try_recv(). A thread is needed because on a ring of 3 or more ranks a rank only sends on
// its output link (the pongs there would never be read), and because a rank busy with its layers
// would otherwise answer a ping only after its forward pass, so the "link" RTT would include
// compute. Pings and pongs never reach the application; data keeps its order (one reader, one
// FIFO); sends go straight to the wrapped link, a ping being one more whole message among them.
// Cost: the hand-off from the reader thread adds ~7 us to each received record (UCX shared memory
// round trip, 8 B: 2.9 us raw, 17-22 us measured at both ends, on the loaded 2-core CI VM); a
// brief spin in try_recv() instead of the condition variable made it worse there (two spinning
// threads per link on two cores).
//
// What the RTT means: the time from handing a ping to this end's link until its pong is read
// back here. A shaper (shaper.h) delays what its own end sends only, so over a ring hop shaped at
// the sending rank the RTT is the shaped one-way delay plus the unshaped way back (a 5 ms
// --link-delay shows ~5 ms, not 10), plus any queueing behind data on the way out (bandwidth cap).
// A failure of the wrapped link reaches the caller as before: try_recv() returns what arrived
// first, then throws the wrapped link's error (LinkBroken, or FrameError once and then LinkBroken);
// send() throws whatever the wrapped link's send throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "transport/link.h"

namespace jarvis::transport {

struct MeasuredLinkOptions {
  std::chrono::milliseconds ping_interval{500};  // 0: never ping (the peer's pings are still answered)
  // The reader thread's receive slice: bounds how late a ping goes out and how long the
  // destructor waits for the thread.
  std::chrono::milliseconds poll{20};
};

struct LinkStats {
  // kData messages only (what the application sent and received through this end; pings,
  // pongs and a backend's own heartbeats are not counted). Bytes are payload bytes, no framing.
  uint64_t sent_messages = 0, sent_bytes = 0;
  uint64_t received_messages = 0, received_bytes = 0;
  // Round trips of this end's pings: count, the latest, the smallest, and a moving average
  // (weight 1/8 per sample, as TCP's smoothed RTT). Zero while no pong has come back.
  uint64_t rtt_samples = 0;
  std::chrono::nanoseconds rtt_last{0}, rtt_min{0}, rtt_smoothed{0};
};

// Wraps `inner`; the reader thread starts at once, so wrap a link only after any exchange that
// reads it directly (the rendezvous), or the peer's first pings could reach that exchange.
std::unique_ptr<Link> make_measured_link(std::unique_ptr<Link> inner, MeasuredLinkOptions options = {});

// The counters of a link made by make_measured_link (thread-safe); nullopt for any other link.
std::optional<LinkStats> link_stats(const Link& link);

}  // namespace jarvis::transport
