#include "csrc/cuda/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "csrc/cuda/cuda_error.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"

namespace jarvis {
namespace {

cuda::DType to_cuda(GpuDType t) {
  switch (t) {
    case GpuDType::kF16: return cuda::DType::kF16;
    case GpuDType::kBF16: return cuda::DType::kBF16;
    case GpuDType::kF32: return cuda::DType::kF32;
  }
  return cuda::DType::kF16;
}

// Runs before any other member is built, so the stream and the cuBLAS handle land on it.
int select_device(int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw CudaError("device cuda:" + std::to_string(device) + ": no usable CUDA device (cudaGetDeviceCount: " +
                    cudaGetErrorName(e) + ", " + cudaGetErrorString(e) + ")");
  }
  if (device < 0 || device >= count) {
    throw CudaError("device cuda:" + std::to_string(device) + ": this machine has " + std::to_string(count) +
                    " CUDA device(s)");
  }
  JARVIS_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

void check_supported(const ModelConfig& c) {
  if (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256) {
    throw InvalidArgument("CUDA backend: head_dim " + std::to_string(c.head_dim) +
                          " has no attention kernel (64, 128 and 256 are built)");
  }
  if (c.rope_dim <= 0 || c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim) {
    throw InvalidArgument("CUDA backend: rope_dim " + std::to_string(c.rope_dim) + " unsupported");
  }
}

cuda::GemmParams gemm_params(cuda::DType dtype, int64_t rows, int64_t in, int64_t out, const void* x,
                             const DeviceBuffer& w, void* y) {
  cuda::GemmParams p;
  p.dtype = dtype;
  p.out_dtype = dtype;
  p.rows = rows;
  p.in = in;
  p.out = out;
  p.x = x;
  p.w = w.get();
  p.y = y;
  return p;
}

// The same +residual GEMM with an fp32 output: h += x · wᵀ.
cuda::GemmParams residual_gemm(cuda::DType dtype, int64_t rows, int64_t in, int64_t out, const void* x,
                               const DeviceBuffer& w, float* h) {
  cuda::GemmParams p = gemm_params(dtype, rows, in, out, x, w, h);
  p.out_dtype = cuda::DType::kF32;
  p.accumulate = true;
  return p;
}

}  // namespace

CudaModel::CudaModel(const Model& model, const CudaShardOptions& options)
    : config_(model.config()), shard_(model.shard()), dtype_(to_cuda(options.dtype)),
      device_(select_device(options.device)), cublas_(stream_.get()) {
  check_supported(config_);
  cudaDeviceProp prop{};
  JARVIS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  device_name_ = "cuda:" + std::to_string(device_) + " (" + prop.name + ", " + gpu_dtype_name(options.dtype) + ")";
  num_sms_ = prop.multiProcessorCount;
  static_assert(sizeof(prop.uuid.bytes) == 16, "a CUDA UUID is 16 bytes");
  std::memcpy(uuid_.data(), prop.uuid.bytes, uuid_.size());

  weights_ = upload_weights(config_, shard_, model.weights(), dtype_, stream_.get());
  const std::vector<double>& inv_freq = model.rope_inv_freq();
  if (static_cast<int>(inv_freq.size()) != config_.rope_dim / 2) {
    throw InvalidArgument("CUDA backend: RoPE table has " + std::to_string(inv_freq.size()) +
                          " frequencies, rope_dim " + std::to_string(config_.rope_dim));
  }
  inv_freq_.grow(inv_freq.size() * sizeof(double), "RoPE frequencies");
  JARVIS_CUDA_CHECK(cudaMemcpy(inv_freq_.get(), inv_freq.data(), inv_freq.size() * sizeof(double),
                               cudaMemcpyHostToDevice));
  // Scratch for ordinary steps first, so the KV budget is measured on what is really left.
  if (options.max_step_tokens < 1) throw InvalidArgument("CUDA backend: max_step_tokens must be >= 1");
  reserve(options.max_step_tokens);
  // Decode graphs: cuBLAS gets a fixed workspace (32 MiB, what cuBLAS sizes for sm_90) so that
  // no GEMM allocates inside a capture; eager steps use the same one, so both pick the same
  // kernels. The decode buffers are sized for the model's context first, then cut to the cache.
  cuda_graphs_ = options.cuda_graphs;
  cublas_workspace_.grow(size_t{32} << 20, "cuBLAS workspace");
  JARVIS_CUDA_CHECK(cublasSetWorkspace(cublas_.get(), cublas_workspace_.get(), cublas_workspace_.bytes()));
  const int64_t context = config_.context_length > 0 ? config_.context_length : 32768;
  const int page = std::max(options.page_size, 1);
  setup_decode(static_cast<int>((context + page - 1) / page), page);
  allocate_kv(options);
  setup_decode(std::min(decode_blocks_, num_blocks_), page_size_);
}

void CudaModel::allocate_kv(const CudaShardOptions& o) {
  if (o.page_size < 1) throw InvalidArgument("CUDA backend: page size must be >= 1");
  if (!(o.gpu_memory_fraction > 0.0 && o.gpu_memory_fraction <= 1.0)) {
    throw InvalidArgument("gpu_memory_fraction must be in (0, 1], got " + std::to_string(o.gpu_memory_fraction));
  }
  if (o.num_blocks < 0) throw InvalidArgument("CUDA backend: num_blocks must be >= 0");
  page_size_ = o.page_size;
  const size_t block_bytes = 2 * static_cast<size_t>(n_layers()) * page_size_ * config_.kv_dim() * elem();
  if (block_bytes == 0) {  // a shard without layers keeps no KV; any page count is free
    num_blocks_ = o.num_blocks > 0 ? o.num_blocks : 1;
    return;
  }
  size_t free_b = 0, total_b = 0;
  JARVIS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const size_t budget = static_cast<size_t>(o.gpu_memory_fraction * static_cast<double>(free_b));
  const size_t fit = budget / block_bytes;
  const std::string budget_text = "budget " + format_bytes(budget) + " (gpu_memory_fraction " +
                                  std::to_string(o.gpu_memory_fraction) + " of " + format_bytes(free_b) +
                                  " free of " + format_bytes(total_b) + " on cuda:" + std::to_string(device_) +
                                  " after " + format_bytes(weights_.bytes) + " of weights)";
  if (o.num_blocks > 0 && static_cast<size_t>(o.num_blocks) > fit) {
    throw DeviceOutOfMemory("KV cache of " + std::to_string(o.num_blocks) + " pages asked for " +
                            format_bytes(static_cast<size_t>(o.num_blocks) * block_bytes) + ", " + budget_text);
  }
  if (fit == 0) {
    throw DeviceOutOfMemory("KV cache: one page needs " + format_bytes(block_bytes) + ", " + budget_text);
  }
  num_blocks_ = o.num_blocks > 0 ? o.num_blocks : static_cast<int>(std::min<size_t>(fit, 1 << 30));
  kv_.grow(static_cast<size_t>(num_blocks_) * block_bytes, "KV cache");
  // Attention reads only written slots; zeros keep a stray read finite and the cache deterministic.
  JARVIS_CUDA_CHECK(cudaMemsetAsync(kv_.get(), 0, kv_.bytes(), stream_.get()));
  stream_.synchronize();
}

void* CudaModel::kv_pages(int layer, int which) const {
  const size_t layer_bytes = static_cast<size_t>(num_blocks_) * page_size_ * config_.kv_dim() * elem();
  return static_cast<char*>(kv_.get()) + (2 * static_cast<size_t>(layer) + which) * layer_bytes;
}

void CudaModel::reserve(int n) {
  if (n <= reserved_tokens_) return;
  const size_t t = static_cast<size_t>(n), e = elem();
  hidden_.grow(t * config_.hidden * sizeof(float), "hidden state");
  norm_.grow(t * config_.hidden * e, "normed activations");
  q_.grow(t * config_.q_dim() * e, "queries");
  attn_.grow(t * config_.q_dim() * e, "attention output");
  k_.grow(t * config_.kv_dim() * e, "keys");
  v_.grow(t * config_.kv_dim() * e, "values");
  gate_.grow(t * config_.ffn_hidden * e, "MLP gate");
  up_.grow(t * config_.ffn_hidden * e, "MLP up");
  tokens_.grow(t * sizeof(int32_t), "token ids");
  positions_.grow(t * sizeof(int32_t), "positions");
  slots_.grow(t * sizeof(int64_t), "slot mapping");
  cos_sin_.grow(t * config_.rope_dim * sizeof(float), "RoPE table");
  reserved_tokens_ = n;
  ++scratch_generation_;  // captured decode graphs hold the old pointers
}

int64_t CudaModel::checked_blocks(const SequenceSlice& s) const {
  if (s.n_tokens < 0 || s.start_pos < 0) throw InvalidArgument("forward_layers: negative slice size or position");
  const int64_t needed = (static_cast<int64_t>(s.start_pos) + s.n_tokens + page_size_ - 1) / page_size_;
  if (static_cast<int64_t>(s.block_table.size()) < needed) {
    throw InvalidArgument("sequence " + std::to_string(s.seq_id) + ": block table has " +
                          std::to_string(s.block_table.size()) + " blocks, positions up to " +
                          std::to_string(s.start_pos + s.n_tokens) + " need " + std::to_string(needed));
  }
  for (int64_t b = 0; b < needed; ++b) {
    if (s.block_table[b] < 0 || s.block_table[b] >= num_blocks_) {
      throw InvalidArgument("sequence " + std::to_string(s.seq_id) + ": block id " +
                            std::to_string(s.block_table[b]) + " outside the cache's " +
                            std::to_string(num_blocks_) + " blocks");
    }
  }
  return needed;
}

int CudaModel::plan_step(const BatchView& batch) {
  const int ns = static_cast<int>(batch.seqs.size());
  int n = 0, max_blocks = 1;
  for (const SequenceSlice& s : batch.seqs) {
    const int64_t needed = checked_blocks(s);
    max_blocks = std::max<int>(max_blocks, static_cast<int>(needed));
    n += s.n_tokens;
  }
  h_positions_.resize(n);
  h_slots_.resize(n);
  // [token_offset | n_tokens | start_pos] per sequence, then the block tables padded with block 0
  // (padding is never read: a sequence reads only the blocks its positions need).
  h_meta_.assign(3 * static_cast<size_t>(ns) + static_cast<size_t>(ns) * max_blocks, 0);
  int32_t* offsets = h_meta_.data();
  int32_t* counts = offsets + ns;
  int32_t* starts = counts + ns;
  int32_t* tables = starts + ns;
  int offset = 0;
  for (int i = 0; i < ns; ++i) {
    const SequenceSlice& s = batch.seqs[i];
    offsets[i] = offset;
    counts[i] = s.n_tokens;
    starts[i] = s.start_pos;
    const int64_t needed = (static_cast<int64_t>(s.start_pos) + s.n_tokens + page_size_ - 1) / page_size_;
    for (int64_t b = 0; b < needed; ++b) tables[static_cast<size_t>(i) * max_blocks + b] = s.block_table[b];
    for (int t = 0; t < s.n_tokens; ++t) {
      const int pos = s.start_pos + t;
      h_positions_[offset + t] = pos;
      h_slots_[offset + t] = static_cast<int64_t>(s.block_table[pos / page_size_]) * page_size_ + pos % page_size_;
    }
    offset += s.n_tokens;
  }
  if (n == 0) return 0;

  const cuda::AttentionPlan plan =
      cuda::plan_paged_attention(counts, starts, ns, config_.n_heads, config_.n_kv_heads, num_sms_);

  reserve(n);
  seq_meta_.grow(h_meta_.size() * sizeof(int32_t), "batch metadata");
  const size_t ws = cuda::attention_workspace_bytes(plan, n, config_.n_heads, config_.head_dim);
  if (ws > 0) attn_workspace_.grow(ws, "attention split-KV workspace");
  cudaStream_t st = stream_.get();
  JARVIS_CUDA_CHECK(
      cudaMemcpyAsync(positions_.get(), h_positions_.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(slots_.get(), h_slots_.data(), n * sizeof(int64_t), cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(seq_meta_.get(), h_meta_.data(), h_meta_.size() * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));
  float* workspace = ws > 0 ? attn_workspace_.as<float>() : nullptr;
  set_attention_params(ns, n, max_blocks, plan, seq_meta_.as<int32_t>(), workspace);
  return n;
}

void CudaModel::set_attention_params(int n_seqs, int n_tokens, int max_blocks, const cuda::AttentionPlan& plan,
                                     const int32_t* meta, float* workspace) {
  cuda::PagedAttentionParams& p = attn_params_;
  p = cuda::PagedAttentionParams{};
  p.dtype = dtype_;
  p.n_heads = config_.n_heads;
  p.n_kv_heads = config_.n_kv_heads;
  p.head_dim = config_.head_dim;
  p.page_size = page_size_;
  p.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));  // as llama_block.cpp
  p.n_seqs = n_seqs;
  p.total_tokens = n_tokens;
  p.max_blocks_per_seq = max_blocks;
  p.plan = plan;
  p.token_offset = meta;
  p.n_tokens = meta + n_seqs;
  p.start_pos = meta + 2 * n_seqs;
  p.block_tables = meta + 3 * n_seqs;
  p.q = q_.get();
  p.out = attn_.get();
  p.workspace = workspace;
}

void CudaModel::layer_forward(int layer, int n) {
  const ModelConfig& c = config_;
  const CudaLayerWeights& w = weights_.layers[layer];
  cudaStream_t st = stream_.get();
  cublasHandle_t blas = cublas_.get();
  float* h = hidden_.as<float>();

  // Attention.
  JARVIS_CUDA_CHECK(cuda::rmsnorm_f32_in(dtype_, h, w.attn_norm.as<float>(), norm_.get(), n, c.hidden, c.norm_eps, st));
  JARVIS_CUDA_CHECK(cuda::gemm(blas, gemm_params(dtype_, n, c.hidden, c.q_dim(), norm_.get(), w.wq, q_.get())));
  JARVIS_CUDA_CHECK(cuda::gemm(blas, gemm_params(dtype_, n, c.hidden, c.kv_dim(), norm_.get(), w.wk, k_.get())));
  JARVIS_CUDA_CHECK(cuda::gemm(blas, gemm_params(dtype_, n, c.hidden, c.kv_dim(), norm_.get(), w.wv, v_.get())));
  if (c.qkv_bias) {
    JARVIS_CUDA_CHECK(cuda::add_bias(dtype_, q_.get(), w.bq.as<float>(), n, c.q_dim(), st));
    JARVIS_CUDA_CHECK(cuda::add_bias(dtype_, k_.get(), w.bk.as<float>(), n, c.kv_dim(), st));
    JARVIS_CUDA_CHECK(cuda::add_bias(dtype_, v_.get(), w.bv.as<float>(), n, c.kv_dim(), st));
  }
  cuda::RopeKvWriteParams r;
  r.dtype = dtype_;
  r.n_tokens = n;
  r.n_heads = c.n_heads;
  r.n_kv_heads = c.n_kv_heads;
  r.head_dim = c.head_dim;
  r.rope_dim = c.rope_dim;
  r.pairing = c.rope_style == RopeStyle::kInterleaved ? cuda::RopePairing::kInterleaved : cuda::RopePairing::kNeox;
  r.q = q_.get();
  r.k = k_.get();
  r.v = v_.get();
  r.cos_sin = cos_sin_.as<float>();
  r.slot_mapping = slots_.as<int64_t>();
  r.k_pages = kv_pages(layer, 0);
  r.v_pages = kv_pages(layer, 1);
  JARVIS_CUDA_CHECK(cuda::rope_write_kv(r, st));
  cuda::PagedAttentionParams a = attn_params_;
  a.k_pages = r.k_pages;
  a.v_pages = r.v_pages;
  JARVIS_CUDA_CHECK(cuda::paged_attention(a, st));
  JARVIS_CUDA_CHECK(cuda::gemm(blas, residual_gemm(dtype_, n, c.q_dim(), c.hidden, attn_.get(), w.wo, h)));

  // Feed-forward.
  JARVIS_CUDA_CHECK(cuda::rmsnorm_f32_in(dtype_, h, w.ffn_norm.as<float>(), norm_.get(), n, c.hidden, c.norm_eps, st));
  JARVIS_CUDA_CHECK(
      cuda::gemm(blas, gemm_params(dtype_, n, c.hidden, c.ffn_hidden, norm_.get(), w.w_gate, gate_.get())));
  JARVIS_CUDA_CHECK(cuda::gemm(blas, gemm_params(dtype_, n, c.hidden, c.ffn_hidden, norm_.get(), w.w_up, up_.get())));
  const cuda::GatedActivation act =
      c.activation == Activation::kGeluTanh ? cuda::GatedActivation::kGeluTanh : cuda::GatedActivation::kSilu;
  JARVIS_CUDA_CHECK(cuda::gated_activation(act, dtype_, gate_.get(), up_.get(), gate_.get(), n, c.ffn_hidden, st));
  JARVIS_CUDA_CHECK(cuda::gemm(blas, residual_gemm(dtype_, n, c.ffn_hidden, c.hidden, gate_.get(), w.w_down, h)));
}

// embed() and embed_device(): the shard must hold the embedding and every id be in the vocabulary.
void CudaModel::check_embed_input(const char* what, const int32_t* tokens, int n) const {
  if (!shard_.has_embedding || !weights_.embedding.get()) {
    throw InvalidArgument(std::string(what) + ": this shard does not hold the embedding");
  }
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      throw InvalidArgument("token id " + std::to_string(tokens[i]) + " outside the vocabulary of " +
                            std::to_string(config_.vocab_size));
    }
  }
}

