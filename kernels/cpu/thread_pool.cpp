#include "kernels/cpu/thread_pool.h"

#include <algorithm>

namespace jarvis::cpu {
namespace {
// Set while a thread runs a chunk: nested parallel_for calls then run inline instead of
// waiting on workers that are busy with the outer call (which would deadlock).
thread_local bool t_inside_pool = false;
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
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    run_chunk(index);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
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
    pending_ = n_threads_ - 1;
    error_ = nullptr;
    ++generation_;
  }
  start_cv_.notify_all();
  run_chunk(0);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    fn_ = nullptr;
    ctx_ = nullptr;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace jarvis::cpu
