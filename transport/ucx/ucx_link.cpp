#include "transport/ucx/ucx_link.h"

#include <poll.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

#include <cstdlib>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/frame.h"

namespace jarvis::transport {
namespace {

constexpr ucp_tag_t kTag = kUcxFrameTag;
constexpr ucp_tag_t kTagMask = ~ucp_tag_t{0};
// How long a broken link waits for UCX to finish requests it abandons. UCX 1.13 does not always
// complete a rendezvous send to a dead shared-memory peer even after a forced endpoint close; the
// peer that could read the buffer is gone, so waiting longer only delays the error report.
constexpr auto kAbandonWait = std::chrono::milliseconds(100);

std::string ucs_error(const std::string& what, ucs_status_t st) {
  return what + ": " + ucs_status_string(st);
}

void check(ucs_status_t st, const char* what) {
  if (st != UCS_OK) throw TransportError(ucs_error(what, st));
}

class UcxLink final : public Link {
 public:
  UcxLink(Socket sock, const UcxOptions& opt, std::string name);
  ~UcxLink() override;

  void send(MessageType type, uint32_t tag, const void* data, size_t bytes) override;
  std::optional<Message> try_recv(std::chrono::nanoseconds timeout) override;
  std::string describe() const override { return name_; }

 private:
  static void on_ep_error(void* arg, ucp_ep_h, ucs_status_t st) {
    auto* self = static_cast<UcxLink*>(arg);
    if (self->broken_.empty()) self->broken_ = ucs_error("UCX endpoint failed", st);
  }
  void exchange_addresses();
  void send_locked(MessageType type, uint32_t tag, const void* data, size_t bytes);
  void wait_locked(void* req, bool sending, const char* what);
  void close_endpoint_locked(bool force);
  void progress_locked();
  void poll_incoming_locked();
  void check_alive_locked();
  // The first report of a corrupt frame is a FrameError (whichever thread found it); every later
  // call, and every other failure, is LinkBroken.
  [[noreturn]] void throw_broken() {
    if (frame_error_pending_) {
      frame_error_pending_ = false;
      throw FrameError(name_ + ": " + broken_);
    }
    throw LinkBroken(name_ + ": " + broken_);
  }
  void heartbeat_loop();

  UcxOptions opt_;
  std::string name_;
  Socket sock_;
  ucp_context_h ctx_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
  int efd_ = -1;

