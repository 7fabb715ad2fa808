// CudaModel's decode steps (see "Decode steps" in cuda_model.h): every slice one token, run
// padded to a batch-size bucket over fixed device buffers, so one captured CUDA graph per
// (bucket, context class) replays the whole layer loop with a single launch.
//
// What makes the captured launches valid for every later step of the same bucket and class:
//  - every per-step input lives in a buffer whose address is fixed until reserve() reallocates
//    (scratch_generation_ then re-captures): positions_, slots_ (the cos/sin table is computed
//    inside the graph from positions_), decode_meta_ (offsets, counts, starts, block tables of
//    width decode_blocks_), hidden_; the host writes them by memcpy before the replay;
//  - the attention plan is fixed per (bucket, context class) for the longest context of the class
//    (powers of two from 256 keys up to decode_blocks_ pages), so a step gets about the split-KV
//    parallelism the eager plan would give it: the kernel returns early for splits past a
//    sequence's length, and the merge reads exactly the splits that saw a key (split
//    s <= pos / kv_chunk), so a sequence shorter than its plan's context is exact;
//  - cuBLAS has a fixed workspace (constructor) and nothing in the layer loop allocates or syncs.
// Padding rows (n real sequences in a bucket of b): slot -1 (rope_write_kv stores nothing),
// zero-length sequences (attention CTAs and merge blocks return at once), a zero hidden row and a
// zeroed attention row, so every padding value stays finite and no real row reads one (GEMMs and
// norms are row-wise).
// Eager decode (graphs off, or before the first capture) runs the very same launches, so graph
// and eager decode agree bit for bit; that is what tests/gpu/model/cuda_graph_test.cpp checks.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <string>

#include "csrc/cuda/cuda_error.h"
#include "csrc/cuda/cuda_model.h"
#include "kernels/cuda/rope.h"

namespace jarvis {
namespace {

constexpr int kBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
constexpr size_t kNumBuckets = std::size(kBuckets);
// The smallest context class: the attention planner's minimum split length (kMinSplitKeys).
constexpr int kMinContextClass = 256;

}  // namespace

void CudaModel::setup_decode(int max_blocks, int page_size) {
  decode_blocks_ = std::max(max_blocks, 1);
  const int max_b = kBuckets[kNumBuckets - 1];
  const int max_ctx = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(decode_blocks_) * page_size, 1 << 30));
  decode_contexts_.clear();
  for (int c = kMinContextClass; c < max_ctx; c *= 2) decode_contexts_.push_back(c);
  decode_contexts_.push_back(max_ctx);
  const size_t nc = decode_contexts_.size();
  const std::vector<int32_t> ones(max_b, 1);
  decode_plans_.assign(kNumBuckets * nc, cuda::AttentionPlan{});
  size_t ws = 0;
  for (size_t i = 0; i < kNumBuckets; ++i) {
    for (size_t c = 0; c < nc; ++c) {
      const std::vector<int32_t> last(max_b, decode_contexts_[c] - 1);  // every sequence at the class's end
      cuda::AttentionPlan& plan = decode_plans_[i * nc + c];
      plan = cuda::plan_paged_attention(ones.data(), last.data(), kBuckets[i], config_.n_heads, config_.n_kv_heads,
                                        num_sms_);
      ws = std::max(ws, cuda::attention_workspace_bytes(plan, kBuckets[i], config_.n_heads, config_.head_dim));
    }
  }
  if (ws > 0) decode_workspace_.grow(ws, "decode split-KV workspace");
  decode_meta_.grow((3 * static_cast<size_t>(max_b) + static_cast<size_t>(max_b) * decode_blocks_) * sizeof(int32_t),
                    "decode batch metadata");
  decode_graphs_.clear();
  decode_graphs_.resize(kNumBuckets * nc);
  ++scratch_generation_;
}

