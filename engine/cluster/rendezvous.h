// Start-up handshake: before any weights are used, every rank proves to rank 0 that it runs the
// same engine version (and wire protocol) on the same model file, and holds the layers the plan
// gave it. Rank 0 answers every rank "ok" or the first problem it found -- the same text to all
// -- so every process fails together with one clear message instead of exchanging garbage later:
//   "rank 2 has model hash 1f3a..., rank 0 has 9c4e..."
// Messages are JSON in kData frames with tag kRendezvousTag, so a dump of the link is readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/util/error.h"
#include "transport/link.h"

namespace jarvis {

inline constexpr uint32_t kRendezvousTag = 0x5244565a;  // "ZVDR" little-endian: rendezvous
// Bumped whenever the messages ranks exchange change shape; two builds of one version that
// disagree on it cannot work together.
inline constexpr int kRendezvousProtocol = 4;  // 2: hellos carry the KV layout; 3: stage wire form 4 (devices, NCCL steps);
                                               // 4: rank 1 answers an NCCL-able rank 0 after the kHello

class RendezvousError : public Error {
 public:
  using Error::Error;
};

// CMake's project version ("0.1.0"), compiled in.
std::string engine_version();

struct RankHello {
  int protocol = kRendezvousProtocol;
  std::string engine_version;
  std::string model_hash;  // model_identity.h model_fingerprint
  int rank = 0;
  int world_size = 0;
  ShardSpec shard;   // end_layer resolved
  // KV layout every rank must share (block ids come from rank 0): blocks and tokens per block.
  // Ranks that sized their cache on their own (a cluster file read on each host) prove here that
  // they agree. 0 = not stated (not checked).
  int64_t kv_blocks = 0;
  int page_size = 0;
  std::string host;  // for messages only

  static RankHello make(int rank, int world_size, const ShardSpec& shard, const std::string& model_hash);
  std::string to_json() const;
  static RankHello from_json(const std::string& text, const std::string& from);  // throws RendezvousError
};

// The first difference between a rank's hello and rank 0's, or nullopt. `expected`, when given,
// is the plan's shard for that rank.
std::optional<std::string> hello_mismatch(const RankHello& leader, const RankHello& other,
                                          const std::optional<ShardSpec>& expected = std::nullopt);

// Rank 0's side: `links` lead to the other ranks, in any order (each rank names itself). Waits
// for every hello (at most `timeout` in all), checks each, and acks all. Returns the hellos
// indexed by rank (rank 0's own at [0]). `plan`, when not empty, is the split every rank must hold.
// Throws RendezvousError (mismatch, duplicate or out-of-range rank, malformed message) after
// telling the ranks; transport::LinkTimeout when a rank stays silent (the others are told).
std::vector<RankHello> rendezvous_leader(const RankHello& mine, const std::vector<transport::Link*>& links,
                                         const std::vector<ShardSpec>& plan = {},
                                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Every other rank: sends its hello, waits for rank 0's verdict; throws RendezvousError carrying
// rank 0's message when it is not ok, transport::LinkTimeout when no answer comes in time.
void rendezvous_follower(transport::Link& to_leader, const RankHello& mine,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// The same check over the pipeline's own ring links (rank r receives from r-1 and sends to r+1,
// rank N-1 sends to rank 0), for deployments with no link from rank 0 to every rank: rank 0's
// hello goes round the ring, each rank appends its own; rank 0 checks them all and sends the
// verdict round the ring; every rank forwards it before acting on it, so all fail alike. With two
// ranks both links may be the same Link; with one rank both may be null. Rank 0 returns the hellos
// by rank, others an empty vector. Throws like rendezvous_leader / rendezvous_follower.
std::vector<RankHello> rendezvous_ring(const RankHello& mine, transport::Link* from_prev, transport::Link* to_next,
                                       const std::vector<ShardSpec>& plan = {},
                                       std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace jarvis