  std::mutex mu_;  // serialises every UCX call (worker is UCS_THREAD_MODE_SERIALIZED) and the state below
  std::deque<Message> inbox_;
  uint64_t send_seq_ = 0, recv_seq_ = 0;
  Clock::time_point last_rx_, last_tx_;
  std::string broken_;  // non-empty once the link is down: the reason
  bool frame_error_pending_ = false;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread heartbeat_;
};

UcxLink::UcxLink(Socket sock, const UcxOptions& opt, std::string name)
    : opt_(opt), name_(std::move(name)), sock_(std::move(sock)) {
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
  try {
    // An explicit UCX_RNDV_THRESH in the environment wins (experiments); otherwise ours.
    if (!opt_.rndv_thresh.empty() && std::getenv("UCX_RNDV_THRESH") == nullptr) check(ucp_config_modify(config, "RNDV_THRESH", opt_.rndv_thresh.c_str()), "RNDV_THRESH");
    if (!opt_.tls.empty()) check(ucp_config_modify(config, "TLS", opt_.tls.c_str()), "TLS");
  } catch (...) {
    ucp_config_release(config);
    throw;
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  const ucs_status_t st = ucp_init(&params, config, &ctx_);
  ucp_config_release(config);
  check(st, "ucp_init");
  try {
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    check(ucp_worker_create(ctx_, &wp, &worker_), "ucp_worker_create");
    check(ucp_worker_get_efd(worker_, &efd_), "ucp_worker_get_efd");
    exchange_addresses();
  } catch (...) {
    if (ep_) ucp_ep_destroy(ep_);
    if (worker_) ucp_worker_destroy(worker_);
    ucp_cleanup(ctx_);
    throw;
  }
  last_rx_ = last_tx_ = Clock::now();
  heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

void UcxLink::exchange_addresses() {
  ucp_address_t* addr = nullptr;
  size_t len = 0;
  check(ucp_worker_get_address(worker_, &addr, &len), "ucp_worker_get_address");
  std::vector<uint8_t> mine(reinterpret_cast<uint8_t*>(addr), reinterpret_cast<uint8_t*>(addr) + len);
  ucp_worker_release_address(worker_, addr);
  const uint64_t my_len = mine.size();
  send_all(sock_, &my_len, sizeof(my_len), opt_.connect_timeout);
  send_all(sock_, mine.data(), mine.size(), opt_.connect_timeout);
  uint64_t peer_len = 0;
  recv_all(sock_, &peer_len, sizeof(peer_len), opt_.connect_timeout);
  if (peer_len == 0 || peer_len > (1u << 20)) throw FrameError(name_ + ": bad UCX address length from peer");
  std::vector<uint8_t> peer(peer_len);
  recv_all(sock_, peer.data(), peer.size(), opt_.connect_timeout);

  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                  UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.address = reinterpret_cast<const ucp_address_t*>(peer.data());
  ep.err_mode = opt_.ucx_peer_error_handling ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  ep.err_handler.cb = &UcxLink::on_ep_error;
  ep.err_handler.arg = this;
  check(ucp_ep_create(worker_, &ep, &ep_), "ucp_ep_create");
  // Both ends must have their endpoint before either sends: a one-byte barrier over the socket.
  uint8_t ready = 1;
  send_all(sock_, &ready, 1, opt_.connect_timeout);
  recv_all(sock_, &ready, 1, opt_.connect_timeout);
}

UcxLink::~UcxLink() {
  {
    std::lock_guard<std::mutex> lk(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  heartbeat_.join();
  std::lock_guard<std::mutex> lk(mu_);
  if (broken_.empty()) {
    try {
      send_locked(MessageType::kClose, 0, nullptr, 0);  // lets the peer fail fast and cleanly
    } catch (const TransportError&) {
    }
  }
  close_endpoint_locked(!broken_.empty());
  ucp_worker_destroy(worker_);
  ucp_cleanup(ctx_);
}

void UcxLink::close_endpoint_locked(bool force) {
  if (ep_ == nullptr) return;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  void* req = ucp_ep_close_nbx(ep_, &p);
  ep_ = nullptr;
  if (UCS_PTR_IS_PTR(req)) {
    // Bounded: a flush towards a dead peer must not hang the destructor.
    const auto deadline = Clock::now() + (force ? kAbandonWait : std::chrono::milliseconds(1000));
    while (ucp_request_check_status(req) == UCS_INPROGRESS && Clock::now() < deadline) ucp_worker_progress(worker_);
    ucp_request_free(req);
  }
}

void UcxLink::wait_locked(void* req, bool sending, const char* what) {
  if (req == nullptr) return;  // completed in place
  if (UCS_PTR_IS_ERR(req)) {
    if (broken_.empty()) broken_ = ucs_error(what, UCS_PTR_STATUS(req));
    throw_broken();
  }
  const auto deadline = Clock::now() + opt_.send_timeout;
  auto next_check = Clock::now() + std::chrono::milliseconds(1);
  ucs_status_t st;
  while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
    ucp_worker_progress(worker_);
    // A large send needs the peer to take our data while it may be sending to us: keep
    // accepting its messages so two simultaneous rendezvous sends cannot deadlock.
    if (sending) poll_incoming_locked();
    const auto now = Clock::now();
    if (now >= next_check) {  // a rendezvous towards a dead peer never completes: watch the peer
      check_alive_locked();
      next_check = now + std::chrono::milliseconds(1);
    }
    if (broken_.empty() && now > deadline) broken_ = std::string(what) + " did not complete in time";
    if (!broken_.empty()) {
      // A send towards a dead peer cannot be cancelled; force-closing the endpoint completes it
      // (with an error), so UCX no longer holds the caller's buffer when we return.
      if (sending) close_endpoint_locked(true);
      else ucp_request_cancel(worker_, req);
      const auto give_up = Clock::now() + kAbandonWait;
      while (ucp_request_check_status(req) == UCS_INPROGRESS && Clock::now() < give_up) ucp_worker_progress(worker_);
      ucp_request_free(req);
      throw_broken();
    }
  }
  ucp_request_free(req);
  if (st != UCS_OK) {
    if (broken_.empty()) broken_ = ucs_error(what, st);
    throw_broken();
  }
}

void UcxLink::send_locked(MessageType type, uint32_t tag, const void* data, size_t bytes) {
  FrameHeaderBytes header = encode_frame_header(type, tag, send_seq_, data, bytes);
  ucp_dt_iov_t iov[2] = {{header.data(), header.size()}, {const_cast<void*>(data), bytes}};
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
  p.datatype = ucp_dt_make_iov();
  void* req = ucp_tag_send_nbx(ep_, iov, bytes ? 2 : 1, kTag, &p);
  ++send_seq_;
  last_tx_ = Clock::now();
  wait_locked(req, true, "UCX send");
}

void UcxLink::send(MessageType type, uint32_t tag, const void* data, size_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!broken_.empty()) throw_broken();
  send_locked(type, tag, data, bytes);
}

void UcxLink::progress_locked() {
  while (ucp_worker_progress(worker_) != 0) {
  }
  poll_incoming_locked();
}

void UcxLink::poll_incoming_locked() {
  while (broken_.empty()) {
    ucp_tag_recv_info_t info{};
    ucp_tag_message_h msg = ucp_tag_probe_nb(worker_, kTag, kTagMask, 1, &info);
    if (msg == nullptr) return;
    if (info.length < kFrameHeaderBytes) {
      std::vector<uint8_t> junk(info.length + 1);  // take it off UCX's unexpected queue
      ucp_request_param_t p{};
      wait_locked(ucp_tag_msg_recv_nbx(worker_, junk.data(), info.length, msg, &p), false, "UCX receive");
      broken_ = "frame shorter than its header";
      frame_error_pending_ = true;
      return;
    }
    FrameHeaderBytes header{};
    Message m;
    m.payload.resize(info.length - kFrameHeaderBytes);
    ucp_dt_iov_t iov[2] = {{header.data(), header.size()}, {m.payload.data(), m.payload.size()}};
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
    p.datatype = ucp_dt_make_iov();
    wait_locked(ucp_tag_msg_recv_nbx(worker_, iov, m.payload.empty() ? 1 : 2, msg, &p), false, "UCX receive");
    try {
      const FrameHeader h = decode_frame_header(header.data());
      if (h.length != m.payload.size()) throw FrameError("frame: length field disagrees with message size");
      verify_frame(header.data(), m.payload.data(), m.payload.size());
      if (h.seq != recv_seq_)
        throw FrameError("frame: sequence " + std::to_string(h.seq) + ", expected " + std::to_string(recv_seq_));
      m.type = h.type;
      m.tag = h.tag;
      m.seq = h.seq;
    } catch (const FrameError& e) {
      broken_ = e.what();  // a corrupt stream cannot be resynchronised: the link is done
      frame_error_pending_ = true;
      return;
    }
    ++recv_seq_;
    last_rx_ = Clock::now();
    if (m.type == MessageType::kHeartbeat) continue;
    if (m.type == MessageType::kClose) {
      broken_ = "closed by peer";
      return;
    }
    inbox_.push_back(std::move(m));
  }
}

void UcxLink::check_alive_locked() {
  if (!broken_.empty()) return;
  pollfd p{sock_.fd(), POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) {
    char c;
    if ((p.revents & (POLLHUP | POLLERR)) || ::recv(sock_.fd(), &c, 1, MSG_DONTWAIT) <= 0)
      broken_ = "peer closed its bootstrap socket (process gone?)";
  }
  if (broken_.empty() && Clock::now() - last_rx_ > opt_.heartbeat_timeout)
    broken_ = "no message or heartbeat from peer for " + std::to_string(opt_.heartbeat_timeout.count()) + " ms";
}

std::optional<Message> UcxLink::try_recv(std::chrono::nanoseconds timeout) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (inbox_.empty() && broken_.empty()) {
        progress_locked();
        check_alive_locked();
      }
      if (!inbox_.empty()) {
        Message m = std::move(inbox_.front());
        inbox_.pop_front();
        return m;
      }
      if (!broken_.empty()) throw_broken();
      const auto now = Clock::now();
      if (now >= deadline) return std::nullopt;
      if (now - start < opt_.spin_before_sleep) {
        std::this_thread::yield();  // lets a peer sharing this core run while we spin
        continue;
      }
      if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) continue;  // events pending: progress again
    }
    // Sleep until UCX has an event, the bootstrap socket changes, or the next liveness check.
    const auto left = std::min<Clock::duration>(deadline - Clock::now(), opt_.heartbeat_interval);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns > 0 ? ns / 1000000000 : 0), static_cast<long>(ns > 0 ? ns % 1000000000 : 0)};
    pollfd fds[2] = {{efd_, POLLIN, 0}, {sock_.fd(), POLLIN, 0}};
    ::ppoll(fds, 2, &ts, nullptr);
  }
}

