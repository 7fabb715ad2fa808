#include "transport/shaper.h"

#include <sys/prctl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

namespace jarvis::transport {
namespace {

// Sleeping wakes up to ~60 us late (timer slack is cut to 1 ns on the delivery thread, the rest
// is wake-up cost); the last stretch is spun without yielding. Yielding in the spin would hand the
// core to a busy neighbour for a whole scheduler tick (4 ms at HZ=250) on a loaded machine, while
// a thread woken from sleep gets the scheduler's wake-up preference.
constexpr auto kSpinWindow = std::chrono::microseconds(100);
// How far the wire schedule may run ahead of the sender before send() blocks: a small transmit
// queue, like a socket buffer. Without it every late wake-up of the sender would leave the wire
// idle and the achieved bandwidth would fall below the cap on a loaded machine.
constexpr auto kMaxBacklog = std::chrono::milliseconds(2);

void wait_until_precise(Clock::time_point t) {
  const auto now = Clock::now();
  if (t - now > kSpinWindow) std::this_thread::sleep_until(t - kSpinWindow);
  while (Clock::now() < t) {
  }
}

class ShapedLink final : public Link {
 public:
  ShapedLink(std::unique_ptr<Link> inner, LinkShape shape, uint64_t seed)
      : inner_(std::move(inner)), shape_(shape), rng_(seed), wire_free_at_(Clock::now()), last_due_(wire_free_at_) {
    thread_ = std::thread([this] { deliver_loop(); });
  }
  ~ShapedLink() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void send(MessageType type, uint32_t tag, const void* data, size_t bytes) override {
    Pending p;
    p.type = type;
    p.tag = tag;
    p.payload.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
    Clock::time_point wire_done;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_.empty()) throw LinkBroken(describe() + ": " + error_);
      const auto now = Clock::now();
      const auto start = std::max(now, wire_free_at_);
      auto wire = Clock::duration(0);
      if (shape_.bits_per_second > 0)
        wire = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(bytes * 8.0 / shape_.bits_per_second));
      wire_done = wire_free_at_ = start + wire;
      auto delay = std::chrono::duration_cast<Clock::duration>(shape_.delay);
      if (shape_.jitter.count() > 0) {
        std::uniform_int_distribution<int64_t> d(-shape_.jitter.count(), shape_.jitter.count());
        delay += std::chrono::nanoseconds(d(rng_));
        if (delay.count() < 0) delay = Clock::duration(0);
      }
      p.due = std::max(wire_done + delay, last_due_);  // never overtake an earlier message
      last_due_ = p.due;
      queue_.push_back(std::move(p));
    }
    cv_.notify_one();
    // The sender is held back while more than kMaxBacklog of bytes wait for the wire.
    if (wire_done - kMaxBacklog > Clock::now()) wait_until_precise(wire_done - kMaxBacklog);
  }

  std::optional<Message> try_recv(std::chrono::nanoseconds timeout) override { return inner_->try_recv(timeout); }
  std::string describe() const override { return "shaped " + inner_->describe(); }

 private:
  struct Pending {
    MessageType type;
    uint32_t tag;
    std::vector<uint8_t> payload;
    Clock::time_point due;
  };

  void deliver_loop() {
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // this thread's sleeps end on time, not 50 us late
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop requested and nothing left: pending messages are flushed first
      Pending p = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      if (!stop_) wait_until_precise(p.due);
      try {
        inner_->send(p.type, p.tag, p.payload.data(), p.payload.size());
      } catch (const TransportError& e) {
        lk.lock();
        error_ = e.what();
        queue_.clear();
        continue;
      }
      lk.lock();
    }
  }

  std::unique_ptr<Link> inner_;
  const LinkShape shape_;
  std::mt19937_64 rng_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  Clock::time_point wire_free_at_, last_due_;
  std::string error_;  // set when the inner link failed under the delivery thread
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Link> make_shaped_link(std::unique_ptr<Link> inner, LinkShape shape, uint64_t seed) {
  return std::make_unique<ShapedLink>(std::move(inner), shape, seed);
}

}  // namespace jarvis::transport
