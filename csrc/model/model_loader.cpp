#include <sys/stat.h>

#include "csrc/model/gguf_model_loader.h"
#include "csrc/model/hf_loader.h"
#include "csrc/model/model.h"
#include "csrc/util/error.h"

namespace jarvis {

std::unique_ptr<Model> load_model(const std::string& path, const ShardSpec& shard) {
  if (is_hf_model_dir(path)) return load_hf_model(path, shard);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw ModelFileError(path, "a directory without config.json: neither a GGUF file nor a Hugging Face model");
  }
  return load_gguf_model(path, shard);
}

}  // namespace jarvis
