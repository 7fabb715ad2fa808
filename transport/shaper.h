// A link shaper: wraps any link and adds one-way delay, jitter and a bandwidth cap to what this end
// sends (wrap both ends for a symmetric link). This kernel has no netem, so experiments add latency
// here. Model: a message occupies the "wire" for bytes*8/bandwidth (send() blocks that long, so a
// fast sender is held back like by a slow NIC), then arrives delay +- jitter later. Arrival times
// never go backwards, so messages keep their order. Delivery is timed by a thread that sleeps until
// just before the due time and spins the rest, for accuracy within tens of microseconds.
#pragma once

#include <memory>

#include "transport/link.h"
#include "transport/link_spec.h"

namespace jarvis::transport {

// `seed` drives the jitter draws (reproducible experiments).
std::unique_ptr<Link> make_shaped_link(std::unique_ptr<Link> inner, LinkShape shape, uint64_t seed = 1);

// `inner` itself when the shape adds nothing (no extra thread or copy on unshaped links).
inline std::unique_ptr<Link> shape_if_needed(std::unique_ptr<Link> inner, LinkShape shape, uint64_t seed = 1) {
  return shape.shaped() ? make_shaped_link(std::move(inner), shape, seed) : std::move(inner);
}

}  // namespace jarvis::transport
