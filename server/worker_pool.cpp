#include "server/worker_pool.h"

#include <algorithm>

namespace jarvis::server {

WorkerPool::WorkerPool(int threads, int max_pending) : max_pending_(static_cast<size_t>(std::max(0, max_pending))) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() { shutdown(); }

bool WorkerPool::try_submit(std::function<void()>& job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || (jobs_.size() >= max_pending_ && idle_ <= jobs_.size())) return false;
  jobs_.push_back(std::move(job));
  cv_.notify_one();
  return true;
}

bool WorkerPool::quiet() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.empty() && busy_ == 0;
}

void WorkerPool::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) return;  // stopping, nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    ++busy_;
    lock.unlock();
    job();
    job = nullptr;  // whatever the job holds is released before it counts as done
    lock.lock();
    --busy_;
  }
}

}  // namespace jarvis::server
