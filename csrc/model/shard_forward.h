// One rank's shard of the model on one device, with its KV cache: the three calls of a forward
// step at the pipeline boundaries (embed at the head, the shard's layers, logits at the tail).
// Hidden states and logits cross this interface in host memory as float, so a shard on a GPU
// and a shard on a CPU are interchangeable in a ring (the copies happen at these boundaries).
// Implementations: CpuShard (csrc/model/cpu_shard.h) and the CUDA model (csrc/cuda/cuda_model.h,
// made through make_cuda_shard in csrc/model/device.h).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/model/kv_cache.h"
#include "csrc/sampling/sample_request.h"
#include "csrc/util/error.h"

namespace jarvis {

class ShardForward {
 public:
  virtual ~ShardForward() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const ShardSpec& shard() const = 0;  // end_layer resolved
  virtual int num_blocks() const = 0;          // KV cache pages the block manager may hand out
  virtual int page_size() const = 0;
  virtual std::string device_name() const = 0;  // "cpu", "cuda:0 (NVIDIA H100 ...)"

  // hidden[n, hidden] = embedding rows of tokens (times embedding_scale). Needs has_embedding;
  // InvalidArgument for a token id outside the vocabulary.
  virtual void embed(const int32_t* tokens, int n, float* hidden) = 0;
  // The shard's layers over hidden[batch.total_tokens(), hidden] in place, writing the new
  // tokens' K/V into the pages of each slice's block table (InvalidArgument when a table does not
  // cover its slice or names a block outside the cache).
  virtual void forward_layers(const BatchView& batch, float* hidden) = 0;
  // logits[n_rows, vocab] of hidden rows (final norm + lm_head). Needs has_head.
  virtual void compute_logits(const float* hidden, int n_rows, float* logits) = 0;

  // ---- Sampling where the logits are (optional) ----
  // A shard on a GPU computes the logits of the rows it samples and samples them there, so only
  // tokens and logprobs come back to the host. Default: not supported.
  virtual bool samples_on_device() const { return false; }
  // out[i] = the sample of request i from the logits of hidden row i (hidden[requests.size(),
  // hidden]), exactly what sample_request_on_host() gives for those logits (requests[i].row is
  // not used here). Needs has_head.
  virtual void sample_logits(const float* hidden, const std::vector<SampleRequest>& requests, SampleResult* out) {
    (void)hidden, (void)requests, (void)out;
    throw InvalidArgument("this shard (" + device_name() + ") does not sample on its device");
  }
  // ---- Device-resident hidden state (NCCL between GPU ranks: engine/pipeline/device_hop.h) ----
  // A shard on a GPU may let the pipeline move its hidden state device to device: the hidden
  // state lives in the shard's own device residual buffer, and the calls below run on it there.
  // Defaults: not supported (a CPU shard), and the host-memory calls above are used instead.
  virtual bool has_device_hidden() const { return false; }
  // cuda:N of the shard, and the GPU's UUID (all zero when unknown); -1 for a host shard.
  virtual int device_ordinal() const { return -1; }
  virtual std::array<uint8_t, 16> device_uuid() const { return {}; }
  // The device buffer of [n_tokens, hidden] f32, grown to hold n_tokens rows first: the input of
  // the next forward_layers_device. Valid until a call on this shard needs more rows.
  virtual float* device_hidden(int /*n_tokens*/) { no_device_hidden(); }
  // forward_layers over the first batch.total_tokens() rows of the device buffer, in place;
  // returns when the result is there (the shard's stream is synchronised).
  virtual void forward_layers_device(const BatchView& /*batch*/) { no_device_hidden(); }
  // Copies between host floats and the device buffer's first n_tokens rows (synchronous).
  virtual void hidden_to_device(const float* /*hidden*/, int /*n_tokens*/) { no_device_hidden(); }
  virtual void hidden_to_host(float* /*hidden*/, int /*n_tokens*/) { no_device_hidden(); }
  // The embedding rows of tokens (as embed()) into the device buffer's first n rows: rank 0's
  // input to forward_layers_device when its hop to rank 1 is NCCL. Needs has_embedding.
  // Default: embed() on the host, then hidden_to_device (CudaModel gathers on the device).
  virtual void embed_device(const int32_t* tokens, int n) {
    std::vector<float> host(static_cast<size_t>(n > 0 ? n : 0) * static_cast<size_t>(config().hidden));
    embed(tokens, n, host.data());
    hidden_to_device(host.data(), n);
  }
  [[noreturn]] void no_device_hidden() const {
    throw InvalidArgument(device_name() + ": this shard keeps hidden states in host memory");
  }
  // ---- end device-resident hidden state ----
};

}  // namespace jarvis