// The gather and the embedding scale into the fp32 residual buffer (hidden_); mu_ held, n > 0.
void CudaModel::gather_embeddings_locked(const int32_t* tokens, int n) {
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  reserve(n);
  cudaStream_t st = stream_.get();
  const int64_t rows = n, h = config_.hidden;
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(tokens_.get(), tokens, rows * sizeof(int32_t), cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cuda::embedding_gather(dtype_, weights_.embedding.get(), tokens_.as<int32_t>(), norm_.get(), rows,
                                           h, config_.vocab_size, st));
  // The scale is applied in fp32 to the stored row, as Model::embed does.
  JARVIS_CUDA_CHECK(cuda::convert(dtype_, norm_.get(), cuda::DType::kF32, hidden_.get(), rows * h,
                                  config_.embedding_scale, st));
}

void CudaModel::embed(const int32_t* tokens, int n, float* hidden) {
  check_embed_input("embed", tokens, n);
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  gather_embeddings_locked(tokens, n);
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden, hidden_.get(), static_cast<size_t>(n) * config_.hidden * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_.get()));
  stream_.synchronize();
}

void CudaModel::forward_layers(const BatchView& batch, float* hidden) {
  std::lock_guard<std::mutex> lock(mu_);
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  if (decode_step(batch, hidden)) return;  // bucketed decode (cuda_model_decode.cpp)
  const int n = plan_step(batch);
  if (n == 0) return;
  cudaStream_t st = stream_.get();
  const size_t bytes = static_cast<size_t>(n) * config_.hidden * sizeof(float);
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden_.get(), hidden, bytes, cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cuda::rope_cos_sin(positions_.as<int32_t>(), inv_freq_.as<double>(), cos_sin_.as<float>(), n,
                                       config_.rope_dim / 2, st));
  for (int l = 0; l < n_layers(); ++l) layer_forward(l, n);
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden, hidden_.get(), bytes, cudaMemcpyDeviceToHost, st));
  stream_.synchronize();
}

