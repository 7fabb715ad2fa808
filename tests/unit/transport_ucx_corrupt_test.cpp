// End-to-end frame checks on a UCX link: a raw UCX sender (written here against the UCP API, not
// through UcxLink) joins a UcxListener with the same bootstrap and sends frames that are corrupt or
// out of sequence; the link must report FrameError, then LinkBroken, never deliver the message.
#include <gtest/gtest.h>
#include <ucp/api/ucp.h>

#include <cstring>
#include <thread>
#include <vector>

#include "transport/frame.h"
#include "transport/ucx/bootstrap_socket.h"
#include "transport/ucx/ucx_link.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

namespace {

// A bare UCP endpoint towards a UcxLink, bootstrapped by the link's protocol: both ends send
// (u64 length, worker address), create their endpoint, then swap one "ready" byte.
class RawUcxSender {
 public:
  RawUcxSender(const std::string& host, uint16_t port) : sock_(tcp_connect(host, port, 5000ms)) {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG;
    EXPECT_EQ(ucp_init(&params, nullptr, &ctx_), UCS_OK);
    ucp_worker_params_t wp{};
    EXPECT_EQ(ucp_worker_create(ctx_, &wp, &worker_), UCS_OK);
    ucp_address_t* addr = nullptr;
    size_t len = 0;
    EXPECT_EQ(ucp_worker_get_address(worker_, &addr, &len), UCS_OK);
    const uint64_t len64 = len;
    send_all(sock_, &len64, 8, 5000ms);
    send_all(sock_, addr, len, 5000ms);
    ucp_worker_release_address(worker_, addr);
    uint64_t peer_len = 0;
    recv_all(sock_, &peer_len, 8, 5000ms);
    std::vector<uint8_t> peer(peer_len);
    recv_all(sock_, peer.data(), peer.size(), 5000ms);
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep.address = reinterpret_cast<const ucp_address_t*>(peer.data());
    EXPECT_EQ(ucp_ep_create(worker_, &ep, &ep_), UCS_OK);
    uint8_t ready = 1;
    send_all(sock_, &ready, 1, 5000ms);
    recv_all(sock_, &ready, 1, 5000ms);
  }
  ~RawUcxSender() {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* req = ucp_ep_close_nbx(ep_, &p);
    if (UCS_PTR_IS_PTR(req)) {
      while (ucp_request_check_status(req) == UCS_INPROGRESS) ucp_worker_progress(worker_);
      ucp_request_free(req);
    }
    ucp_worker_destroy(worker_);
    ucp_cleanup(ctx_);
  }
  void send_raw(const std::vector<uint8_t>& bytes) {
    ucp_request_param_t p{};
    void* req = ucp_tag_send_nbx(ep_, bytes.data(), bytes.size(), kUcxFrameTag, &p);
    ASSERT_FALSE(UCS_PTR_IS_ERR(req));
    if (req != nullptr) {
      while (ucp_request_check_status(req) == UCS_INPROGRESS) ucp_worker_progress(worker_);
      ucp_request_free(req);
    }
  }

 private:
  Socket sock_;
  ucp_context_h ctx_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
};

std::vector<uint8_t> frame(uint64_t seq, const std::vector<uint8_t>& payload) {
  const auto h = encode_frame_header(MessageType::kData, 1, seq, payload.data(), payload.size());
  std::vector<uint8_t> out(h.size() + payload.size());
  std::memcpy(out.data(), h.data(), h.size());
  std::memcpy(out.data() + h.size(), payload.data(), payload.size());
  return out;
}

}  // namespace

TEST(TransportUcxFrames, CorruptOrOutOfSequenceFramesAreRejected) {
  const std::vector<uint8_t> payload(16384, 0x11);
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
  };
  std::vector<Case> cases;
  cases.push_back({"valid", frame(0, payload)});
  auto flipped = frame(0, payload);
  flipped[kFrameHeaderBytes + 5000] ^= 0x04;
  cases.push_back({"payload byte flipped", flipped});
  auto bad_header = frame(0, payload);
  bad_header[9] ^= 0x80;  // tag byte
  cases.push_back({"header byte flipped", bad_header});
  cases.push_back({"sequence skipped", frame(3, payload)});
  cases.push_back({"shorter than a header", std::vector<uint8_t>(10, 0)});
  auto truncated = frame(0, payload);
  truncated.resize(truncated.size() - 1);
  cases.push_back({"length disagrees", truncated});

  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    UcxListener listener("127.0.0.1", 0);
    std::unique_ptr<Link> link;
    std::thread t([&] { link = listener.accept(10s); });
    RawUcxSender raw("127.0.0.1", listener.port());
    t.join();
    raw.send_raw(c.bytes);
    if (std::string(c.name) == "valid") {  // the control case: the raw sender speaks the protocol
      Message m = link->recv(5s);
      EXPECT_EQ(m.payload, payload);
      continue;
    }
    EXPECT_THROW(link->try_recv(5s), FrameError);
    EXPECT_THROW(link->try_recv(100ms), LinkBroken);  // a corrupt stream is not resumed
  }
}
