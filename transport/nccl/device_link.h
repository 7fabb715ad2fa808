// A link for device buffers between two GPU ranks, with no CUDA or NCCL in its interface, so
// engine code (engine/pipeline/stage_worker.cpp) can hold one in every build. The NCCL backend
// (nccl_link.h) implements it in a CUDA build; elsewhere make_nccl_device_link throws and
// nccl_device_link_built() is false, so callers fall back to host memory over their Link.
//
// Message boundaries are the caller's: the sender's frame on its control link says how many
// bytes follow, so send and recv here move exactly `bytes` with no announcement of their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "transport/link.h"

namespace jarvis::transport {

class DeviceLink {
 public:
  virtual ~DeviceLink() = default;
  DeviceLink() = default;
  DeviceLink(const DeviceLink&) = delete;
  DeviceLink& operator=(const DeviceLink&) = delete;

  // Moves `bytes` from device memory on this rank to the peer's recv(); returns once the buffer
  // may be reused. Throws LinkBroken when the transfer fails or does not finish within the
  // link's timeout (a dead peer): the link is unusable afterwards.
  virtual void send(const void* device_data, size_t bytes) = 0;
  // Receives exactly `bytes` into device memory; returns once they are there. Throws as send().
  virtual void recv(void* device_data, size_t bytes) = 0;
};

// True in a build with the CUDA backend (and so NCCL).
bool nccl_device_link_built();

// A two-rank NCCL communicator on CUDA device `device`: rank 0 makes the unique id and sends it
// over `control` (which must outlive the link), rank 1 waits for it there at most `timeout`;
// every transfer is then bounded by `timeout`. Throws TransportError in a build without NCCL.
std::unique_ptr<DeviceLink> make_nccl_device_link(Link& control, int rank, int device,
                                                  std::chrono::nanoseconds timeout);

}  // namespace jarvis::transport