bool CudaModel::decode_step(const BatchView& batch, float* hidden) {
  const size_t n = batch.seqs.size();
  if (n == 0 || n > static_cast<size_t>(kBuckets[kNumBuckets - 1]) || n_layers() == 0) return false;
  for (const SequenceSlice& s : batch.seqs) {
    if (s.n_tokens != 1) return false;
  }
  int64_t width = 1;  // block-table columns this step uses
  int max_kv = 1;      // keys of the longest sequence
  for (const SequenceSlice& s : batch.seqs) {
    const int64_t needed = checked_blocks(s);
    if (needed > decode_blocks_) return false;  // longer than the fixed layout: the general path
    width = std::max(width, needed);
    max_kv = std::max(max_kv, s.start_pos + 1);
  }
  size_t bi = 0;
  while (static_cast<size_t>(kBuckets[bi]) < n) ++bi;
  const size_t b = static_cast<size_t>(kBuckets[bi]);
  // hidden == nullptr (forward_layers_device): the rows are already in hidden_, and growing the
  // scratch would reallocate them away, so a bucket beyond it takes the general path instead.
  if (hidden == nullptr && b > static_cast<size_t>(reserved_tokens_)) return false;
  size_t ci = 0;  // exists: max_kv <= decode_blocks_ pages, the last class
  while (decode_contexts_[ci] < max_kv) ++ci;
  reserve(static_cast<int>(b));

  h_positions_.assign(b, 0);
  h_slots_.assign(b, -1);
  h_meta_.assign(3 * b, 0);
  h_tables_.assign(b * static_cast<size_t>(width), 0);
  int32_t* offsets = h_meta_.data();
  int32_t* counts = offsets + b;
  int32_t* starts = counts + b;
  for (size_t i = 0; i < b; ++i) offsets[i] = static_cast<int32_t>(i);
  for (size_t i = 0; i < n; ++i) {
    const SequenceSlice& s = batch.seqs[i];
    const int pos = s.start_pos;
    counts[i] = 1;
    starts[i] = pos;
    h_positions_[i] = pos;
    h_slots_[i] = static_cast<int64_t>(s.block_table[pos / page_size_]) * page_size_ + pos % page_size_;
    const int64_t needed = pos / page_size_ + 1;
    std::copy(s.block_table.begin(), s.block_table.begin() + needed, h_tables_.begin() + i * width);
  }

  cudaStream_t st = stream_.get();
  int32_t* meta = decode_meta_.as<int32_t>();
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(positions_.get(), h_positions_.data(), b * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(slots_.get(), h_slots_.data(), b * sizeof(int64_t), cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(meta, h_meta_.data(), 3 * b * sizeof(int32_t), cudaMemcpyHostToDevice, st));
  // Only the columns in use: the rest of each row is never read (a sequence reads the blocks its
  // positions need), so a stale value there is harmless.
  JARVIS_CUDA_CHECK(cudaMemcpy2DAsync(meta + 3 * b, decode_blocks_ * sizeof(int32_t), h_tables_.data(),
                                      width * sizeof(int32_t), width * sizeof(int32_t), b, cudaMemcpyHostToDevice,
                                      st));
  const size_t row_bytes = static_cast<size_t>(config_.hidden) * sizeof(float);
  if (hidden != nullptr) {
    JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden_.get(), hidden, n * row_bytes, cudaMemcpyHostToDevice, st));
  }
  if (b > n) {
    const size_t attn_row = static_cast<size_t>(config_.q_dim()) * elem();
    JARVIS_CUDA_CHECK(cudaMemsetAsync(hidden_.as<char>() + n * row_bytes, 0, (b - n) * row_bytes, st));
    JARVIS_CUDA_CHECK(cudaMemsetAsync(attn_.as<char>() + n * attn_row, 0, (b - n) * attn_row, st));
  }
  launch_decode(bi * decode_contexts_.size() + ci);
  if (hidden != nullptr) {
    JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden, hidden_.get(), n * row_bytes, cudaMemcpyDeviceToHost, st));
  }
  stream_.synchronize();
  return true;
}

void CudaModel::run_decode_layers(size_t graph) {
  const int b = kBuckets[graph / decode_contexts_.size()];
  const cuda::AttentionPlan& plan = decode_plans_[graph];
  set_attention_params(b, b, decode_blocks_, plan, decode_meta_.as<int32_t>(),
                       plan.max_splits > 1 ? decode_workspace_.as<float>() : nullptr);
  JARVIS_CUDA_CHECK(cuda::rope_cos_sin(positions_.as<int32_t>(), inv_freq_.as<double>(), cos_sin_.as<float>(), b,
                                       config_.rope_dim / 2, stream_.get()));
  for (int l = 0; l < n_layers(); ++l) layer_forward(l, b);
}

void CudaModel::launch_decode(size_t graph) {
  DecodeGraph& g = decode_graphs_[graph];
  if (cuda_graphs_ && !graphs_failed_) {
    if (g.exec && g.generation == scratch_generation_) {
      JARVIS_CUDA_CHECK(cudaGraphLaunch(g.exec.get(), stream_.get()));
      ++graph_replays_;
      return;
    }
    if (g.warmed) {
      try {
        capture_decode(graph);
        JARVIS_CUDA_CHECK(cudaGraphLaunch(g.exec.get(), stream_.get()));
        ++graph_replays_;
        return;
      } catch (const CudaError& e) {
        // Serving goes on without graphs: the same launches, eagerly.
        graphs_failed_ = true;
        for (DecodeGraph& other : decode_graphs_) other.exec.reset();
        std::fprintf(stderr, "jarvis: %s: CUDA graph capture failed, decode steps run eagerly from now on: %s\n",
                     device_name_.c_str(), e.what());
      }
    } else {
      g.warmed = true;  // first step of the graph eagerly: lazy kernel loads happen outside capture
    }
  }
  run_decode_layers(graph);
}

void CudaModel::capture_decode(size_t graph) {
  DecodeGraph& g = decode_graphs_[graph];
  cudaStream_t st = stream_.get();
  if (g.exec) {  // stale (the scratch moved): let a replay still queued finish before destroying it
    stream_.synchronize();
    g.exec.reset();
  }
  // Thread-local: another thread's unrelated CUDA calls do not invalidate this capture.
  JARVIS_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t captured = nullptr;
  try {
    run_decode_layers(graph);
  } catch (...) {
    cudaStreamEndCapture(st, &captured);  // leaves capture mode whatever happened
    if (captured) cudaGraphDestroy(captured);
    cudaGetLastError();
    throw;
  }
  JARVIS_CUDA_CHECK(cudaStreamEndCapture(st, &captured));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, captured, 0);
  cudaGraphDestroy(captured);
  JARVIS_CUDA_CHECK(e);
  g.exec.reset(exec);
  g.generation = scratch_generation_;
  ++graph_captures_;
}

}  // namespace jarvis
