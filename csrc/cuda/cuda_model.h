// One rank's shard on a CUDA GPU: the CPU Model's forward pass (csrc/model/model.cpp and
// llama_block.cpp, the reference it is tested against) over device weights and a device KV cache.
//
// Precision: matrices, activations and KV pages in fp16 / bf16 (or fp32 for debugging), every
// GEMM and reduction accumulating in fp32. The residual stream (the hidden state between blocks)
// stays fp32 on the device, as on the CPU: the o_proj and down_proj GEMMs add into it directly
// (beta = 1), so no layer rounds it to 16 bits.
//
// Per layer:  norm = rmsnorm(h)            (fp32 in, dtype out)
//             q,k,v = norm · Wq,Wk,Wvᵀ [+ b]  (cuBLAS; qwen2 bias added after)
//             rope(q) in place; rope(k), v -> pages (one fused kernel, slot mapping)
//             attn = paged_attention(q, pages)
//             h += attn · Woᵀ                (cuBLAS, fp32 out, beta = 1)
//             norm = rmsnorm(h); g = act(norm · Wgateᵀ) * (norm · Wupᵀ); h += g · Wdownᵀ
// Host <-> device copies happen only at the calls' boundaries (tokens and hidden states in,
// hidden states and logits out) and for the step metadata (positions, block tables).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "csrc/cuda/cuda_graph.h"
#include "csrc/cuda/cuda_weights.h"
#include "csrc/cuda/device_memory.h"
#include "csrc/model/device.h"
#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/sampling.h"

namespace jarvis {

class CudaModel : public ShardForward {
 public:
  // Uploads model's shard to options.device and sizes the KV cache (see CudaShardOptions).
  CudaModel(const Model& model, const CudaShardOptions& options);

  const ModelConfig& config() const override { return config_; }
  const ShardSpec& shard() const override { return shard_; }
  int num_blocks() const override { return num_blocks_; }
  int page_size() const override { return page_size_; }
  std::string device_name() const override { return device_name_; }

  void embed(const int32_t* tokens, int n, float* hidden) override;
  void forward_layers(const BatchView& batch, float* hidden) override;
  void compute_logits(const float* hidden, int n_rows, float* logits) override;

  // ---- Device-resident hidden state (ShardForward's block; NCCL between GPU ranks) ----
  bool has_device_hidden() const override { return true; }
  int device_ordinal() const override { return device_; }
  std::array<uint8_t, 16> device_uuid() const override { return uuid_; }
  float* device_hidden(int n_tokens) override;
  void forward_layers_device(const BatchView& batch) override;
  void hidden_to_device(const float* hidden, int n_tokens) override;
  void hidden_to_host(float* hidden, int n_tokens) override;
  void embed_device(const int32_t* tokens, int n) override;  // gathered on the device, no host copy
  // ---- end device-resident hidden state ----

  size_t weight_bytes() const { return weights_.bytes; }
  size_t kv_bytes() const { return kv_.bytes(); }
  // Decode steps that replayed a captured graph, and graphs captured (tests and benchmarks check
  // that the graph path really ran).
  size_t graph_replays() const { return graph_replays_; }
  size_t graph_captures() const { return graph_captures_; }

 private:
  int n_layers() const { return shard_.end_layer - shard_.first_layer; }
  size_t elem() const { return dtype_ == cuda::DType::kF32 ? 4 : 2; }
  void* kv_pages(int layer, int which) const;  // which: 0 = K, 1 = V
  void reserve(int n_tokens);
  void check_embed_input(const char* what, const int32_t* tokens, int n) const;
  void gather_embeddings_locked(const int32_t* tokens, int n);
  void allocate_kv(const CudaShardOptions& options);
  // Host-side checks and metadata of a step (as Model::forward_layers); returns total tokens.
  int plan_step(const BatchView& batch);
  // Fills attn_params_ (what layer_forward reads) for a batch whose metadata is at `meta` on the
  // device: [token_offset | n_tokens | start_pos] per sequence, then the block tables.
  void set_attention_params(int n_seqs, int n_tokens, int max_blocks, const cuda::AttentionPlan& plan,
                            const int32_t* meta, float* workspace);
  void layer_forward(int layer, int n);
  // Validates one slice's positions and block ids; returns the blocks its positions need.
  int64_t checked_blocks(const SequenceSlice& s) const;

  // ---- Decode steps: bucketed, replayed from CUDA graphs (cuda_model_decode.cpp) ----
  // A decode step (every slice one token, at most 256 slices, every sequence within
  // decode_blocks_ pages) runs padded up to a batch-size bucket with fixed metadata buffers and
  // a fixed attention plan per (bucket, context class: the longest sequence rounded up to a power
  // of two), so its launches can be captured once per pair and replayed. The same launches run
  // eagerly when graphs are off (or failed), so both give the same bits.
  // Padding rows: slot -1 (no KV write), zero-length sequences (attention skips them), zero input.
  // false: not such a step. hidden == nullptr: the rows are already in the device buffer
  // (forward_layers_device), and stay there.
  bool decode_step(const BatchView& batch, float* hidden);
  void setup_decode(int max_blocks, int page_size);  // (re)sizes the fixed buffers and plans
  // graph: bucket index * decode_contexts_.size() + context class index.
  void run_decode_layers(size_t graph);  // the launches a graph holds
  void launch_decode(size_t graph);      // replay, capture, or run eagerly
  void capture_decode(size_t graph);     // throws CudaError

