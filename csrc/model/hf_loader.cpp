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

// Every tensor of the checkpoint, whichever file holds it.
class TensorStore {
 public:
  explicit TensorStore(const std::string& dir) : dir_(dir) {
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

  bool has(const std::string& name) const { return where_.count(name) != 0; }

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

  std::vector<float> vector(const std::string& name, int64_t n, float add = 0.0f) const {
    std::vector<float> out(static_cast<size_t>(n));
    convert(name, expect(name, {n}), out.data());
    if (add != 0.0f) {
      for (float& x : out) x += add;
    }
    return out;
  }

  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.data.resize(static_cast<size_t>(rows * cols));
    // PyTorch Linear weights are [out, in] row-major: exactly our Matrix layout.
    convert(name, expect(name, {rows, cols}), m.data.data());
    return m;
  }

 private:
  void convert(const std::string& name, const SafetensorsTensor& t, float* dst) const {
    files_[where_.at(name)].to_float(t, dst);
    // Hand the mapped pages back: otherwise the file's pages stay resident beside the float copy.
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data) / page * page;
    const uintptr_t hi = reinterpret_cast<uintptr_t>(t.data) + t.nbytes;
    if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }

  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

std::string layer(int l, const char* what) { return "model.layers." + std::to_string(l) + "." + what; }

}  // namespace

bool is_hf_model_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(path + "/config.json", ec);
}

std::unique_ptr<Model> load_hf_model(const std::string& dir, const ShardSpec& requested) {
  ModelConfig c = read_hf_config(dir);
  ShardSpec shard = requested;
  if (shard.end_layer < 0) shard.end_layer = c.n_layers;
  if (shard.first_layer < 0 || shard.first_layer > shard.end_layer || shard.end_layer > c.n_layers) {
    throw InvalidArgument("shard layers [" + std::to_string(shard.first_layer) + ", " + std::to_string(shard.end_layer) +
                          ") outside the model's " + std::to_string(c.n_layers) + " layers (" + dir + ")");
  }
  const TensorStore s(dir);
  const int64_t h = c.hidden, q = c.q_dim(), kv = c.kv_dim(), ffn = c.ffn_hidden, vocab = c.vocab_size;
  // Gemma's RMSNorm multiplies by (1 + w); folding the 1 in lets every architecture share one norm.
  const float norm_add = c.arch == Arch::kGemma ? 1.0f : 0.0f;

  // Check every tensor first (header data only), so a broken checkpoint fails on every rank alike.
  s.expect("model.embed_tokens.weight", {vocab, h});
  s.expect("model.norm.weight", {h});
  if (!c.tied_embeddings) s.expect("lm_head.weight", {vocab, h});
  for (int l = 0; l < c.n_layers; ++l) {
    s.expect(layer(l, "input_layernorm.weight"), {h});
    s.expect(layer(l, "self_attn.q_proj.weight"), {q, h});
    s.expect(layer(l, "self_attn.k_proj.weight"), {kv, h});
    s.expect(layer(l, "self_attn.v_proj.weight"), {kv, h});
    s.expect(layer(l, "self_attn.o_proj.weight"), {h, q});
    if (c.qkv_bias) {
      s.expect(layer(l, "self_attn.q_proj.bias"), {q});
      s.expect(layer(l, "self_attn.k_proj.bias"), {kv});
      s.expect(layer(l, "self_attn.v_proj.bias"), {kv});
    }
    s.expect(layer(l, "post_attention_layernorm.weight"), {h});
    s.expect(layer(l, "mlp.gate_proj.weight"), {ffn, h});
    s.expect(layer(l, "mlp.up_proj.weight"), {ffn, h});
    s.expect(layer(l, "mlp.down_proj.weight"), {h, ffn});
  }

  ModelWeights w;
  if (shard.has_embedding || (shard.has_head && c.tied_embeddings)) {
    w.embedding = s.matrix("model.embed_tokens.weight", vocab, h);
  }
  if (shard.has_head) {
    w.output_norm = s.vector("model.norm.weight", h, norm_add);
    if (!c.tied_embeddings) w.lm_head = s.matrix("lm_head.weight", vocab, h);
  }
  for (int l = shard.first_layer; l < shard.end_layer; ++l) {
    LayerWeights lw;
    lw.attn_norm = s.vector(layer(l, "input_layernorm.weight"), h, norm_add);
    lw.wq = s.matrix(layer(l, "self_attn.q_proj.weight"), q, h);
    lw.wk = s.matrix(layer(l, "self_attn.k_proj.weight"), kv, h);
    lw.wv = s.matrix(layer(l, "self_attn.v_proj.weight"), kv, h);
    lw.wo = s.matrix(layer(l, "self_attn.o_proj.weight"), h, q);
    if (c.qkv_bias) {
      lw.bq = s.vector(layer(l, "self_attn.q_proj.bias"), q);
      lw.bk = s.vector(layer(l, "self_attn.k_proj.bias"), kv);
      lw.bv = s.vector(layer(l, "self_attn.v_proj.bias"), kv);
    }
    lw.ffn_norm = s.vector(layer(l, "post_attention_layernorm.weight"), h, norm_add);
    lw.w_gate = s.matrix(layer(l, "mlp.gate_proj.weight"), ffn, h);
    lw.w_up = s.matrix(layer(l, "mlp.up_proj.weight"), ffn, h);
    lw.w_down = s.matrix(layer(l, "mlp.down_proj.weight"), h, ffn);
    w.layers.push_back(std::move(lw));
  }
  if (c.model_name.empty()) {
    fs::path p = fs::path(dir).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();  // "dir/" names the same directory
    c.model_name = p.filename().string();
  }
  TokenizerData tok = tokenizer_data_from_hf(dir);
  return std::make_unique<Model>(std::move(c), shard, std::move(w), std::move(tok));
}

}  // namespace jarvis
