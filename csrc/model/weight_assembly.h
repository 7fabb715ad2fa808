// The one place that knows which tensors a llama-family model is made of. Each file format's
// loader supplies the tensor names and a WeightSource; this checks every tensor of the model and
// then decodes only the shard's.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "csrc/model/config.h"
#include "csrc/model/weights.h"

namespace jarvis {

enum class LayerTensor { kAttnNorm, kWq, kWk, kWv, kWo, kBq, kBk, kBv, kFfnNorm, kGate, kUp, kDown, kCount };

// How a file format names the model's tensors.
struct TensorNaming {
  std::string embedding, output_norm, lm_head;
  std::function<std::string(int layer)> layer_prefix;  // "blk.3." / "model.layers.3."
  std::array<const char*, static_cast<size_t>(LayerTensor::kCount)> layer_suffix;

  std::string layer(int l, LayerTensor t) const { return layer_prefix(l) + layer_suffix[static_cast<size_t>(t)]; }
};

// Tensors of one file format. Shapes are logical: a matrix is [rows, cols] with y = W x (rows
// outputs), a vector is [n]; the source maps them to its own layout. Errors are ModelFileError.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& name) const = 0;
  // The tensor exists with this shape and a type the build can decode.
  virtual void expect_matrix(const std::string& name, int64_t rows, int64_t cols) const = 0;
  virtual void expect_vector(const std::string& name, int64_t n) const = 0;
  virtual Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const = 0;
  virtual std::vector<float> vector(const std::string& name, int64_t n) const = 0;
};

// Resolves end_layer -1 to the last layer; InvalidArgument naming `path` for a range outside
// the model.
ShardSpec resolve_shard(const ShardSpec& requested, int n_layers, const std::string& path);

// Checks presence, shape and type of every tensor the model needs, whether or not the shard loads
// it (a broken file fails on every rank alike), then decodes the shard's tensors. `norm_offset`
// is added to every RMSNorm weight (1 for HF gemma checkpoints, whose norm scales by 1 + w).
ModelWeights assemble_weights(const ModelConfig& c, const ShardSpec& shard, const TensorNaming& names,
                              const WeightSource& src, float norm_offset);

}  // namespace jarvis
