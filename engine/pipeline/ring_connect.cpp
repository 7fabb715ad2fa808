#include "engine/pipeline/ring_connect.h"

#include <future>
#include <string>

#include "csrc/util/error.h"

namespace jarvis {

transport::UcxOptions ring_ucx_options(bool all_loopback, std::chrono::milliseconds connect_timeout) {
  transport::UcxOptions o;
  o.connect_timeout = connect_timeout;
  if (!all_loopback) o.tls = "tcp";
  return o;
}

RingLinks connect_ring_rank0(transport::UcxListener& listener, const std::string& next_host, uint16_t next_port,
                             const transport::UcxOptions& options, const RankHello& mine,
                             const std::vector<ShardSpec>& plan, std::chrono::milliseconds timeout) {
  RingLinks links;
  // Accept and connect at once: the last rank accepts its upstream only after rank 0 accepted it.
  auto accepted = std::async(std::launch::async, [&] { return listener.accept(timeout); });
  try {
    links.to_next = transport::ucx_connect(next_host, next_port, options);
  } catch (const std::exception& e) {
    // The accept ends by its own timeout; wait for it so it does not outlive the listener.
    try {
      accepted.get();
    } catch (...) {
    }
    throw Error("rank 0 cannot reach rank 1 at " + next_host + ":" + std::to_string(next_port) + ": " + e.what());
  }
  try {
    links.from_prev = accepted.get();
  } catch (const std::exception& e) {
    throw Error(std::string("the last rank did not connect to rank 0: ") + e.what());
  }
  rendezvous_ring(mine, links.from_prev.get(), links.to_next.get(), plan, timeout);
  return links;
}

}  // namespace jarvis
