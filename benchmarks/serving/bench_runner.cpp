#include "benchmarks/serving/bench_runner.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace jarvis::bench {
namespace {

using Clock = std::chrono::steady_clock;

void print_progress(int done, int failed, int total, double elapsed_s, bool final_line) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r  %d/%d [%s] %5.1fs  %.2f req/s  failed %d%s", done, total, bar.c_str(),
               elapsed_s, elapsed_s > 0 ? done / elapsed_s : 0.0, failed, final_line ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace

RunOutput run_benchmark(const EndpointConfig& endpoint, const std::vector<BenchRequest>& workload,
                        const RunOptions& options) {
  const int n = static_cast<int>(workload.size());
  int streams = options.concurrency > 0 ? options.concurrency : kMaxStreams;
  streams = std::max(1, std::min({streams, n, kMaxStreams}));

  // Warm-up outside the timed window: first-request costs (connection, lazy allocations, page
  // faults on the weights) are not what a long-running server's users see.
  if (options.warmup > 0) {
    OpenAiStreamClient client(endpoint);
    for (int i = 0; i < options.warmup; ++i) {
      const BenchRequest& r = workload[static_cast<size_t>(i) % workload.size()];
      client.send(r.prompt, r.max_tokens, Clock::now());
    }
  }

  RunOutput out;
  out.results.resize(workload.size());
  std::atomic<int> next{0};
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
  std::mutex mutex;
  std::condition_variable all_done;
  // Clients are built before the clock starts; each connects on its first request and keeps
  // the connection alive after it.
  std::vector<std::unique_ptr<OpenAiStreamClient>> clients;
  for (int s = 0; s < streams; ++s) clients.push_back(std::make_unique<OpenAiStreamClient>(endpoint));

  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      for (;;) {
        const int i = next.fetch_add(1);
        if (i >= n) break;
        const BenchRequest& req = workload[static_cast<size_t>(i)];
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(req.send_at_s)));
        RequestResult r = clients[static_cast<size_t>(s)]->send(req.prompt, req.max_tokens, start);
        // Without server-reported usage, the synthetic length is the best prompt count we have.
        if (!r.usage_reported) r.prompt_tokens = req.input_len;
        if (!r.ok) failed.fetch_add(1);
        out.results[static_cast<size_t>(i)] = std::move(r);
        if (done.fetch_add(1) + 1 == n) {
          std::lock_guard<std::mutex> lock(mutex);
          all_done.notify_all();
        }
      }
    });
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    while (!all_done.wait_for(lock, std::chrono::milliseconds(250), [&] { return done.load() == n; }))
      if (options.progress)
        print_progress(done.load(), failed.load(), n,
                       std::chrono::duration<double>(Clock::now() - start).count(), false);
  }
  for (std::thread& t : threads) t.join();
  double last_end = 0;
  for (const RequestResult& r : out.results) last_end = std::max(last_end, r.start_s + r.e2e_s);
  out.duration_s = last_end;
  if (options.progress) print_progress(n, failed.load(), n, out.duration_s, true);
  return out;
}

}  // namespace jarvis::bench
