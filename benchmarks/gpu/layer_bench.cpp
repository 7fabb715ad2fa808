// The per-layer CUDA kernels and the whole decode step, as achieved memory bandwidth (bytes moved
// / time) against the device's peak: decode is memory-bound, so that fraction is the figure of
// merit. Built only with CUDA; never run by CI (benchmarks/gpu/run_all.sh runs it on a GPU).
//   kernels: rmsnorm_f32_in, add_rmsnorm, rope_write_kv, gated_activation, embedding_gather and
//     the cuBLAS decode GEMMs, at SmolLM2-135M and a 7B-class (Mistral-7B: 4096 / 32 q, 8 kv
//     heads / 14336) shape, for decode batches of 1..256 rows. Each call's buffers rotate over
//     enough copies to span 3x the L2 cache, so the figures are DRAM traffic, not L2 hits.
//   decode step: CudaModel (csrc/cuda/) on a synthetic model of that shape (weights filled
//     arithmetically: no model file), forward_layers alone and with compute_logits, CUDA graphs
//     on and off: tokens/s and (weight bytes + KV bytes read per step) / time / peak bandwidth.
// Usage: jarvis-gpu-layer-bench [--quick]; a JSON copy goes to $OUT/layer_bench.json when OUT is set.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/gpu/bench_device.h"
#include "csrc/cuda/cuda_model.h"
#include "csrc/cuda/device_memory.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"

