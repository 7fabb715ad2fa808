#include "engine/cluster/model_identity.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "csrc/gguf/gguf_file.h"
#include "csrc/model/gguf_model_loader.h"
#include "csrc/model/hf_config.h"
#include "csrc/model/hf_loader.h"
#include "csrc/util/error.h"
#include "csrc/util/mapped_file.h"
#include "engine/cluster/sha256.h"

namespace jarvis {

namespace {

constexpr uint64_t kSmallFile = uint64_t{64} << 20;  // hashed whole in sampled mode
constexpr int kSamples = 256;
constexpr uint64_t kSampleBytes = 4096;

// Bytes at the start of the file that describe it (everything before the tensor data).
uint64_t metadata_region(const MappedFile& f) {
  const uint8_t* p = f.data();
  const uint64_t n = f.size();
  if (n >= 4 && std::memcmp(p, "GGUF", 4) == 0) {
    const GgufFile g = GgufFile::parse(p, n, f.path());  // bounds-checked: a broken file throws here
    uint64_t start = n;
    for (const GgufTensorInfo& t : g.tensors()) start = std::min<uint64_t>(start, t.data - p);
    return start;
  }
  if (n >= 8) {  // safetensors: u64 little-endian header length, then the JSON header
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | p[i];
    if (len > 0 && len <= n - 8 && p[8] == '{') return 8 + len;
  }
  return std::min(n, kSmallFile);
}

void fingerprint_file(const std::string& path, FingerprintMode mode, Sha256& h) {
  const MappedFile f(path);
  const uint8_t* p = f.data();
  const uint64_t n = f.size();
  h.update_u64(n);
  if (mode == FingerprintMode::kFull || n <= kSmallFile) {
    h.update(p, n);
    return;
  }
  const uint64_t region = metadata_region(f);
  h.update(p, region);
  const uint64_t rest = n - region;
  if (rest <= kSamples * kSampleBytes) {
    h.update(p + region, rest);
    return;
  }
  const uint64_t stride = (rest - kSampleBytes) / (kSamples - 1);
  for (int i = 0; i < kSamples - 1; ++i) h.update(p + region + i * stride, kSampleBytes);
  h.update(p + n - kSampleBytes, kSampleBytes);  // the last sample ends exactly at the end
}

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// What a loader reads from an HF directory: config, tokenizer and weights (a README may differ).
bool model_part(const std::string& name) { return ends_with(name, ".safetensors") || ends_with(name, ".json"); }

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

ModelConfig read_model_config(const std::string& path) {
  if (is_hf_model_dir(path)) return read_hf_model_config(path);
  if (is_directory(path)) {
    throw ModelFileError(path, "a directory without config.json: neither a GGUF file nor a Hugging Face model");
  }
  return gguf_model_config(GgufFile::open(path));
}

std::string model_fingerprint(const std::string& path, FingerprintMode mode) {
  Sha256 h;
  if (!is_directory(path)) {
    fingerprint_file(path, mode, h);
    return h.finish_hex();
  }
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) throw ModelFileError(path, std::string("cannot list the directory: ") + std::strerror(errno));
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    struct stat st {};
    if (!model_part(name)) continue;
    if (::stat((path + "/" + name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    h.update_u64(name.size());
    h.update(name.data(), name.size());
    fingerprint_file(path + "/" + name, mode, h);
  }
  return h.finish_hex();
}

}  // namespace jarvis
