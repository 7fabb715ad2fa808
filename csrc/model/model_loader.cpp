#include <sys/stat.h>

#include "csrc/model/gguf_model_loader.h"
#include "csrc/model/model.h"
#include "csrc/util/error.h"

namespace jarvis {

std::unique_ptr<Model> load_model(const std::string& path, const ShardSpec& shard) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw ModelFileError(path, "HF model directories (config.json + safetensors) are not supported yet");
  }
  return load_gguf_model(path, shard);
}

}  // namespace jarvis
