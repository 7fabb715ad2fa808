#include <sys/stat.h>

#include "csrc/model/gguf_model_loader.h"
#include "csrc/model/hf_loader.h"
#include "csrc/model/model.h"
#include "csrc/util/error.h"

namespace jarvis {

const char* weight_format_name(WeightFormat f) { return f == WeightFormat::kF32 ? "f32" : "native"; }

WeightFormat parse_weight_format(const std::string& text) {
  if (text == "native") return WeightFormat::kNative;
  if (text == "f32") return WeightFormat::kF32;
  throw InvalidArgument("--weights '" + text + "': expected native (as the file stores them) or f32");
}

std::unique_ptr<Model> load_model(const std::string& path, const ShardSpec& shard, const LoadOptions& options) {
  if (is_hf_model_dir(path)) return load_hf_model(path, shard, options);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw ModelFileError(path, "a directory without config.json: neither a GGUF file nor a Hugging Face model");
  }
  return load_gguf_model(path, shard, options);
}

}  // namespace jarvis
