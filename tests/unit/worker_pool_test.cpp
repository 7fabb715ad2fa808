// The HTTP worker pool: a bounded queue (a full one refuses, leaving the job with the caller),
// and quiet() only once every job has run to its end.
#include "server/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace jarvis::server {
namespace {

TEST(WorkerPool, RefusesPastThreadsPlusQueueAndRunsEverythingAccepted) {
  WorkerPool pool(/*threads=*/2, /*max_pending=*/3);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> started{0}, done{0};
  auto blocking = [&] {
    ++started;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
    ++done;
  };
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    std::function<void()> job = blocking;
    if (pool.try_submit(job)) {
      ++accepted;
    } else {
      EXPECT_TRUE(job) << "a refused job stays with the caller";
    }
    if (i == 1) {  // both threads hold a job before the queue fills
      while (started < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  EXPECT_EQ(accepted, 2 + 3);
  EXPECT_FALSE(pool.quiet());
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pool.quiet() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(pool.quiet());
  EXPECT_EQ(done, accepted);
}

}  // namespace
}  // namespace jarvis::server