void CudaModel::compute_logits(const float* hidden, int n_rows, float* logits) {
  if (!shard_.has_head || !weights_.output_norm.get()) {
    throw InvalidArgument("compute_logits: this shard does not hold the head");
  }
  if (!weights_.head().get()) throw InvalidArgument("compute_logits: tied head but no embedding loaded");
  if (n_rows <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  reserve(n_rows);
  const int64_t rows = n_rows, h = config_.hidden, vocab = config_.vocab_size;
  logits_.grow(static_cast<size_t>(rows * vocab) * sizeof(float), "logits");
  cudaStream_t st = stream_.get();
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden_.get(), hidden, rows * h * sizeof(float), cudaMemcpyHostToDevice, st));
  JARVIS_CUDA_CHECK(cuda::rmsnorm_f32_in(dtype_, hidden_.as<float>(), weights_.output_norm.as<float>(), norm_.get(),
                                         rows, h, config_.norm_eps, st));
  cuda::GemmParams p = gemm_params(dtype_, rows, h, vocab, norm_.get(), weights_.head(), logits_.get());
  p.out_dtype = cuda::DType::kF32;
  JARVIS_CUDA_CHECK(cuda::gemm(cublas_.get(), p));
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(logits, logits_.get(), rows * vocab * sizeof(float), cudaMemcpyDeviceToHost, st));
  stream_.synchronize();
}

