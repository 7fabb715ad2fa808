#include "transport/nccl/nccl_link.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "transport/nccl/device_link.h"

namespace jarvis::transport {
namespace {

// One check for both libraries: throws with the call, file and line.
#define JARVIS_NCCL_CHECK(call)                                                                       \
  do {                                                                                                \
    const ncclResult_t r_ = (call);                                                                   \
    if (r_ != ncclSuccess && r_ != ncclInProgress)                                                    \
      throw TransportError(std::string(#call) + " failed at " __FILE__ ":" + std::to_string(__LINE__) + \
                           ": " + ncclGetErrorString(r_));                                            \
  } while (0)
#define JARVIS_CUDA_CHECK(call)                                                                       \
  do {                                                                                                \
    const cudaError_t e_ = (call);                                                                    \
    if (e_ != cudaSuccess)                                                                            \
      throw TransportError(std::string(#call) + " failed at " __FILE__ ":" + std::to_string(__LINE__) + \
                           ": " + cudaGetErrorString(e_));                                            \
  } while (0)

// Control-link payload announcing one NCCL transfer: its length (the tag travels in the frame).
struct Announce {
  uint64_t bytes;
};

}  // namespace

NcclLink::NcclLink(Link& control, int rank, int device, cudaStream_t stream, std::chrono::nanoseconds timeout)
    : control_(control), rank_(rank), device_(device), stream_(stream), timeout_(timeout) {
  if (rank != 0 && rank != 1) throw LinkSpecError("NcclLink: rank must be 0 or 1");
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id{};
  if (rank_ == 0) {
    JARVIS_NCCL_CHECK(ncclGetUniqueId(&id));
    control_.send(MessageType::kData, 0, &id, sizeof(id));
  } else {
    // The control link may be a ring link that also carries RTT probes: only data is the id.
    Message m = control_.recv(timeout_);
    const auto deadline = Clock::now() + timeout_;
    while (m.type != MessageType::kData) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) throw LinkTimeout("NcclLink: no unique id from rank 0");
      m = control_.recv(left);
    }
    if (m.payload.size() != sizeof(id)) throw FrameError("NcclLink: bad unique id from rank 0");
    std::memcpy(&id, m.payload.data(), sizeof(id));
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  JARVIS_NCCL_CHECK(ncclCommInitRankConfig(&comm_, 2, id, rank_, &config));
  wait_ready("communicator setup");
}

void NcclLink::abort_and_throw(const std::string& why) {
  aborted_ = true;
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
  throw LinkBroken("NcclLink: " + why);
}

void NcclLink::wait_ready(const char* what) {
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) abort_and_throw(std::string(what) + ": " + ncclGetErrorString(r));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) abort_and_throw(std::string(what) + " failed: " + ncclGetErrorString(state));
    if (Clock::now() > deadline) abort_and_throw(std::string(what) + " timed out (peer gone?)");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

NcclLink::~NcclLink() {
  if (comm_ == nullptr) return;
  if (aborted_) {
    ncclCommAbort(comm_);
    return;
  }
  // A non-blocking communicator finalises asynchronously: wait a little for it (a peer that is
  // gone cannot answer; shutting down should not wait out a transfer timeout), else abort.
  const auto deadline = Clock::now() + std::min<std::chrono::nanoseconds>(timeout_, std::chrono::seconds(5));
  ncclResult_t state = ncclCommFinalize(comm_);
  while (state == ncclInProgress && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
  }
  if (state == ncclSuccess) ncclCommDestroy(comm_);
  else ncclCommAbort(comm_);
}

void NcclLink::send(uint32_t tag, const void* device_data, size_t bytes) {
  if (aborted_) throw LinkBroken("NcclLink: communicator aborted");
  const Announce a{bytes};
  control_.send(MessageType::kData, tag, &a, sizeof(a));
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  JARVIS_NCCL_CHECK(ncclSend(device_data, bytes, ncclUint8, 1 - rank_, comm_, stream_));
  wait_ready("ncclSend");  // enqueued on the stream once ready: synchronize() may then query it
}

NcclLink::Received NcclLink::recv(void* device_data, size_t capacity, std::chrono::nanoseconds timeout) {
  if (aborted_) throw LinkBroken("NcclLink: communicator aborted");
  Message m = control_.recv(timeout);
  Announce a{};
  if (m.payload.size() != sizeof(a)) throw FrameError("NcclLink: control message is not a transfer announcement");
  std::memcpy(&a, m.payload.data(), sizeof(a));
  if (a.bytes > capacity)
    throw FrameError("NcclLink: incoming " + std::to_string(a.bytes) + " bytes exceed the buffer of " +
                     std::to_string(capacity));
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  JARVIS_NCCL_CHECK(ncclRecv(device_data, a.bytes, ncclUint8, 1 - rank_, comm_, stream_));
  wait_ready("ncclRecv");
  return {m.tag, a.bytes};
}

void NcclLink::post_send(const void* device_data, size_t bytes) {
  if (aborted_) throw LinkBroken("NcclLink: communicator aborted");
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  JARVIS_NCCL_CHECK(ncclSend(device_data, bytes, ncclUint8, 1 - rank_, comm_, stream_));
  wait_ready("ncclSend");  // enqueued on the stream once ready: synchronize() may then query it
}

void NcclLink::post_recv(void* device_data, size_t bytes) {
  if (aborted_) throw LinkBroken("NcclLink: communicator aborted");
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  JARVIS_NCCL_CHECK(ncclRecv(device_data, bytes, ncclUint8, 1 - rank_, comm_, stream_));
  wait_ready("ncclRecv");
}

void NcclLink::synchronize() {
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) JARVIS_CUDA_CHECK(e);
    ncclResult_t async = ncclSuccess;
    JARVIS_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    // A peer that died mid-transfer leaves NCCL spinning forever; abort rather than hang.
    if (async != ncclSuccess && async != ncclInProgress) {
      abort_and_throw(std::string("transfer failed: ") + ncclGetErrorString(async));
    }
    if (Clock::now() > deadline) abort_and_throw("transfer timed out (peer gone?)");
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

namespace {

// DeviceLink over NcclLink, with a stream of its own. Every call waits for its transfer, so the
// caller's compute stream and this one are ordered by the host (the shard synchronises its
// stream before handing the buffer over).
class NcclDeviceLink final : public DeviceLink {
 public:
  NcclDeviceLink(Link& control, int rank, int device, std::chrono::nanoseconds timeout)
      : stream_(make_stream(device)), link_(make_link(control, rank, device, timeout)) {}
  ~NcclDeviceLink() override {
    link_.reset();  // the communicator before the stream it uses
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  void send(const void* device_data, size_t bytes) override {
    if (bytes == 0) return;
    guard([&] {
      link_->post_send(device_data, bytes);
      link_->synchronize();
    });
  }
  void recv(void* device_data, size_t bytes) override {
    if (bytes == 0) return;
    guard([&] {
      link_->post_recv(device_data, bytes);
      link_->synchronize();
    });
  }

 private:
  static cudaStream_t make_stream(int device) {
    JARVIS_CUDA_CHECK(cudaSetDevice(device));
    cudaStream_t s = nullptr;
    JARVIS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }
  std::unique_ptr<NcclLink> make_link(Link& control, int rank, int device, std::chrono::nanoseconds timeout) {
    try {
      return std::make_unique<NcclLink>(control, rank, device, stream_, timeout);
    } catch (...) {
      cudaStreamDestroy(stream_);
      stream_ = nullptr;
      throw;
    }
  }
  // Any failure of a transfer (an NCCL or CUDA error as well as a timeout) leaves the link
  // unusable: it is reported as LinkBroken, like a broken UCX link.
  template <typename F>
  void guard(F&& f) {
    try {
      f();
    } catch (const LinkBroken&) {
      throw;
    } catch (const TransportError& e) {
      throw LinkBroken(std::string("NCCL transfer: ") + e.what());
    }
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<NcclLink> link_;
};

}  // namespace

bool nccl_device_link_built() { return true; }

std::unique_ptr<DeviceLink> make_nccl_device_link(Link& control, int rank, int device,
                                                  std::chrono::nanoseconds timeout) {
  return std::make_unique<NcclDeviceLink>(control, rank, device, timeout);
}

}  // namespace jarvis::transport
