// One thread, the K-quant tiles alone (no driver, no thread pool): a [rows x cols] weight matrix in
// Q4_K/Q5_K/Q6_K times n activation rows already quantized to kQ8_K, walked in kTileRows x
// kTileTokens tiles the way a driver does. Prints GB/s of weight bytes (matrix bytes / time per
// product) per ISA, best of several passes. Default shape: Gemma 3 270M's ffn_down, 640 rows of
// 2048 columns (ggml's [2048, 640]).
//   jarvis-kquant-bench [rows cols]
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant/isa_tables.h"
#include "kernels/ggml_types.h"

namespace {

using jarvis::GgmlType;
using namespace jarvis::cpu;
using namespace jarvis::cpu::quant;

// Random bits with small fp16 scales at the scale fields: valid blocks of realistic magnitude.
std::vector<uint8_t> random_matrix(GgmlType type, size_t bytes, size_t block_bytes) {
  std::mt19937 rng(7);
  std::vector<uint8_t> w(bytes);
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  for (size_t off = 0; off < bytes; off += block_bytes) {
    const size_t d = type == GgmlType::Q6_K ? 208 : 0;
    w[off + d] = 0x00, w[off + d + 1] = 0x20;  // 2^-7
    if (type != GgmlType::Q6_K) w[off + 2] = 0x00, w[off + 3] = 0x20;
  }
  return w;
}

// available_isas(), or the CPU has the instructions (the interim cpu_isa.cpp lists scalar only).
bool runnable(Isa isa) {
  for (Isa a : available_isas()) {
    if (a == isa) return true;
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == Isa::kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::kAvx512) return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#endif
  return false;
}

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double seconds_per_product(TileFn tile, const uint8_t* w, size_t row_bytes, int64_t rows, const uint8_t* x,
                           size_t x_stride, int n, int64_t cols, float* y) {
  double best = 1e30;
  for (int pass = 0; pass < 7; ++pass) {
    int reps = 0;
    const double t0 = thread_seconds();
    double elapsed = 0;
    do {
      for (int64_t r = 0; r < rows; r += kTileRows) {
        const int nr = static_cast<int>(std::min<int64_t>(kTileRows, rows - r));
        for (int t = 0; t < n; t += kTileTokens) {
          tile(w + r * row_bytes, row_bytes, nr, x + t * x_stride, x_stride, std::min(kTileTokens, n - t), cols,
               y + t * rows + r, rows, false);
        }
      }
      ++reps;
      elapsed = thread_seconds() - t0;
    } while (elapsed < 0.05);
    best = std::min(best, elapsed / reps);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 2 ? std::atoll(argv[1]) : 640;
  const int64_t cols = argc > 2 ? std::atoll(argv[2]) : 2048;
  if (rows <= 0 || cols <= 0 || cols % jarvis::kQK_K != 0) {
    std::fprintf(stderr, "usage: jarvis-kquant-bench [rows cols], cols a multiple of 256\n");
    return 1;
  }
  std::printf("one thread, weights [%lld rows x %lld cols], GB/s of weight bytes per thread CPU second (best of 7)\n",
              static_cast<long long>(rows), static_cast<long long>(cols));
  std::printf("%-7s %-5s %8s %10s %10s\n", "isa", "type", "MiB", "n=1", "n=16");
  const int max_n = 16;
  std::vector<float> act(static_cast<size_t>(max_n * cols));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float& v : act) v = normal(rng);
  std::vector<float> y(static_cast<size_t>(max_n * rows));
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!runnable(isa)) continue;
    const IsaKernels& k = isa_kernels(isa);
    const size_t x_stride = act_row_bytes(ActFormat::kQ8_K, cols);
    std::vector<uint8_t> x(x_stride * max_n);
    for (int t = 0; t < max_n; ++t) k.quantize[static_cast<int>(ActFormat::kQ8_K)](act.data() + t * cols, x.data() + t * x_stride, cols);
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
      const jarvis::GgmlTypeTraits* tr = jarvis::ggml_type_traits(static_cast<uint32_t>(type));
      const size_t row_bytes = static_cast<size_t>(cols / tr->block_elems) * tr->block_bytes;
      const std::vector<uint8_t> w = random_matrix(type, row_bytes * rows, tr->block_bytes);
      const TileFn tile = k.tile[static_cast<int>(type)];
      const double gb = static_cast<double>(w.size()) / 1e9;
      const double s1 = seconds_per_product(tile, w.data(), row_bytes, rows, x.data(), x_stride, 1, cols, y.data());
      const double s16 = seconds_per_product(tile, w.data(), row_bytes, rows, x.data(), x_stride, 16, cols, y.data());
      std::printf("%-7s %-5s %8.2f %10.1f %10.1f\n", isa_name(isa), tr->name, static_cast<double>(w.size()) / (1 << 20),
                  gb / s1, gb / s16);
    }
  }
  return 0;
}
