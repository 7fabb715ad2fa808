// The build without the CUDA backend: no NCCL, callers keep hidden states in host memory.
#include "transport/nccl/device_link.h"

namespace jarvis::transport {

bool nccl_device_link_built() { return false; }

std::unique_ptr<DeviceLink> make_nccl_device_link(Link&, int, int, std::chrono::nanoseconds) {
  throw TransportError("NCCL device links need a build with the CUDA backend (-DJARVIS_CUDA=ON)");
}

}  // namespace jarvis::transport
