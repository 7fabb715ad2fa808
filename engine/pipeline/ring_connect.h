// Joining a pipeline ring over UCX, the same for local and remote ranks. Rank 0 must accept the
// last rank's connection *while* connecting to rank 1 (the chain of accepts starts at rank 0:
// README.md, "Startup"); a worker connects downstream first, then accepts upstream. Both then run
// the ring rendezvous (engine/cluster/rendezvous.h) before any step.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csrc/model/config.h"
#include "engine/cluster/rendezvous.h"
#include "transport/link.h"
#include "transport/ucx/ucx_link.h"

namespace jarvis {

struct RingLinks {
  std::unique_ptr<transport::Link> to_next;    // towards rank + 1
  std::unique_ptr<transport::Link> from_prev;  // from rank - 1 (rank 0: from the last rank)
};

// UCX settings for a ring. Ranks on one host (loopback addresses) let UCX pick shared memory;
// otherwise every link is TCP only: the peers are other hosts (or other network namespaces of
// this host, where loopback and, per UCX's same-machine test, shared memory would be chosen
// wrongly), and the bootstrap address names the one interface that reaches them.
transport::UcxOptions ring_ucx_options(bool all_loopback, std::chrono::milliseconds connect_timeout);

// Rank 0: accepts the last rank on `listener` while connecting to rank 1 at next_host:next_port,
// then runs the rendezvous with `mine` (checked against `plan`). Throws on timeout or mismatch.
RingLinks connect_ring_rank0(transport::UcxListener& listener, const std::string& next_host, uint16_t next_port,
                             const transport::UcxOptions& options, const RankHello& mine,
                             const std::vector<ShardSpec>& plan, std::chrono::milliseconds timeout);

}  // namespace jarvis
