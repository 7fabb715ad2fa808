// Kernel lab for the quantized CPU products (kernels/cpu/quant_matrix.h) at the default model's
// shapes (SmolLM2-135M: hidden 576, KV 192, FFN 1536, vocab 49152; Q4_1 layers, Q8_0 head).
// Each matrix is cycled through enough distinct copies that its weights come from DRAM, as in
// decode, and the rate is reported as GB/s of weight bytes read (compare with jarvis-membw).
// Then one decode step's products over 30 distinct layers + head: the matmul-only ceiling of tok/s.
//
//   jarvis-qmatmul-bench [--all-isas] [--hot] [--cpu-time] [--threads 1,2] [--n 1,2,16,64,128] [--seconds 0.3]
// The ISA is JARVIS_CPU_ISA's (or the best) unless --all-isas. Random weights: values do not
// change the work done.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant_matrix.h"
#include "kernels/cpu/thread_pool.h"

namespace {

using jarvis::GgmlType;
using jarvis::cpu::QuantMatrix;

// Random blocks with a small valid f16 scale (and min) so no value is inf/nan.
QuantMatrix random_matrix(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t bytes = QuantMatrix::row_bytes(type, cols) * static_cast<size_t>(rows);
  std::vector<uint8_t> b(bytes);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  const size_t block = type == GgmlType::Q8_0 ? 34 : type == GgmlType::Q4_1 ? 20 : 0;
  const uint16_t scale = 0x2000;  // 2^-7
  for (size_t o = 0; block && o < bytes; o += block) {
    std::memcpy(&b[o], &scale, 2);
    if (type == GgmlType::Q4_1) std::memcpy(&b[o + 2], &scale, 2);
  }
  return QuantMatrix::from_blocks(type, b.data(), rows, cols);
}

bool g_hot = false;  // --hot: one copy, weights from cache (the kernels' compute rate)

std::vector<QuantMatrix> copies_of(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  // At least 256 MiB in all, so the set cannot sit in any cache level.
  const size_t bytes = QuantMatrix::row_bytes(type, cols) * static_cast<size_t>(rows);
  const size_t count = g_hot ? 1 : std::min<size_t>(1024, std::max<size_t>(2, (256u << 20) / bytes + 1));
  std::vector<QuantMatrix> m;
  for (size_t i = 0; i < count; ++i) m.push_back(random_matrix(type, rows, cols, rng));
  return m;
}

// --cpu-time: time the calling thread's CPU time instead of the wall clock. On a machine shared
// with other jobs the wall clock measures the scheduler; with 1 thread the caller does all the
// work, so its CPU time is the kernels' cost (cache and memory contention still show).
bool g_cpu_time = false;

double now_seconds() {
  if (!g_cpu_time) return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Seconds per call of fn(i) (i cycles over the copies), timed for at least `seconds`.
double time_per_call(const std::function<void(size_t)>& fn, size_t copies, double seconds) {
  // The copies were written by from_blocks (no page faults left); a few calls warm the code.
  const size_t warm = std::min<size_t>(copies, 4);
  for (size_t i = 0; i < warm; ++i) fn(i);
  size_t timed = 0;
  const double t0 = now_seconds();
  double elapsed = 0;
  while (elapsed < seconds || timed < warm) {
    fn((warm + timed) % copies);  // onward from the warmed copies: cold weights
    ++timed;
    elapsed = now_seconds() - t0;
  }
  return elapsed / static_cast<double>(timed);
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

struct Shape {
  const char* name;
  GgmlType type;
  int64_t rows, cols;
  enum Kind { kPlain, kAccumulate, kGated } kind;
};

}  // namespace

int main(int argc, char** argv) {
  bool all_isas = false;
  std::vector<int> threads = {1, 2}, ns = {1, 2, 16, 64, 128};
  double seconds = 0.3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--all-isas") all_isas = true;
    else if (a == "--hot") g_hot = true;
    else if (a == "--cpu-time") g_cpu_time = true;
    else if (a == "--threads" && i + 1 < argc) threads = parse_list(argv[++i]);
    else if (a == "--n" && i + 1 < argc) ns = parse_list(argv[++i]);
    else if (a == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--all-isas] [--hot] [--cpu-time] [--threads 1,2] [--n 1,2,16,64,128] [--seconds 0.3]\n", argv[0]);
      return 2;
    }
  }
  std::vector<jarvis::cpu::Isa> isas;
  try {
    isas = all_isas ? jarvis::cpu::available_isas() : std::vector<jarvis::cpu::Isa>{jarvis::cpu::active_isa()};
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  const Shape shapes[] = {
      {"attn_q/o 576->576", GgmlType::Q4_1, 576, 576, Shape::kPlain},
      {"attn_k/v 576->192", GgmlType::Q4_1, 192, 576, Shape::kPlain},
      {"ffn gate+up 576->1536 x2", GgmlType::Q4_1, 1536, 576, Shape::kGated},
      {"ffn_down 1536->576 (+res)", GgmlType::Q4_1, 576, 1536, Shape::kAccumulate},
      {"head 576->49152 Q8_0", GgmlType::Q8_0, 49152, 576, Shape::kPlain},
  };
  std::mt19937 rng(1);
  std::printf("%-8s %-3s %-4s %-28s %10s %8s %8s\n", "isa", "thr", "n", "shape", "us/call", "GB/s", "GFLOP/s");
  for (const Shape& s : shapes) {
    auto a = copies_of(s.type, s.rows, s.cols, rng);
    std::vector<QuantMatrix> b;
    if (s.kind == Shape::kGated) b = copies_of(s.type, s.rows, s.cols, rng);
    const int max_n = *std::max_element(ns.begin(), ns.end());
    std::vector<float> x(static_cast<size_t>(max_n * s.cols)), y(static_cast<size_t>(max_n * s.rows), 0.0f);
    std::normal_distribution<float> g;
    for (float& v : x) v = g(rng);
    const size_t copies = s.kind == Shape::kGated ? std::min(a.size(), b.size()) : a.size();
    const double bytes = static_cast<double>(a[0].bytes()) * (s.kind == Shape::kGated ? 2 : 1);
    for (jarvis::cpu::Isa isa : isas) {
      jarvis::cpu::set_active_isa(isa);
      for (int t : threads) {
        jarvis::cpu::ThreadPool pool(t);
        for (int n : ns) {
          const double sec = time_per_call(
              [&](size_t i) {
                if (s.kind == Shape::kGated)
                  jarvis::cpu::qmatmul_gated(x.data(), n, a[i], b[i], jarvis::cpu::GateActivation::kSilu, y.data(), pool);
                else
                  jarvis::cpu::qmatmul(x.data(), n, a[i], y.data(), pool, s.kind == Shape::kAccumulate);
              },
              copies, seconds);
          const double flops = 2.0 * static_cast<double>(s.rows * s.cols * n) * (s.kind == Shape::kGated ? 2 : 1);
          std::printf("%-8s %-3d %-4d %-28s %10.1f %8.2f %8.1f\n", jarvis::cpu::isa_name(isa), t, n, s.name, sec * 1e6,
                      bytes / sec / 1e9, flops / sec / 1e9);
          std::fflush(stdout);
        }
      }
    }
  }

  // One decode step's products: 30 layers of distinct weights (QKV in one pass, O + residual,
  // gate/up + SiLU, down + residual) and the head; attention, norms and sampling excluded.
  struct Layer {
    QuantMatrix q, k, v, o, gate, up, down;
  };
  std::vector<Layer> layers;
  for (int l = 0; l < 30; ++l) {
    layers.push_back({random_matrix(GgmlType::Q4_1, 576, 576, rng), random_matrix(GgmlType::Q4_1, 192, 576, rng),
                      random_matrix(GgmlType::Q4_1, 192, 576, rng), random_matrix(GgmlType::Q4_1, 576, 576, rng),
                      random_matrix(GgmlType::Q4_1, 1536, 576, rng), random_matrix(GgmlType::Q4_1, 1536, 576, rng),
                      random_matrix(GgmlType::Q4_1, 576, 1536, rng)});
  }
  const QuantMatrix head = random_matrix(GgmlType::Q8_0, 49152, 576, rng);
  double bytes = static_cast<double>(head.bytes());
  for (const Layer& L : layers)
    bytes += static_cast<double>(L.q.bytes() + L.k.bytes() + L.v.bytes() + L.o.bytes() + L.gate.bytes() +
                                 L.up.bytes() + L.down.bytes());
  std::printf("\ndecode step, matmuls only (30 layers + head, %.1f MB of weights)\n", bytes / 1e6);
  std::printf("%-8s %-3s %-4s %10s %10s %8s\n", "isa", "thr", "n", "ms/step", "tok/s", "GB/s");
  for (jarvis::cpu::Isa isa : isas) {
    jarvis::cpu::set_active_isa(isa);
    for (int t : threads) {
      jarvis::cpu::ThreadPool pool(t);
      for (int n : ns) {
        if (n > 16) continue;  // decode batches; prefill is the per-shape table above
        std::vector<float> x(static_cast<size_t>(n) * 576, 0.5f), q(static_cast<size_t>(n) * 576),
            k(static_cast<size_t>(n) * 192), v(static_cast<size_t>(n) * 192), h(static_cast<size_t>(n) * 1536),
            logits(static_cast<size_t>(n) * 49152);
        const double sec = time_per_call(
            [&](size_t) {
              for (const Layer& L : layers) {
                const jarvis::cpu::QMatmulTarget qkv[] = {{&L.q, q.data()}, {&L.k, k.data()}, {&L.v, v.data()}};
                jarvis::cpu::qmatmul_multi(x.data(), n, qkv, 3, pool);
                jarvis::cpu::qmatmul(q.data(), n, L.o, x.data(), pool, true);
                jarvis::cpu::qmatmul_gated(x.data(), n, L.gate, L.up, jarvis::cpu::GateActivation::kSilu, h.data(), pool);
                jarvis::cpu::qmatmul(h.data(), n, L.down, x.data(), pool, true);
                for (float& e : x) e = std::max(-4.0f, std::min(4.0f, e));  // keep values finite
              }
              jarvis::cpu::qmatmul(x.data(), n, head, logits.data(), pool);
            },
            1, std::max(seconds, 1.0));
        std::printf("%-8s %-3d %-4d %10.2f %10.1f %8.2f\n", jarvis::cpu::isa_name(isa), t, n, sec * 1e3, n / sec,
                    bytes / sec / 1e9);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
