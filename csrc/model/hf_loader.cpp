#include "csrc/model/hf_loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "csrc/model/hf_config.h"
#include "csrc/model/safetensors_file.h"
#include "csrc/model/weight_assembly.h"
#include "csrc/tokenizer/tokenizer_loader.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

namespace fs = std::filesystem;

std::string shape_str(const std::vector<int64_t>& dims) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < dims.size(); ++i) o << (i ? ", " : "") << dims[i];
  o << "]";
  return o.str();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(path, "cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ModelFileError(path, std::string("not valid JSON: ") + e.what());
  }
}

// Every tensor of the checkpoint, whichever file holds it. PyTorch Linear weights are
// [out, in] row-major: exactly our [rows, cols] Matrix.
class TensorStore : public WeightSource {
 public:
  TensorStore(const std::string& dir, WeightFormat format) : dir_(dir), format_(format) {
    const std::string index_path = dir + "/model.safetensors.index.json";
    std::vector<std::string> names;
    std::map<std::string, std::string> weight_map;
    if (fs::exists(index_path)) {
      const nlohmann::json index = read_json(index_path);
      auto wm = index.find("weight_map");
      if (wm == index.end() || !wm->is_object()) throw ModelFileError(index_path, "lacks the 'weight_map' object");
      for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it.value().is_string()) throw ModelFileError(index_path, "weight_map['" + it.key() + "'] is not a file name");
        const std::string file = it.value().get<std::string>();
        if (file.find('/') != std::string::npos) throw ModelFileError(index_path, "weight_map names a file outside the directory: " + file);
        weight_map[it.key()] = file;
        if (std::find(names.begin(), names.end(), file) == names.end()) names.push_back(file);
      }
    } else {
      std::error_code ec;
      for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() == ".safetensors") names.push_back(e.path().filename().string());
      }
      if (ec) throw ModelFileError(dir, "cannot list the directory: " + ec.message());
      std::sort(names.begin(), names.end());
    }
    if (names.empty()) throw ModelFileError(dir, "no *.safetensors weight files");

    files_.reserve(names.size());
    for (const std::string& n : names) {
      files_.push_back(SafetensorsFile::open(dir + "/" + n));
      for (const SafetensorsTensor& t : files_.back().tensors()) {
        if (!where_.emplace(t.name, files_.size() - 1).second) {
          throw ModelFileError(files_.back().path(), "tensor '" + t.name + "' also appears in " + files_[where_[t.name]].path());
        }
      }
    }
    for (const auto& [tensor, file] : weight_map) {
      auto it = where_.find(tensor);
      if (it == where_.end() || files_[it->second].path() != dir + "/" + file) {
        throw ModelFileError(dir + "/" + file, "lacks tensor '" + tensor + "' that model.safetensors.index.json places there");
      }
    }
  }

  bool has(const std::string& name) const override { return where_.count(name) != 0; }

  // What the loader holds for `name` natively: a matrix as stored, a vector as float32; 0 when
  // the checkpoint lacks it.
  int64_t held_bytes(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) return 0;
    const SafetensorsTensor& t = *files_[it->second].find(name);
    return t.shape.size() >= 2 ? static_cast<int64_t>(t.nbytes) : t.num_elements() * int64_t{4};
  }
  void expect_matrix(const std::string& name, int64_t rows, int64_t cols) const override { expect(name, {rows, cols}); }
  void expect_vector(const std::string& name, int64_t n) const override { expect(name, {n}); }

  // The tensor must exist with `shape` and a dtype we convert.
  const SafetensorsTensor& expect(const std::string& name, const std::vector<int64_t>& shape) const {
    auto it = where_.find(name);
    if (it == where_.end()) {
      throw ModelFileError(dir_, "missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
    }
    const SafetensorsFile& f = files_[it->second];
    const SafetensorsTensor& t = *f.find(name);
    if (t.shape != shape) {
      throw ModelFileError(f.path(), "tensor '" + name + "' has shape " + shape_str(t.shape) + ", expected " +
                                         shape_str(shape) + " from config.json");
    }
    if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16") {
      throw ModelFileError(f.path(), "tensor '" + name + "' has dtype " + t.dtype + "; only F32, F16 and BF16 are supported");
    }
    return t;
  }

  std::vector<float> vector(const std::string& name, int64_t n) const override {
    std::vector<float> out(static_cast<size_t>(n));
    convert(name, expect(name, {n}), out.data());
    return out;
  }

  // F16/BF16/F32 are kept as such (row-major [out, in] is GGUF's layout for those one-element
  // blocks); under WeightFormat::kF32 converted to float32.
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const override {
    const SafetensorsTensor& t = expect(name, {rows, cols});
    Matrix m;
    if (format_ == WeightFormat::kF32) {
      std::vector<float> f32(static_cast<size_t>(rows * cols));
      files_[where_.at(name)].to_float(t, f32.data());
      m = Matrix::from_f32(f32.data(), rows, cols);
    } else {
      const GgmlType type = t.dtype == "F16" ? GgmlType::F16 : t.dtype == "BF16" ? GgmlType::BF16 : GgmlType::F32;
      if (!Matrix::supported(type)) {
        throw ModelFileError(files_[where_.at(name)].path(), "tensor '" + name + "' has dtype " + t.dtype +
                                                                 ", which the CPU kernels do not multiply");
      }
      m = Matrix::from_blocks(type, t.data, rows, cols);
    }
    release(t);
    return m;
  }

 private:
  void convert(const std::string& name, const SafetensorsTensor& t, float* dst) const {
    files_[where_.at(name)].to_float(t, dst);
    release(t);
  }

  void release(const SafetensorsTensor& t) const {
    // Hand the mapped pages back: otherwise the file's pages stay resident beside the copy held.
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data) / page * page;
    const uintptr_t hi = reinterpret_cast<uintptr_t>(t.data) + t.nbytes;
    if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }

  std::string dir_;
  WeightFormat format_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

