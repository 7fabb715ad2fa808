// Paged attention on the GPU: decode as achieved memory bandwidth (K/V bytes read / time) and
// prefill as TFLOP/s, each as a fraction of the device's peak. Built only with CUDA; never run by
// CI. Usage: jarvis-gpu-attention-bench [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "benchmarks/gpu/bench_device.h"
#include "kernels/cuda/attention.h"

namespace {

using jarvis::cuda::DType;

#define BENCH_CHECK(call)                                                                   \
  do {                                                                                      \
    const cudaError_t err_ = (call);                                                        \
    if (err_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
      return false;                                                                         \
    }                                                                                       \
  } while (0)

using jarvis::bench::Device;

struct Shape {
  DType dtype;
  int n_heads, n_kv_heads, head_dim, page_size;
  int n_seqs, n_tokens, start_pos;  // every sequence alike
};

// Times paged_attention over `iters` runs after warm-up; returns milliseconds per run.
bool time_attention(const Device& dev, const Shape& s, double& ms, int iters) {
  const size_t es = s.dtype == DType::kF32 ? 4 : 2;
  const int kv_len = s.start_pos + s.n_tokens;
  const int blocks_per_seq = (kv_len + s.page_size - 1) / s.page_size;
  const size_t num_pages = static_cast<size_t>(blocks_per_seq) * s.n_seqs;
  const size_t page_bytes = static_cast<size_t>(s.page_size) * s.n_kv_heads * s.head_dim * es;
  const int64_t total_tokens = static_cast<int64_t>(s.n_seqs) * s.n_tokens;
  const size_t q_bytes = static_cast<size_t>(total_tokens) * s.n_heads * s.head_dim * es;

  std::vector<int32_t> offsets(s.n_seqs), n_tok(s.n_seqs, s.n_tokens), start(s.n_seqs, s.start_pos);
  std::vector<int32_t> tables(num_pages);
  for (int i = 0; i < s.n_seqs; ++i) offsets[i] = i * s.n_tokens;
  for (size_t i = 0; i < num_pages; ++i) tables[i] = static_cast<int32_t>(i);

  void *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *meta = nullptr, *ws = nullptr;
  jarvis::cuda::PagedAttentionParams p;
  p.plan = jarvis::cuda::plan_paged_attention(n_tok.data(), start.data(), s.n_seqs, s.n_heads, s.n_kv_heads,
                                              dev.sms);
  const size_t ws_bytes = jarvis::cuda::attention_workspace_bytes(p.plan, total_tokens, s.n_heads, s.head_dim);
  BENCH_CHECK(cudaMalloc(&q, q_bytes));
  BENCH_CHECK(cudaMalloc(&out, q_bytes));
  BENCH_CHECK(cudaMalloc(&k, num_pages * page_bytes));
  BENCH_CHECK(cudaMalloc(&v, num_pages * page_bytes));
  BENCH_CHECK(cudaMalloc(&meta, (3 * s.n_seqs + num_pages) * 4));
  BENCH_CHECK(cudaMalloc(&ws, std::max<size_t>(ws_bytes, 16)));
  // Zeros are a valid input (uniform softmax); timing does not depend on the values.
  BENCH_CHECK(cudaMemset(q, 0, q_bytes));
  BENCH_CHECK(cudaMemset(k, 0, num_pages * page_bytes));
  BENCH_CHECK(cudaMemset(v, 0, num_pages * page_bytes));
  int32_t* m = static_cast<int32_t*>(meta);
  BENCH_CHECK(cudaMemcpy(m, offsets.data(), s.n_seqs * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(m + s.n_seqs, n_tok.data(), s.n_seqs * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(m + 2 * s.n_seqs, start.data(), s.n_seqs * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(m + 3 * s.n_seqs, tables.data(), num_pages * 4, cudaMemcpyHostToDevice));

  p.dtype = s.dtype;
  p.n_heads = s.n_heads;
  p.n_kv_heads = s.n_kv_heads;
  p.head_dim = s.head_dim;
  p.page_size = s.page_size;
  p.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  p.n_seqs = s.n_seqs;
  p.total_tokens = total_tokens;
  p.q = q;
  p.k_pages = k;
  p.v_pages = v;
  p.out = out;
  p.token_offset = m;
  p.n_tokens = m + s.n_seqs;
  p.start_pos = m + 2 * s.n_seqs;
  p.block_tables = m + 3 * s.n_seqs;
  p.max_blocks_per_seq = blocks_per_seq;
  p.workspace = static_cast<float*>(ws);

  const auto launch = [&](int) { return jarvis::cuda::paged_attention(p, nullptr); };
  for (int i = 0; i < 3; ++i) BENCH_CHECK(launch(i));
  BENCH_CHECK(jarvis::bench::time_launches(nullptr, iters, launch, ms));
  std::printf("  plan: row_tiles=%d kv_chunk=%d splits=%d\n", p.plan.max_row_tiles, p.plan.kv_chunk,
              p.plan.max_splits);
  for (void* ptr : {q, k, v, out, meta, ws}) cudaFree(ptr);
  return true;
}

const char* name(DType t) { return t == DType::kF32 ? "f32" : t == DType::kF16 ? "f16" : "bf16"; }

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (!jarvis::bench::cuda_device_found()) return 0;
  const Device dev = jarvis::bench::query_device();
  std::printf("device: %s, %d SMs, peak memory %.2f TB/s, fp32 SIMT %.1f TFLOP/s, fp16 tensor %.0f TFLOP/s\n",
              dev.name.c_str(), dev.sms, dev.peak_bw / 1e12, dev.peak_fp32 / 1e12, dev.peak_tensor16 / 1e12);
  std::printf("(nominal: H100 SXM 3.35 TB/s, H200 4.8 TB/s, A100 80GB 2.0 TB/s)\n\n");
  const int iters = quick ? 5 : 20;

  std::printf("decode (1 token per sequence, heads 32/8, head_dim 128, page 16)\n");
  for (DType t : {DType::kF16, DType::kBF16}) {
    for (auto [batch, ctx] : std::vector<std::pair<int, int>>{{1, 4096}, {1, 32768}, {8, 4096}, {64, 2048},
                                                              {64, 4096}, {256, 4096}}) {
      if (quick && batch * static_cast<int64_t>(ctx) > 64 * 4096) continue;
      Shape s{t, 32, 8, 128, 16, batch, 1, ctx - 1};
      double ms = 0;
      if (!time_attention(dev, s, ms, iters)) return 1;
      const double bytes = 2.0 * batch * ctx * s.n_kv_heads * s.head_dim * 2;  // K and V, 2-byte elements
      const double bw = bytes / (ms * 1e-3);
      std::printf("  %-4s batch %4d ctx %6d: %8.3f ms  %7.1f GB/s  %5.1f%% of peak bandwidth\n", name(t), batch, ctx,
                  ms, bw / 1e9, 100 * bw / dev.peak_bw);
    }
  }

  std::printf("\nprefill (1 sequence from position 0, causal, heads 32/8, head_dim 128, page 16)\n");
  for (DType t : {DType::kF16, DType::kBF16}) {
    for (int len : {512, 2048, 8192}) {
      if (quick && len > 2048) continue;
      Shape s{t, 32, 8, 128, 16, 1, len, 0};
      double ms = 0;
      if (!time_attention(dev, s, ms, quick ? 3 : 10)) return 1;
      // Causal: token t sees t + 1 keys; QK^T and PV cost 2 FLOP per multiply-add each.
      const double pairs = 0.5 * len * (len + 1.0);
      const double flops = 4.0 * pairs * s.head_dim * s.n_heads;
      const double rate = flops / (ms * 1e-3);
      std::printf("  %-4s len %5d: %8.3f ms  %6.2f TFLOP/s  %5.1f%% of fp32 SIMT, %5.2f%% of fp16 tensor peak\n",
                  name(t), len, ms, rate / 1e12, 100 * rate / dev.peak_fp32, 100 * rate / dev.peak_tensor16);
    }
  }
  return 0;
}