// ---- Device-resident hidden state (ShardForward's block; NCCL between GPU ranks) ----

float* CudaModel::device_hidden(int n_tokens) {
  if (n_tokens < 0) throw InvalidArgument("device_hidden: negative token count");
  std::lock_guard<std::mutex> lock(mu_);
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  // Grown here, before the caller fills it: plan_step's reserve is then a no-op that keeps it.
  reserve(std::max(n_tokens, 1));
  return hidden_.as<float>();
}

void CudaModel::forward_layers_device(const BatchView& batch) {
  std::lock_guard<std::mutex> lock(mu_);
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  // A decode step takes the bucketed (CUDA graph) path as forward_layers does, in place: the same
  // launches, so the device and host paths agree bit for bit, and no eager launch storm per token.
  if (decode_step(batch, nullptr)) return;
  const int reserved = reserved_tokens_;
  const int n = plan_step(batch);
  if (n == 0) return;
  // A larger step than device_hidden() was sized for would have found its input reallocated away.
  if (n > reserved) {
    throw InvalidArgument("forward_layers_device: step of " + std::to_string(n) + " tokens, the device buffer holds " +
                          std::to_string(reserved) + " (device_hidden(n) first)");
  }
  cudaStream_t st = stream_.get();
  JARVIS_CUDA_CHECK(cuda::rope_cos_sin(positions_.as<int32_t>(), inv_freq_.as<double>(), cos_sin_.as<float>(), n,
                                       config_.rope_dim / 2, st));
  for (int l = 0; l < n_layers(); ++l) layer_forward(l, n);
  stream_.synchronize();
}