namespace {

using jarvis::cuda::DType;

using jarvis::bench::Device;

struct Shape {
  const char* name;
  int layers, hidden, n_heads, n_kv_heads, head_dim, ffn, vocab;
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

const Shape kSmol{"smollm2-135m", 30, 576, 9, 3, 64, 1536, 49152};
const Shape kSeven{"7b-class", 32, 4096, 32, 8, 128, 14336, 32000};

struct Row {
  std::string what, shape;
  int rows = 0;
  double us = 0, bytes = 0, frac = 0;
  double tokens_per_s = 0;  // decode steps only
};

std::vector<Row> g_rows;

void report(const Device& dev, Row r) {
  const double bw = r.bytes / (r.us * 1e-6);
  r.frac = bw / dev.peak_bw;
  if (r.tokens_per_s > 0) {
    std::printf("  %-34s %-13s %5d  %10.1f us  %8.1f GB/s  %6.1f%%  %10.0f tok/s\n", r.what.c_str(), r.shape.c_str(),
                r.rows, r.us, bw / 1e9, 100 * r.frac, r.tokens_per_s);
  } else {
    std::printf("  %-34s %-13s %5d  %10.2f us  %8.1f GB/s  %6.1f%%\n", r.what.c_str(), r.shape.c_str(), r.rows, r.us,
                bw / 1e9, 100 * r.frac);
  }
  g_rows.push_back(r);
}

#define BENCH_CHECK(call)                                                                                     \
  do {                                                                                                        \
    const auto err_ = (call);                                                                                 \
    if (static_cast<int>(err_) != 0) {                                                                        \
      std::fprintf(stderr, "%s:%d: %s failed (%d)\n", __FILE__, __LINE__, #call, static_cast<int>(err_));      \
      std::exit(1);                                                                                           \
    }                                                                                                         \
  } while (0)

using Launch = std::function<void(cudaStream_t, const std::vector<void*>&)>;

// Buffers of the given sizes (zeroed), `copies` times each; init fills each copy once (untimed),
// run launches one call on a copy. Returns microseconds per call (device time between events,
// launches back to back).
double time_kernel(const Device& dev, const std::vector<size_t>& sizes, int iters, const Launch& run,
                   const Launch& init = nullptr) {
  size_t per_call = 0;
  for (size_t s : sizes) per_call += s;
  const size_t copies = std::min<size_t>(64, std::max<size_t>(1, (3 * dev.l2 + per_call - 1) / std::max<size_t>(per_call, 1)));
  std::vector<jarvis::DeviceBuffer> bufs;
  for (size_t s : sizes) {
    bufs.emplace_back(std::max<size_t>(s, 256) * copies, "benchmark buffer");
    BENCH_CHECK(cudaMemset(bufs.back().get(), 0, bufs.back().bytes()));
  }
  auto ptrs = [&](size_t c) {
    std::vector<void*> p;
    for (size_t i = 0; i < sizes.size(); ++i) p.push_back(bufs[i].as<char>() + c * std::max<size_t>(sizes[i], 256));
    return p;
  };
  std::vector<std::vector<void*>> all;
  for (size_t c = 0; c < copies; ++c) all.push_back(ptrs(c));
  jarvis::CudaStream stream;
  if (init) {
    for (size_t c = 0; c < copies; ++c) init(stream.get(), all[c]);
  }
  for (size_t c = 0; c < copies; ++c) run(stream.get(), all[c]);  // warm-up, and every copy touched
  double ms = 0;
  BENCH_CHECK(jarvis::bench::time_launches(stream.get(), iters, [&](int i) {
    run(stream.get(), all[static_cast<size_t>(i) % copies]);
    return cudaSuccess;
  }, ms));
  BENCH_CHECK(cudaGetLastError());
  return 1e3 * ms;
}

void bench_kernels(const Device& dev, const Shape& s, const std::vector<int>& batches, int iters) {
  const DType dt = DType::kF16;
  const size_t e = 2;
  for (const int r : batches) {
    const size_t rows = static_cast<size_t>(r), h = static_cast<size_t>(s.hidden);
    Row row;
    row.shape = s.name;
    row.rows = r;

    row.what = "rmsnorm_f32_in";
    row.bytes = static_cast<double>(rows * h * 4 + h * 4 + rows * h * e);
    row.us = time_kernel(dev, {rows * h * 4, h * 4, rows * h * e}, iters, [&](cudaStream_t st, const std::vector<void*>& p) {
      BENCH_CHECK(jarvis::cuda::rmsnorm_f32_in(dt, static_cast<float*>(p[0]), static_cast<float*>(p[1]), p[2], r,
                                               s.hidden, 1e-5f, st));
    });
    report(dev, row);

    row.what = "add_rmsnorm";
    row.bytes = static_cast<double>(rows * h * e * 4 + h * 4);  // x, residual read + written, out
    row.us = time_kernel(dev, {rows * h * e, rows * h * e, h * 4, rows * h * e}, iters,
                         [&](cudaStream_t st, const std::vector<void*>& p) {
                           BENCH_CHECK(jarvis::cuda::add_rmsnorm(dt, p[0], p[1], static_cast<float*>(p[2]), p[3], r,
                                                                 s.hidden, 1e-5f, st));
                         });
    report(dev, row);

    // q rotated in place (read + write), k and v read, both written to pages, cos/sin and slots read.
    const size_t q = rows * s.q_dim() * e, kv = rows * s.kv_dim() * e, cs = rows * s.head_dim * 4;
    row.what = "rope_write_kv";
    row.bytes = static_cast<double>(2 * q + 4 * kv + cs + rows * 8);
    std::vector<int64_t> slots(rows);
    for (size_t i = 0; i < rows; ++i) slots[i] = static_cast<int64_t>(i);
    const Launch fill_slots = [&](cudaStream_t st, const std::vector<void*>& p) {
      BENCH_CHECK(cudaMemcpyAsync(p[4], slots.data(), rows * 8, cudaMemcpyHostToDevice, st));
    };
    row.us = time_kernel(dev, {q, kv, kv, cs, rows * 8, kv, kv}, iters, [&](cudaStream_t st, const std::vector<void*>& p) {
      jarvis::cuda::RopeKvWriteParams rp;
      rp.dtype = dt;
      rp.n_tokens = r;
      rp.n_heads = s.n_heads;
      rp.n_kv_heads = s.n_kv_heads;
      rp.head_dim = s.head_dim;
      rp.rope_dim = s.head_dim;
      rp.pairing = jarvis::cuda::RopePairing::kNeox;
      rp.q = p[0];
      rp.k = p[1];
      rp.v = p[2];
      rp.cos_sin = static_cast<float*>(p[3]);
      rp.slot_mapping = static_cast<int64_t*>(p[4]);
      rp.k_pages = p[5];
      rp.v_pages = p[6];
      BENCH_CHECK(jarvis::cuda::rope_write_kv(rp, st));
    }, fill_slots);
    report(dev, row);

    const size_t f = rows * s.ffn * e;
    row.what = "gated_activation (silu)";
    row.bytes = static_cast<double>(3 * f);
    row.us = time_kernel(dev, {f, f, f}, iters, [&](cudaStream_t st, const std::vector<void*>& p) {
      BENCH_CHECK(jarvis::cuda::gated_activation(jarvis::cuda::GatedActivation::kSilu, dt, p[0], p[1], p[2], r, s.ffn, st));
    });
    report(dev, row);

    // The table is not rotated (it is the model's); ids are spread so rows are distinct.
    row.what = "embedding_gather";
    row.bytes = static_cast<double>(2 * rows * h * e + rows * 4);
    {
      jarvis::DeviceBuffer table(static_cast<size_t>(s.vocab) * h * e, "embedding table");
      std::vector<int32_t> ids(rows);
      for (size_t i = 0; i < rows; ++i) ids[i] = static_cast<int32_t>((i * 7919) % static_cast<size_t>(s.vocab));
      const Launch fill_ids = [&](cudaStream_t st, const std::vector<void*>& p) {
        BENCH_CHECK(cudaMemcpyAsync(p[0], ids.data(), rows * 4, cudaMemcpyHostToDevice, st));
      };
      row.us = time_kernel(dev, {rows * 4, rows * h * e}, iters, [&](cudaStream_t st, const std::vector<void*>& p) {
        BENCH_CHECK(jarvis::cuda::embedding_gather(dt, table.get(), static_cast<int32_t*>(p[0]), p[1], r, s.hidden,
                                                   s.vocab, st));
      }, fill_ids);
    }
    report(dev, row);

    // The decode GEMMs: weights [out, in] dominate the traffic at small batches.
    struct G {
      const char* what;
      int in, out;
      bool f32_out;
    };
    const G gemms[] = {{"gemm q_proj", s.hidden, s.q_dim(), false},    {"gemm k_proj / v_proj", s.hidden, s.kv_dim(), false},
                       {"gemm o_proj (+= f32)", s.q_dim(), s.hidden, true}, {"gemm gate / up", s.hidden, s.ffn, false},
                       {"gemm down (+= f32)", s.ffn, s.hidden, true},       {"gemm lm_head (f32 out)", s.hidden, s.vocab, true}};
    jarvis::CudaStream blas_stream;
    jarvis::CublasHandle blas(blas_stream.get());
    jarvis::DeviceBuffer ws(size_t{32} << 20, "cuBLAS workspace");
    for (const G& g : gemms) {
      const size_t w = static_cast<size_t>(g.in) * g.out * e, x = rows * g.in * e, y = rows * g.out * (g.f32_out ? 4 : e);
      row.what = g.what;
      row.bytes = static_cast<double>(w + x + y * (g.f32_out && std::strstr(g.what, "+=") ? 2 : 1));
      row.us = time_kernel(dev, {w, x, y}, iters, [&](cudaStream_t st, const std::vector<void*>& p) {
        // cublasSetStream resets the workspace to cuBLAS's pool: set ours again, as CudaModel does.
        BENCH_CHECK(cublasSetStream(blas.get(), st));
        BENCH_CHECK(cublasSetWorkspace(blas.get(), ws.get(), ws.bytes()));
        jarvis::cuda::GemmParams gp;
        gp.dtype = dt;
        gp.out_dtype = g.f32_out ? DType::kF32 : dt;
        gp.rows = r;
        gp.in = g.in;
        gp.out = g.out;
        gp.x = p[1];
        gp.w = p[0];
        gp.y = p[2];
        gp.accumulate = std::strstr(g.what, "+=") != nullptr;
        BENCH_CHECK(jarvis::cuda::gemm(blas.get(), gp));
      });
      report(dev, row);
    }
  }
}

// Arithmetic fill: fast for billions of weights, values ~N(0, 1/cols)-sized, no model file.
jarvis::Matrix fill_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> data(static_cast<size_t>(rows * cols));
  const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
  uint32_t x = seed * 2654435761u + 1;
  for (float& v : data) {
    x = x * 1664525u + 1013904223u;
    v = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * 3.4f * scale;
  }
  return jarvis::Matrix::from_f32(data.data(), rows, cols);
}

std::unique_ptr<jarvis::Model> synthetic_model(const Shape& s, int layers) {
  jarvis::ModelConfig c;
  c.arch = jarvis::Arch::kLlama;
  c.arch_name = "llama";
  c.n_layers = layers;
  c.hidden = s.hidden;
  c.n_heads = s.n_heads;
  c.n_kv_heads = s.n_kv_heads;
  c.head_dim = s.head_dim;
  c.rope_dim = s.head_dim;
  c.ffn_hidden = s.ffn;
  c.vocab_size = s.vocab;
  c.context_length = 4096;
  jarvis::ModelWeights w;
  w.embedding = fill_matrix(s.vocab, s.hidden, 1);
  w.output_norm.assign(s.hidden, 1.0f);
  w.lm_head = fill_matrix(s.vocab, s.hidden, 2);
  for (int l = 0; l < layers; ++l) {
    jarvis::LayerWeights lw;
    lw.attn_norm.assign(s.hidden, 1.0f);
    lw.ffn_norm.assign(s.hidden, 1.0f);
    const uint32_t k = 16 * static_cast<uint32_t>(l + 1);
    lw.wq = fill_matrix(s.q_dim(), s.hidden, k + 1);
    lw.wk = fill_matrix(s.kv_dim(), s.hidden, k + 2);
    lw.wv = fill_matrix(s.kv_dim(), s.hidden, k + 3);
    lw.wo = fill_matrix(s.hidden, s.q_dim(), k + 4);
    lw.w_gate = fill_matrix(s.ffn, s.hidden, k + 5);
    lw.w_up = fill_matrix(s.ffn, s.hidden, k + 6);
    lw.w_down = fill_matrix(s.hidden, s.ffn, k + 7);
    w.layers.push_back(std::move(lw));
  }
  return std::make_unique<jarvis::Model>(c, jarvis::ShardSpec::full(), std::move(w), jarvis::TokenizerData{});
}

// Decode steps at context `ctx` (the KV cache reads zeros: attention time does not depend on the
// values), every sequence one token per step, graphs on and off.
void bench_decode(const Device& dev, const Shape& s, int layers, const std::vector<int>& batches, int ctx, int steps) {
  auto model = synthetic_model(s, layers);
  constexpr int kPage = 16;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int blocks_each = (ctx + kPage - 1) / kPage;
  const double e = 2;
  const double layer_w = e * (2.0 * s.q_dim() * s.hidden + 2.0 * s.kv_dim() * s.hidden + 3.0 * s.ffn * s.hidden);
  const double head_w = e * s.vocab * static_cast<double>(s.hidden);
  for (const bool graphs : {false, true}) {
    jarvis::CudaShardOptions o;
    o.page_size = kPage;
    o.num_blocks = max_batch * blocks_each;
    o.cuda_graphs = graphs;
    jarvis::CudaModel m(*model, o);
    for (const int b : batches) {
      jarvis::BatchView batch;
      for (int i = 0; i < b; ++i) {
        jarvis::SequenceSlice sl;
        sl.seq_id = i;
        sl.n_tokens = 1;
        sl.start_pos = ctx - 1;
        sl.block_table.resize(blocks_each);
        for (int j = 0; j < blocks_each; ++j) sl.block_table[j] = i * blocks_each + j;
        batch.seqs.push_back(sl);
      }
      std::vector<float> hidden(static_cast<size_t>(b) * s.hidden, 0.01f);
      std::vector<float> logits(static_cast<size_t>(b) * s.vocab);
      // Two figures: the layers alone (what graphs change), then the step with the head and the
      // logits copied to the host (what a host-sampled decode step costs today).
      for (const bool head : {false, true}) {
        auto step = [&] {
          std::fill(hidden.begin(), hidden.end(), 0.01f);
          m.forward_layers(batch, hidden.data());
          if (head) m.compute_logits(hidden.data(), b, logits.data());
        };
        for (int i = 0; i < 3; ++i) step();  // eager, capture, replay
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) step();
        const double us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / steps;
        Row row;
        row.what = std::string(head ? "step+head" : "layers") + ", graphs " + (graphs ? "on" : "off") + " (" +
                   std::to_string(layers) + " layers)";
        row.shape = s.name;
        row.rows = b;
        row.us = us;
        // Weights once per step, plus every sequence's K and V of every layer.
        row.bytes = layers * layer_w + (head ? head_w : 0.0) + 2.0 * e * b * static_cast<double>(ctx) * s.kv_dim() * layers;
        row.tokens_per_s = b / (us * 1e-6);
        report(dev, row);
      }
    }
    if (graphs) {
      std::printf("  (graph replays %zu, captures %zu)\n", m.graph_replays(), m.graph_captures());
    }
  }
}

void write_json(const Device& dev) {
  const char* out = std::getenv("OUT");
  if (!out || !*out) return;
  const std::string path = std::string(out) + "/layer_bench.json";
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return;
  }
  std::fprintf(f, "{\"device\": \"%s\", \"peak_bytes_per_s\": %.6g, \"results\": [\n", dev.name.c_str(), dev.peak_bw);
  for (size_t i = 0; i < g_rows.size(); ++i) {
    const Row& r = g_rows[i];
    std::fprintf(f,
                 "  {\"what\": \"%s\", \"shape\": \"%s\", \"rows\": %d, \"us\": %.4g, \"bytes\": %.6g, "
                 "\"fraction_of_peak_bw\": %.4g, \"tokens_per_s\": %.6g}%s\n",
                 r.what.c_str(), r.shape.c_str(), r.rows, r.us, r.bytes, r.frac, r.tokens_per_s,
                 i + 1 < g_rows.size() ? "," : "");
  }
  std::fprintf(f, "]}\n");
  std::fclose(f);
  std::printf("\nJSON: %s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (!jarvis::bench::cuda_device_found()) return 0;
  try {
    const Device dev = jarvis::bench::query_device();
    std::printf("device: %s, peak memory bandwidth %.2f TB/s (memory clock x bus width), L2 %.0f MiB\n",
                dev.name.c_str(), dev.peak_bw / 1e12, dev.l2 / 1048576.0);
    std::printf("columns: kernel, shape, rows (decode batch), time per call, achieved bandwidth, %% of peak\n\n");
    const std::vector<int> batches = quick ? std::vector<int>{1, 64} : std::vector<int>{1, 16, 64, 256};
    const int iters = quick ? 50 : 200;
    std::printf("layer kernels, f16\n");
    bench_kernels(dev, kSmol, batches, iters);
    bench_kernels(dev, kSeven, batches, iters);

    std::printf("\nwhole decode step (CudaModel: forward_layers alone, then with compute_logits; f16, context 1024\n"
                " per sequence; bytes = weights once + every sequence's K/V; host copies of the step included)\n");
    const std::vector<int> dbatch = quick ? std::vector<int>{1, 16, 64} : std::vector<int>{1, 4, 16, 64, 128};
    bench_decode(dev, kSmol, kSmol.layers, dbatch, 1024, quick ? 20 : 100);
    // 7B-class: 8 of its 32 layers keep the host-side synthetic weights small (the step's
    // per-layer figures are what scales); the head is the full 32000 x 4096.
    bench_decode(dev, kSeven, quick ? 4 : 8, dbatch, 1024, quick ? 10 : 40);
    write_json(dev);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "layer benchmark failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
