// Rank 0's side of the hop to rank 1 when both are GPUs that NCCL can join (device_hop.h):
// PipelineRunner states rank 0's device in the kHello, waits for rank 1's answer, decides with
// hop_uses_nccl like every other hop, and when it says NCCL makes the link (rank 0 of the pair:
// it makes the NCCL unique id and sends it over the ring link to rank 1). Then each kStep goes
// on the ring link in the device form and its rows follow over NCCL from the shard's device
// buffer (ShardForward::embed_device / forward_layers_device), never through host memory.
//
// Rank 0 asks for an answer only when its own entry could take NCCL (a CUDA shard with device
// hidden state, a build with NCCL, not JARVIS_NCCL=0): rank 1 reads the same entry in the hello and
// answers exactly then, so a CPU rank 0 exchanges nothing more than before. The return hop
// (last rank -> rank 0) always stays on the host path (device_hop.h says why).
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "csrc/model/shard_forward.h"
#include "engine/pipeline/device_hop.h"
#include "engine/pipeline/stage_message.h"
#include "transport/link.h"
#include "transport/nccl/device_link.h"

namespace jarvis {

class Rank0DeviceHop {
 public:
  using DeviceLinkFactory = std::function<std::unique_ptr<transport::DeviceLink>(
      transport::Link& control, int rank, int device, std::chrono::nanoseconds timeout)>;

  // Reads the shard's device (CUDA or not, ordinal, UUID) and the host name; NCCL per the build
  // and JARVIS_NCCL.
  explicit Rank0DeviceHop(const ShardForward& shard);

  // What the hello carries for rank 0.
  const StageDevice& device() const { return device_; }
  // false: the host path on this hop whatever rank 1 is (as JARVIS_NCCL=0). Before the hello.
  void set_nccl(bool enabled) {
    wanted_ = enabled;
    device_.nccl = enabled && device_.cuda && links_available_;
  }
  // Replaces transport::make_nccl_device_link (tests without GPUs).
  void set_device_link_factory(DeviceLinkFactory factory) {
    make_link_ = std::move(factory);
    links_available_ = true;
    set_nccl(wanted_);
  }
  // Bounds the wait for rank 1's answer, the NCCL setup and every transfer.
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

  // Forgets the link of an earlier hello (both ends set the hop up afresh with every hello).
  void reset() { link_.reset(); }
  // Call right after sending the hello on `to_next`. When rank 0's entry could take NCCL, waits
  // for rank 1's device answer on `to_next` (a record on `from_last` meanwhile is a worker's
  // kError: thrown with its text; pongs are skipped) and makes the NCCL link where hop_uses_nccl
  // says so. Throws (LinkTimeout, LinkBroken, InvalidArgument, StageMessageError) with a text
  // naming both devices; the caller turns it into PipelineError.
  void setup(transport::Link& to_next, transport::Link& from_last, const StageLimits& limits);

  // Whether the last hello set NCCL up on this hop.
  bool nccl() const { return link_ != nullptr; }
  // The device the answer named (meaningful after setup() when an answer was expected).
  const StageDevice& next_device() const { return next_; }
  // Moves `bytes` from the shard's device buffer to rank 1; returns once it may be reused.
  // Throws LinkBroken (transfer failed or timed out: a dead peer); the link is unusable then.
  void send_rows(const void* device_rows, size_t bytes);

 private:
  StageDevice device_;
  StageDevice next_;
  bool wanted_ = true;
  bool links_available_ = transport::nccl_device_link_built();
  DeviceLinkFactory make_link_ = transport::make_nccl_device_link;
  std::unique_ptr<transport::DeviceLink> link_;
  std::chrono::milliseconds timeout_{30000};
};

}  // namespace jarvis
