// Measures DRAM read bandwidth with 1..N threads: the ceiling for CPU decode, which must read
// every weight once per token. Prints GB/s per thread count (best of several passes).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

// Sums a slice with 4 independent accumulators so the loop is bound by loads, not by adds.
double sum_slice(const float* p, size_t n) {
  float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
  }
  return static_cast<double>(a0 + a1 + a2 + a3);
}

double read_bandwidth_gbs(const std::vector<float>& buf, int threads, int passes) {
  double best = 0;
  volatile double sink = 0;
  for (int pass = 0; pass < passes; ++pass) {
    std::vector<double> partial(threads);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    size_t chunk = buf.size() / threads;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] { partial[t] = sum_slice(buf.data() + t * chunk, chunk); });
    }
    for (auto& th : pool) th.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (double p : partial) sink = sink + p;
    best = std::max(best, static_cast<double>(chunk * threads * sizeof(float)) / secs / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  const int max_threads = argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  std::vector<float> buf(mib * 1024 * 1024 / sizeof(float), 1.0f);  // far larger than any cache
  for (int t = 1; t <= max_threads; ++t) {
    std::printf("threads=%d read_bandwidth_GBps=%.2f\n", t, read_bandwidth_gbs(buf, t, 5));
  }
  return 0;
}