void CudaModel::hidden_to_device(const float* hidden, int n_tokens) {
  if (n_tokens <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  reserve(n_tokens);
  const size_t bytes = static_cast<size_t>(n_tokens) * config_.hidden * sizeof(float);
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden_.get(), hidden, bytes, cudaMemcpyHostToDevice, stream_.get()));
  stream_.synchronize();
}

void CudaModel::hidden_to_host(float* hidden, int n_tokens) {
  if (n_tokens <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (n_tokens > reserved_tokens_) throw InvalidArgument("hidden_to_host: more rows than the device buffer holds");
  JARVIS_CUDA_CHECK(cudaSetDevice(device_));
  const size_t bytes = static_cast<size_t>(n_tokens) * config_.hidden * sizeof(float);
  JARVIS_CUDA_CHECK(cudaMemcpyAsync(hidden, hidden_.get(), bytes, cudaMemcpyDeviceToHost, stream_.get()));
  stream_.synchronize();
}

// Rank 0 with an NCCL hop to rank 1: the gather and scale of embed(), left in the residual
// buffer for forward_layers_device instead of copied out (and back in again).
void CudaModel::embed_device(const int32_t* tokens, int n) {
  check_embed_input("embed_device", tokens, n);
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  gather_embeddings_locked(tokens, n);
  stream_.synchronize();  // tokens is the caller's host memory, read asynchronously until here
}

// ---- end device-resident hidden state ----

bool cuda_backend_built() { return true; }

void check_cuda_device(int index) { select_device(index); }

std::unique_ptr<ShardForward> make_cuda_shard(const Model& model, const CudaShardOptions& options) {
  return std::make_unique<CudaModel>(model, options);
}

}  // namespace jarvis
