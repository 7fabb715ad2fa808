// config.json of a Hugging Face checkpoint -> ModelConfig, for the architectures we run:
// LlamaForCausalLM / MistralForCausalLM (model_type llama, mistral), Qwen2ForCausalLM (qwen2),
// GemmaForCausalLM (gemma).
#pragma once

#include <string>

#include "csrc/model/config.h"

namespace jarvis {

// `json_text` is the file's content, `path` names it in errors. Throws ModelFileError naming the
// key that is missing, of the wrong type, or asks for something we do not implement.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& path);

// Reads <dir>/config.json.
ModelConfig read_hf_config(const std::string& dir);

}  // namespace jarvis
