// GPU buffers between two ranks over NCCL send/recv. NCCL moves device bytes but has no message
// boundaries it can announce, no checksums and no failure detection of its own, so a control Link
// (UCX or in-process) carries the frame for each message (tag and length; its CRC covers those)
// and NCCL carries the payload; a stalled transfer is aborted after a timeout and reported as
// LinkBroken. Built only with the CUDA backend (JARVIS_HAVE_CUDA).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "transport/link.h"

namespace jarvis::transport {

class NcclLink {
 public:
  // Builds a two-rank communicator: rank 0 makes the NCCL unique id and sends it over `control`.
  // The communicator is non-blocking, so a peer that never joins (or dies during setup) ends in
  // LinkBroken after `timeout` instead of a hang in ncclCommInitRank.
  // `rank` is 0 or 1 (the two ends must differ); `device` is this rank's CUDA device. `control`
  // must outlive this object; only this object should use it meanwhile.
  NcclLink(Link& control, int rank, int device, cudaStream_t stream,
           std::chrono::nanoseconds timeout = std::chrono::seconds(30));
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  // Announces the message on the control link and enqueues ncclSend of `bytes` from device memory
  // on the stream; call synchronize() before reusing the buffer.
  void send(uint32_t tag, const void* device_data, size_t bytes);

  struct Received {
    uint32_t tag = 0;
    size_t bytes = 0;
  };
  // Waits up to `timeout` for the announcement, checks it fits `capacity`, and enqueues the
  // ncclRecv into `device_data`; the data is there after synchronize().
  Received recv(void* device_data, size_t capacity, std::chrono::nanoseconds timeout);

  // Enqueue a transfer of exactly `bytes` with no announcement on the control link: for callers
  // whose own records on that link already say what follows (the pipeline ring's kStep header).
  // Call synchronize() before reusing the buffer or reading the data.
  void post_send(const void* device_data, size_t bytes);
  void post_recv(void* device_data, size_t bytes);

  // Waits for the stream's queued transfers; a transfer not done within the timeout, or an NCCL
  // asynchronous error, aborts the communicator and throws LinkBroken.
  void synchronize();

 private:
  // Polls the communicator until its last call finished (non-blocking communicators may return
  // ncclInProgress); an error or the timeout aborts it and throws LinkBroken.
  void wait_ready(const char* what);
  [[noreturn]] void abort_and_throw(const std::string& why);

  Link& control_;
  int rank_;
  int device_;
  cudaStream_t stream_;
  std::chrono::nanoseconds timeout_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
};

}  // namespace jarvis::transport
