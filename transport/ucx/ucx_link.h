// UCX links between processes (TCP and shared memory, whichever UCX picks; the default between
// processes). Bootstrap: a TCP listener on host:port; the connecting side dials it, the two ends
// swap UCX worker addresses, and the socket stays open as a fast "peer died" signal. Each link owns
// its own UCP context and worker, so tag matching never mixes peers. Heartbeats detect a hung peer.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "transport/link.h"
#include "transport/ucx/bootstrap_socket.h"

namespace jarvis::transport {

// Every frame travels as one tagged UCX message with this tag (one peer per worker, so one tag).
inline constexpr uint64_t kUcxFrameTag = 0x4a4c;

struct UcxOptions {
  // UCX_RNDV_THRESH for this link's context. UCX's default ("auto") switches 8-16 KB messages over
  // TCP to rendezvous, which costs ~50 us per message (DESIGN.md); one token's hidden state is in
  // that range, so eager up to 256 KB. "" keeps UCX's default (used to measure the difference);
  // a UCX_RNDV_THRESH environment variable, when set, overrides this. UCX_TLS etc. apply as usual.
  std::string rndv_thresh = "256k";
  std::string tls;  // UCX_TLS; "" = UCX's default selection (shared memory + TCP on one host)
  // UCX's own peer-failure handling (UCP_ERR_HANDLING_MODE_PEER). UCX 1.13 then refuses its
  // shared-memory transports ("no peer failure handler") and falls back to TCP on one host, so it
  // is off by default: a dead or silent peer is detected by the bootstrap socket and heartbeats.
  bool ucx_peer_error_handling = false;
  std::chrono::milliseconds heartbeat_interval{200};
  std::chrono::milliseconds heartbeat_timeout{1500};  // silence longer than this breaks the link
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds send_timeout{10000};      // a send not completed by then breaks the link
  std::chrono::microseconds spin_before_sleep{50};    // busy-poll this long in recv before blocking
};

class UcxListener {
 public:
  // host "" or "0.0.0.0" listens on every interface; port 0 picks a free port (see port()).
  UcxListener(const std::string& host, uint16_t port, UcxOptions options = {});
  uint16_t port() const { return port_; }
  // Waits for one peer to connect (throws LinkTimeout); may be called again for more peers.
  std::unique_ptr<Link> accept(std::chrono::milliseconds timeout);

 private:
  Socket socket_;
  uint16_t port_;
  UcxOptions options_;
};

// Connects to a UcxListener at host:port, retrying until options.connect_timeout.
std::unique_ptr<Link> ucx_connect(const std::string& host, uint16_t port, UcxOptions options = {});

}  // namespace jarvis::transport
