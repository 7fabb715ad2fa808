#include "transport/inproc_link.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <atomic>
#include <mutex>

namespace jarvis::transport {
namespace {

struct Channel {  // one direction
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> queue;
  uint64_t next_seq = 0;
};

struct Shared {
  Channel dir[2];  // dir[i]: messages towards end i
  std::atomic<bool> closed[2] = {false, false};
};

class InprocLink final : public Link {
 public:
  InprocLink(std::shared_ptr<Shared> s, int side) : s_(std::move(s)), side_(side) {}
  ~InprocLink() override {
    // Wake the peer so a blocked try_recv notices the close at once.
    s_->closed[side_] = true;
    Channel& peer = s_->dir[1 - side_];
    { std::lock_guard<std::mutex> lk(peer.mu); }  // a waiter between predicate and sleep sees the flag
    peer.cv.notify_all();
  }

  void send(MessageType type, uint32_t tag, const void* data, size_t bytes) override {
    Message m;
    m.type = type;
    m.tag = tag;
    m.payload.resize(bytes);
    if (bytes) std::memcpy(m.payload.data(), data, bytes);
    Channel& peer = s_->dir[1 - side_];
    {
      std::lock_guard<std::mutex> lk(peer.mu);
      if (s_->closed[1 - side_]) throw LinkBroken(describe() + ": peer closed");
      m.seq = peer.next_seq++;
      peer.queue.push_back(std::move(m));
    }
    peer.cv.notify_one();
  }

  std::optional<Message> try_recv(std::chrono::nanoseconds timeout) override {
    Channel& me = s_->dir[side_];
    std::unique_lock<std::mutex> lk(me.mu);
    const bool ready = me.cv.wait_for(lk, timeout, [&] { return !me.queue.empty() || s_->closed[1 - side_]; });
    if (!ready) return std::nullopt;
    if (me.queue.empty()) throw LinkBroken(describe() + ": peer closed");
    Message m = std::move(me.queue.front());
    me.queue.pop_front();
    return m;
  }

  std::string describe() const override { return "inproc link end " + std::to_string(side_); }

 private:
  std::shared_ptr<Shared> s_;
  int side_;
};

}  // namespace

std::pair<std::unique_ptr<Link>, std::unique_ptr<Link>> make_inproc_link_pair() {
  auto s = std::make_shared<Shared>();
  return {std::make_unique<InprocLink>(s, 0), std::make_unique<InprocLink>(s, 1)};
}

}  // namespace jarvis::transport
