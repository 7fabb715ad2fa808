#include "transport/measured_link.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace jarvis::transport {
namespace {

// Ping payload: a marker and the sender's steady-clock time, so a pong carries its own send time
// (no table of outstanding pings; a late pong is still measured right).
constexpr uint64_t kPingMarker = 0x474e4950534a4a31ull;  // any fixed value: tells our pings from others
constexpr size_t kPingBytes = 16;

uint64_t to_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

class MeasuredLink final : public Link {
 public:
  MeasuredLink(std::unique_ptr<Link> inner, MeasuredLinkOptions options)
      : inner_(std::move(inner)), opt_(options), created_ns_(now_ns()) {
    reader_ = std::thread([this] { read_loop(); });
  }
  ~MeasuredLink() override {
    stop_.store(true);
    reader_.join();  // within opt_.poll: the reader's receive slice
  }

  void send(MessageType type, uint32_t tag, const void* data, size_t bytes) override {
    inner_->send(type, tag, data, bytes);
    if (type == MessageType::kData) {
      sent_messages_.fetch_add(1, std::memory_order_relaxed);
      sent_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    }
  }

  std::optional<Message> try_recv(std::chrono::nanoseconds timeout) override {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, timeout, [this] { return !queue_.empty() || error_ != nullptr; });
    if (!queue_.empty()) {
      Message m = std::move(queue_.front());
      queue_.pop_front();
      return m;
    }
    if (error_ == nullptr) return std::nullopt;
    if (!error_reported_) {  // the wrapped link's own exception first (FrameError stays FrameError)
      error_reported_ = true;
      std::rethrow_exception(error_);
    }
    throw LinkBroken(error_text_);
  }

  std::string describe() const override { return inner_->describe(); }

  LinkStats stats() const {
    LinkStats s;
    s.sent_messages = sent_messages_.load(std::memory_order_relaxed);
    s.sent_bytes = sent_bytes_.load(std::memory_order_relaxed);
    s.received_messages = received_messages_.load(std::memory_order_relaxed);
    s.received_bytes = received_bytes_.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> lk(rtt_mu_);
    s.rtt_samples = rtt_.rtt_samples;
    s.rtt_last = rtt_.rtt_last;
    s.rtt_min = rtt_.rtt_min;
    s.rtt_smoothed = rtt_.rtt_smoothed;
    return s;
  }

 private:
  void read_loop() {
    auto next_ping = Clock::now();
    while (!stop_.load()) {
      auto slice = Clock::duration(opt_.poll);
      if (opt_.ping_interval.count() > 0) {
        const auto now = Clock::now();
        if (now >= next_ping) {
          send_ping();
          next_ping = now + opt_.ping_interval;
        }
        slice = std::min(slice, next_ping - now);
      }
      std::optional<Message> m;
      try {
        m = inner_->try_recv(slice);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(mu_);
        error_ = std::current_exception();
        error_text_ = e.what();
        cv_.notify_all();
        return;  // a broken link stays broken: nothing more to read
      }
      if (!m) continue;
      if (m->type == MessageType::kPing) {
        try {
          inner_->send(MessageType::kPong, m->tag, m->payload.data(), m->payload.size());
        } catch (const TransportError&) {
          // The link is going down; the next receive reports it.
        }
        continue;
      }
      if (m->type == MessageType::kPong) {
        record_pong(*m);
        continue;
      }
      if (m->type == MessageType::kData) {
        received_messages_.fetch_add(1, std::memory_order_relaxed);
        received_bytes_.fetch_add(m->payload.size(), std::memory_order_relaxed);
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        queue_.push_back(std::move(*m));
      }
      cv_.notify_one();
    }
  }

  void send_ping() {
    uint8_t payload[kPingBytes];
    put_u64(payload, kPingMarker);
    put_u64(payload + 8, static_cast<uint64_t>(now_ns()));
    try {
      inner_->send(MessageType::kPing, ping_seq_++, payload, sizeof(payload));
    } catch (const TransportError&) {
      // As for pongs: a broken link is reported by the receive side and by the caller's send.
    }
  }

  // A pong that is not the answer to one of our pings (wrong size or marker, a time from before
  // this link existed or from the future) is ignored: it cannot be timed.
  void record_pong(const Message& m) {
    if (m.payload.size() != kPingBytes || to_u64(m.payload.data()) != kPingMarker) return;
    const int64_t sent = static_cast<int64_t>(to_u64(m.payload.data() + 8));
    const int64_t now = now_ns();
    if (sent < created_ns_ || sent > now) return;
    const std::chrono::nanoseconds rtt(now - sent);
    std::lock_guard<std::mutex> lk(rtt_mu_);
    rtt_.rtt_last = rtt;
    if (rtt_.rtt_samples == 0 || rtt < rtt_.rtt_min) rtt_.rtt_min = rtt;
    rtt_.rtt_smoothed = rtt_.rtt_samples == 0 ? rtt : rtt_.rtt_smoothed + (rtt - rtt_.rtt_smoothed) / 8;
    ++rtt_.rtt_samples;
  }

  std::unique_ptr<Link> inner_;
  const MeasuredLinkOptions opt_;
  const int64_t created_ns_;
  std::atomic<uint64_t> sent_messages_{0}, sent_bytes_{0}, received_messages_{0}, received_bytes_{0};
  mutable std::mutex rtt_mu_;
  LinkStats rtt_;  // only the rtt_* fields are used
  uint32_t ping_seq_ = 0;  // reader thread only

  std::mutex mu_;  // queue_ and the error
  std::condition_variable cv_;
  std::deque<Message> queue_;
  std::exception_ptr error_;
  std::string error_text_;
  bool error_reported_ = false;

  std::atomic<bool> stop_{false};
  std::thread reader_;  // last: starts after every member above exists
};

}  // namespace

std::unique_ptr<Link> make_measured_link(std::unique_ptr<Link> inner, MeasuredLinkOptions options) {
  if (!inner) throw LinkSpecError("make_measured_link: no link to wrap");
  if (options.poll.count() <= 0) throw LinkSpecError("make_measured_link: poll must be positive");
  return std::make_unique<MeasuredLink>(std::move(inner), options);
}

std::optional<LinkStats> link_stats(const Link& link) {
  const auto* m = dynamic_cast<const MeasuredLink*>(&link);
  if (m == nullptr) return std::nullopt;
  return m->stats();
}

}  // namespace jarvis::transport
