// A fixed set of threads running jobs from a bounded queue. The HTTP server hands it one
// complete request at a time (connection_front.h buffers requests before they get here), so a
// thread is only ever held by a request being answered, never by a client still sending.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace jarvis::server {

class WorkerPool {
 public:
  // max_pending: jobs that may wait for a thread (beyond the threads that are idle).
  WorkerPool(int threads, int max_pending);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False (and `job` untouched) when the queue is full.
  bool try_submit(std::function<void()>& job);
  // No job queued or running.
  bool quiet() const;
  // Runs what is queued, then joins the threads.
  void shutdown();

 private:
  void work();

  const size_t max_pending_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t idle_ = 0;
  size_t busy_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace jarvis::server
