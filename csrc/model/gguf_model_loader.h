// Builds a Model from a GGUF file: config from `{arch}.*` metadata, weights held in the file's
// block types (or float32 under --weights f32), only for the tensors of the requested shard.
#pragma once

#include <memory>
#include <string>

#include "csrc/gguf/gguf_file.h"
#include "csrc/model/model.h"

namespace jarvis {

// Architectures the GGUF loader accepts (general.architecture values).
inline constexpr const char* kGgufSupportedArchs = "llama, qwen2, gemma";

// Reads and checks the hyper-parameters. Throws ModelFileError (unsupported architecture,
// missing or inconsistent keys). Also records the bytes each layer, the embedding and the head
// hold natively (ModelConfig::native_bytes), from the tensor headers.
ModelConfig gguf_model_config(const GgufFile& file);

// Loads the shard's weights. Every tensor the model needs is checked for presence, shape and
// type, whether or not the shard loads it, so a broken file fails on every rank alike.
std::unique_ptr<Model> load_gguf_model(const std::string& path, const ShardSpec& shard, const LoadOptions& options = {});

}  // namespace jarvis
