// Builds a Model from a Hugging Face checkpoint directory: config.json, one or more *.safetensors
// files (sharded ones listed by model.safetensors.index.json), tokenizer.json (+ tokenizer_config.json).
// Weights stay F16/BF16/F32 as stored (float32 under --weights f32), only the requested shard's.
#pragma once

#include <memory>
#include <string>

#include "csrc/model/config.h"
#include "csrc/model/model.h"

namespace jarvis {

// read_hf_config plus the bytes each layer, the embedding and the head hold natively
// (ModelConfig::native_bytes), from the safetensors headers; no weight is read.
ModelConfig read_hf_model_config(const std::string& dir);

// True when `path` is a directory holding config.json.
bool is_hf_model_dir(const std::string& path);

// Throws ModelFileError for anything unusable (missing config key, missing tensor, wrong shape,
// unsupported dtype, malformed safetensors), InvalidArgument for a shard outside the model.
std::unique_ptr<Model> load_hf_model(const std::string& dir, const ShardSpec& shard, const LoadOptions& options = {});

}  // namespace jarvis
