#include "csrc/cuda/cuda_weights.h"

#include <algorithm>
#include <string>
#include <vector>

#include "csrc/cuda/cuda_error.h"
#include "kernels/cuda/elementwise.h"

namespace jarvis {
namespace {

// Staging for the decode -> fp32 -> fp16/bf16 conversion: large enough to keep the copy engine
// busy, small enough not to matter next to the weights.
constexpr size_t kStagingBytes = size_t{64} << 20;

size_t dtype_bytes(cuda::DType t) { return t == cuda::DType::kF32 ? 4 : 2; }

class Uploader {
 public:
  Uploader(cuda::DType dtype, cudaStream_t stream) : dtype_(dtype), stream_(stream) {}

  // The host matrix stays in its block type; rows are decoded to float32 a chunk at a time into
  // host_ (pageable: cudaMemcpyAsync returns once it has been staged, so host_ is free to reuse),
  // then converted on the device as before.
  DeviceBuffer matrix(const Matrix& m, int64_t rows, int64_t cols, const std::string& name) {
    if (m.rows() != rows || m.cols() != cols) {
      throw InvalidArgument("upload " + name + ": shape [" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) +
                            "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    }
    const int64_t n = rows * cols;
    DeviceBuffer dst(static_cast<size_t>(n) * dtype_bytes(dtype_), name.c_str());
    const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(kStagingBytes / sizeof(float)) / cols);
    const int64_t chunk = std::min(rows, chunk_rows) * cols;
    host_.resize(static_cast<size_t>(chunk));
    if (dtype_ != cuda::DType::kF32) staging_.grow(static_cast<size_t>(chunk) * sizeof(float), "weight upload staging");
    // Same stream throughout: each copy into the staging buffer waits for the previous convert.
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const int64_t nr = std::min(chunk_rows, rows - r0);
      const int64_t off = r0 * cols, len = nr * cols;
      m.dequantize_rows(r0, nr, host_.data());
      if (dtype_ == cuda::DType::kF32) {
        JARVIS_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst.get()) + off * sizeof(float), host_.data(),
                                          len * sizeof(float), cudaMemcpyHostToDevice, stream_));
        continue;
      }
      JARVIS_CUDA_CHECK(cudaMemcpyAsync(staging_.get(), host_.data(), len * sizeof(float), cudaMemcpyHostToDevice, stream_));
      JARVIS_CUDA_CHECK(cuda::convert(cuda::DType::kF32, staging_.get(), dtype_,
                                      static_cast<char*>(dst.get()) + off * dtype_bytes(dtype_), len, 1.0f, stream_));
    }
    bytes_ += dst.bytes();
    return dst;
  }

  DeviceBuffer vector(const std::vector<float>& v, size_t expected, const std::string& name) {
    if (v.size() != expected) {
      throw InvalidArgument("upload " + name + ": " + std::to_string(v.size()) + " values, expected " +
                            std::to_string(expected));
    }
    DeviceBuffer dst(v.size() * sizeof(float), name.c_str());
    JARVIS_CUDA_CHECK(cudaMemcpyAsync(dst.get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    bytes_ += dst.bytes();
    return dst;
  }

  size_t bytes() const { return bytes_; }

 private:
  cuda::DType dtype_;
  cudaStream_t stream_;
  DeviceBuffer staging_;
  std::vector<float> host_;  // one chunk of decoded rows
  size_t bytes_ = 0;
};

}  // namespace

CudaWeights upload_weights(const ModelConfig& c, const ShardSpec& shard, const ModelWeights& w,
                           cuda::DType dtype, cudaStream_t stream) {
  Uploader up(dtype, stream);
  CudaWeights out;
  const bool tied_head = shard.has_head && w.lm_head.empty();
  if (shard.has_embedding || tied_head) {
    if (w.embedding.empty()) throw InvalidArgument("upload: the shard needs the embedding but none was loaded");
    out.embedding = up.matrix(w.embedding, c.vocab_size, c.hidden, "token_embd");
  }
  if (shard.has_head) {
    out.output_norm = up.vector(w.output_norm, c.hidden, "output_norm");
    if (!tied_head) out.lm_head = up.matrix(w.lm_head, c.vocab_size, c.hidden, "output");
  }
  const int64_t h = c.hidden, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_hidden;
  out.layers.reserve(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "blk." + std::to_string(shard.first_layer + static_cast<int>(i)) + ".";
    CudaLayerWeights d;
    d.attn_norm = up.vector(l.attn_norm, h, p + "attn_norm");
    d.wq = up.matrix(l.wq, q, h, p + "attn_q");
    d.wk = up.matrix(l.wk, kv, h, p + "attn_k");
    d.wv = up.matrix(l.wv, kv, h, p + "attn_v");
    d.wo = up.matrix(l.wo, h, q, p + "attn_output");
    if (c.qkv_bias) {
      d.bq = up.vector(l.bq, q, p + "attn_q.bias");
      d.bk = up.vector(l.bk, kv, p + "attn_k.bias");
      d.bv = up.vector(l.bv, kv, p + "attn_v.bias");
    }
    d.ffn_norm = up.vector(l.ffn_norm, h, p + "ffn_norm");
    d.w_gate = up.matrix(l.w_gate, f, h, p + "ffn_gate");
    d.w_up = up.matrix(l.w_up, f, h, p + "ffn_up");
    d.w_down = up.matrix(l.w_down, h, f, p + "ffn_down");
    out.layers.push_back(std::move(d));
  }
  // A fault in the upload surfaces here, naming the load, rather than in the first step.
  JARVIS_CUDA_CHECK(cudaStreamSynchronize(stream));
  out.bytes = up.bytes();
  return out;
}

}  // namespace jarvis