  bool cuda_graphs_ = true;
  bool graphs_failed_ = false;          // a capture failed once: eager from then on
  uint64_t scratch_generation_ = 0;     // bumped whenever reserve() reallocates the scratch
  int decode_blocks_ = 0;               // block-table width of the fixed layout
  DeviceBuffer cublas_workspace_;       // fixed, so cuBLAS allocates nothing during capture
  DeviceBuffer decode_meta_;            // [offsets | counts | starts][bucket], tables [bucket][decode_blocks_]
  DeviceBuffer decode_workspace_;       // split-KV partials of the largest plan
  std::vector<int> decode_contexts_;    // context classes: 256, 512, ... up to decode_blocks_ pages
  std::vector<cuda::AttentionPlan> decode_plans_;  // per graph index, for its class's full context
  struct DecodeGraph {
    GraphExec exec;
    uint64_t generation = 0;
    bool warmed = false;  // ran once eagerly (lazy module loads happen outside capture)
  };
  std::vector<DecodeGraph> decode_graphs_;
  std::vector<int32_t> h_tables_;
  size_t graph_replays_ = 0, graph_captures_ = 0;
  // ---- end decode steps ----

  ModelConfig config_;
  ShardSpec shard_;
  cuda::DType dtype_;
  int device_ = 0;
  std::string device_name_;
  int num_sms_ = 0;
  std::array<uint8_t, 16> uuid_{};  // cudaDeviceProp::uuid: tells two ranks on one GPU apart from two GPUs

  CudaStream stream_;
  CublasHandle cublas_;
  CudaWeights weights_;
  DeviceBuffer inv_freq_;  // [rope_dim / 2] double, Model::rope_inv_freq()
  DeviceBuffer kv_;        // [n_layers][K, V][num_blocks, page_size, n_kv_heads, head_dim] of dtype
  int num_blocks_ = 0;
  int page_size_ = 0;

  // Forward calls are serialised (as on the CPU): they share the scratch below, kept between
  // calls so decode steps do not allocate.
  std::mutex mu_;
  int reserved_tokens_ = 0;
  DeviceBuffer hidden_;           // [n, hidden] f32: the residual stream
  DeviceBuffer norm_;             // [n, hidden] dtype
  DeviceBuffer q_, attn_;         // [n, q_dim] dtype
  DeviceBuffer k_, v_;            // [n, kv_dim] dtype
  DeviceBuffer gate_, up_;        // [n, ffn] dtype
  DeviceBuffer logits_;           // [rows, vocab] f32
  DeviceBuffer tokens_;           // [n] int32
  DeviceBuffer positions_;        // [n] int32
  DeviceBuffer slots_;            // [n] int64
  DeviceBuffer cos_sin_;          // [n, rope_dim / 2, 2] f32
  DeviceBuffer seq_meta_;         // int32 [token_offset | n_tokens | start_pos][n_seqs], block tables
  DeviceBuffer attn_workspace_;   // split-KV partials

  // Host copies of the step metadata (reused between steps).
  std::vector<int32_t> h_positions_, h_meta_;
  std::vector<int64_t> h_slots_;
  cuda::PagedAttentionParams attn_params_;

  // ---- Sampling on the device (csrc/cuda/cuda_sampling.cpp over kernels/cuda/sampling.h) ----
 public:
  bool samples_on_device() const override { return true; }
  // Final norm + lm_head into the device logits, then penalties, temperature, top-k/p, min-p and
  // the draw with each request's u on the device; only tokens and logprobs come back. A row whose
  // candidate set outgrows the kernel's window (kSampleMaxCandidates) is sampled on the host from
  // its penalised logits (one row copied back). Serialised with the forward calls (mu_).
  void sample_logits(const float* hidden, const std::vector<SampleRequest>& requests, SampleResult* out) override;

 private:
  DeviceBuffer sample_params_;   // [rows] cuda::SampleRowParams
  DeviceBuffer sample_history_;  // [entries] cuda::SamplePenaltyToken
  DeviceBuffer sample_results_;  // [rows] cuda::SampleRowResult
  std::vector<cuda::SampleRowParams> h_sample_params_;
  std::vector<cuda::SamplePenaltyToken> h_sample_history_;
  std::vector<cuda::SampleRowResult> h_sample_results_;
  std::vector<float> h_fallback_row_;  // [vocab] penalised logits of a row sampled on the host
};

}  // namespace jarvis
