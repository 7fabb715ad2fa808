// A fixed set of worker threads for CPU kernels, with one primitive: a statically chunked
// parallel_for. The calling thread does the first chunk itself, so ThreadPool(1) runs inline and
// costs no thread at all.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <mutex>
#include <thread>
#include <vector>

namespace jarvis::cpu {

class ThreadPool {
 public:
  // n_threads counts the caller: n_threads - 1 workers are started. n_threads < 1 is treated as 1.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Splits [begin, end) into size() contiguous chunks of near-equal length (static chunking: the
  // same index always lands on the same thread, which keeps per-thread weight rows warm in cache)
  // and calls fn(chunk_begin, chunk_end) for each non-empty chunk, returning when all are done.
  // `grain` rounds chunk boundaries to multiples of it (for kernels that work in row tiles).
  // Calls from inside a running fn execute inline. The first exception thrown by fn is rethrown.
  template <typename Fn>
  void parallel_for(int64_t begin, int64_t end, Fn&& fn, int64_t grain = 1) {
    // A plain function pointer + context instead of std::function: no allocation per call,
    // which matters when every layer of every decode step calls this several times.
    using F = std::remove_reference_t<Fn>;
    run(begin, end, grain, [](void* ctx, int64_t lo, int64_t hi) { (*static_cast<F*>(ctx))(lo, hi); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using ChunkFn = void (*)(void* ctx, int64_t lo, int64_t hi);
  void run(int64_t begin, int64_t end, int64_t grain, ChunkFn fn, void* ctx);
  void worker_loop(int index);
  void run_chunk(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  // The job in flight, read by workers after they see a new generation.
  ChunkFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t begin_ = 0, end_ = 0, grain_ = 1;
  // Atomics so a waiting thread can spin on them for a short while before it blocks (a decode step
  // is ~150 passes a few tens of µs apart; a condition-variable wake-up costs about as much as a
  // pass on a VM). Written under mu_ so blocked waiters never miss a change.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  std::mutex call_mu_;  // one parallel_for at a time from different outside threads
};

}  // namespace jarvis::cpu