void UcxLink::heartbeat_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(stop_mu_);
      if (stop_cv_.wait_for(lk, opt_.heartbeat_interval / 2, [this] { return stop_; })) return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (!broken_.empty()) continue;
    try {
      progress_locked();
      if (Clock::now() - last_tx_ >= opt_.heartbeat_interval) send_locked(MessageType::kHeartbeat, 0, nullptr, 0);
      check_alive_locked();
    } catch (const TransportError& e) {
      if (broken_.empty()) broken_ = e.what();  // reported to the user by the next send/recv
    }
  }
}

}  // namespace

UcxListener::UcxListener(const std::string& host, uint16_t port, UcxOptions options)
    : socket_(tcp_listen(host, port)), port_(bound_port(socket_)), options_(std::move(options)) {}

std::unique_ptr<Link> UcxListener::accept(std::chrono::milliseconds timeout) {
  Socket s = tcp_accept(socket_, timeout);
  return std::make_unique<UcxLink>(std::move(s), options_, "ucx link (accepted on port " + std::to_string(port_) + ")");
}

std::unique_ptr<Link> ucx_connect(const std::string& host, uint16_t port, UcxOptions options) {
  Socket s = tcp_connect(host, port, options.connect_timeout);
  return std::make_unique<UcxLink>(std::move(s), options, "ucx link to " + host + ":" + std::to_string(port));
}

}  // namespace jarvis::transport
