#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace jarvis::cpu {
namespace {
// Set while a thread runs a chunk: nested parallel_for calls then run inline instead of
// waiting on workers that are busy with the outer call (which would deadlock).
thread_local bool t_inside_pool = false;

// How long a thread waiting for a pass (or for its end) spins before it blocks: longer than the
// gap between the passes of one step, far shorter than the gap between requests.
constexpr std::chrono::microseconds kSpin{100};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or kSpin has passed; true when done() held.
template <typename Done>
bool spin_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) return false;
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_chunk(int index) {
  // Chunk boundaries in units of grain, so every chunk but the last is a whole number of tiles.
  const int64_t tiles = (end_ - begin_ + grain_ - 1) / grain_;
  const int64_t lo_tile = tiles * index / n_threads_;
  const int64_t hi_tile = tiles * (index + 1) / n_threads_;
  const int64_t lo = begin_ + lo_tile * grain_;
  const int64_t hi = std::min(end_, begin_ + hi_tile * grain_);
  if (lo >= hi) return;
  try {
    t_inside_pool = true;
    fn_(ctx_, lo, hi);
    t_inside_pool = false;
  } catch (...) {
    t_inside_pool = false;
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  const auto started = [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
  for (;;) {
    if (!spin_until(started)) {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, started);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunk(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);  // the caller may be about to block on done_cv_
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t begin, int64_t end, int64_t grain, ChunkFn fn, void* ctx) {
  if (end <= begin) return;
  grain = std::max<int64_t>(1, grain);
  // Inline when there is nobody to share with, when nested, or when there is one tile only.
  if (n_threads_ == 1 || t_inside_pool || end - begin <= grain) {
    fn(ctx, begin, end);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = fn;
    ctx_ = ctx;
    begin_ = begin;
    end_ = end;
    grain_ = grain;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);  // publishes the job to spinning workers
  }
  start_cv_.notify_all();
  run_chunk(0);
  std::exception_ptr error;
  const auto finished = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  spin_until(finished);
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, finished);
    fn_ = nullptr;
    ctx_ = nullptr;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace jarvis::cpu