const TensorNaming& hf_naming() {
  static const TensorNaming kNaming{
      "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
      [](int l) { return "model.layers." + std::to_string(l) + "."; },
      {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
       "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
       "self_attn.v_proj.bias", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
       "mlp.down_proj.weight"}};
  return kNaming;
}

NativeWeightBytes native_weight_bytes(const ModelConfig& c, const TensorStore& s) {
  const TensorNaming& names = hf_naming();
  NativeWeightBytes b;
  for (int l = 0; l < c.n_layers; ++l) {
    int64_t layer = 0;
    for (size_t i = 0; i < static_cast<size_t>(LayerTensor::kCount); ++i) {
      layer += s.held_bytes(names.layer(l, static_cast<LayerTensor>(i)));
    }
    b.layer.push_back(layer);
  }
  b.embedding = s.held_bytes(names.embedding);
  b.head = s.held_bytes(names.output_norm) + (c.tied_embeddings ? 0 : s.held_bytes(names.lm_head));
  return b;
}

}  // namespace

ModelConfig read_hf_model_config(const std::string& dir) {
  ModelConfig c = read_hf_config(dir);
  c.native_bytes = native_weight_bytes(c, TensorStore(dir, WeightFormat::kNative));
  return c;
}

bool is_hf_model_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(path + "/config.json", ec);
}

std::unique_ptr<Model> load_hf_model(const std::string& dir, const ShardSpec& requested, const LoadOptions& options) {
  ModelConfig c = read_hf_config(dir);
  const ShardSpec shard = resolve_shard(requested, c.n_layers, dir);
  const TensorStore s(dir, options.weights);
  c.native_bytes = native_weight_bytes(c, s);
  // Gemma's RMSNorm multiplies by (1 + w); folding the 1 in lets every architecture share one norm.
  const float norm_offset = c.arch == Arch::kGemma ? 1.0f : 0.0f;
  ModelWeights w = assemble_weights(c, shard, hf_naming(), s, norm_offset);
  if (c.model_name.empty()) {
    fs::path p = fs::path(dir).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();  // "dir/" names the same directory
    c.model_name = p.filename().string();
  }
  // A middle rank neither tokenizes nor samples (gguf_model_loader.cpp does the same).
  TokenizerData tok = shard.has_embedding || shard.has_head ? tokenizer_data_from_hf(dir) : TokenizerData{};
  return std::make_unique<Model>(std::move(c), shard, std::move(w), std::move(tok));
}

}  // namespace jarvis
