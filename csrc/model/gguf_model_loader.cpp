#include "csrc/model/gguf_model_loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "csrc/model/weight_assembly.h"
#include "csrc/tokenizer/tokenizer_loader.h"
#include "csrc/util/error.h"
#include "kernels/cpu/dequant.h"

namespace jarvis {
namespace {

std::string shape_str(const std::vector<int64_t>& dims) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < dims.size(); ++i) o << (i ? ", " : "") << dims[i];
  o << "]";
  return o.str();
}

int positive_int(const GgufFile& f, const std::string& key, int64_t v) {
  if (v <= 0 || v > (int64_t{1} << 30)) {
    throw ModelFileError(f.path(), "metadata key '" + key + "' = " + std::to_string(v) + " is out of range");
  }
  return static_cast<int>(v);
}

// Checks the tensors of one file, then hands out the shard's: matrices in their block type (or
// dequantized to float32 under WeightFormat::kF32), vectors as float32. GGUF lists dims
// fastest-varying first, so a [rows, cols] matrix is stored with dims {cols, rows}.
class TensorReader : public WeightSource {
 public:
  TensorReader(const GgufFile& f, WeightFormat format)
      : f_(f), format_(format), page_(static_cast<size_t>(::sysconf(_SC_PAGESIZE))) {}

  bool has(const std::string& name) const override { return f_.find_tensor(name) != nullptr; }
  void expect_matrix(const std::string& name, int64_t rows, int64_t cols) const override {
    expect_multipliable(expect(name, {cols, rows}), cols);
  }
  void expect_vector(const std::string& name, int64_t n) const override { expect(name, {n}); }

  // The tensor `name` must exist with GGUF dims `dims` (fastest-varying first) and a type we
  // can decode.
  const GgufTensorInfo& expect(const std::string& name, const std::vector<int64_t>& dims) const {
    const GgufTensorInfo* t = f_.find_tensor(name);
    if (!t) throw ModelFileError(f_.path(), "missing tensor '" + name + "' (expected shape " + shape_str(dims) + ")");
    if (t->dims != dims) {
      throw ModelFileError(f_.path(), "tensor '" + name + "' has shape " + shape_str(t->dims) +
                                          ", expected " + shape_str(dims) + " from the model config");
    }
    const GgmlTypeTraits* traits = ggml_type_traits(static_cast<uint32_t>(t->type));
    if (!traits || !traits->supported) {
      throw ModelFileError(f_.path(), "tensor '" + name + "' has type " +
                                          (traits ? traits->name : std::string("?")) +
                                          ", which this build cannot decode");
    }
    return *t;
  }

  std::vector<float> vector(const std::string& name, int64_t n) const override {
    std::vector<float> out(static_cast<size_t>(n));
    const GgufTensorInfo& t = expect(name, {n});
    dequantize(t, out.data(), 1, n);
    release(t);
    return out;
  }

  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const override {
    const GgufTensorInfo& t = expect(name, {cols, rows});
    expect_multipliable(t, cols);
    Matrix m;
    if (format_ == WeightFormat::kF32) {
      std::vector<float> f32(static_cast<size_t>(rows * cols));
      dequantize(t, f32.data(), rows, cols);
      m = Matrix::from_f32(f32.data(), rows, cols);
    } else {
      m = Matrix::from_blocks(t.type, t.data, rows, cols);
    }
    release(t);
    return m;
  }

 private:
  // Held natively, a matrix is multiplied in its block type: the kernels must take that type and
  // the row must be whole blocks. Checked for every matrix of the model, on every rank.
  void expect_multipliable(const GgufTensorInfo& t, int64_t cols) const {
    if (format_ == WeightFormat::kF32) return;
    if (!Matrix::supported(t.type) || Matrix::row_bytes(t.type, cols) == 0) {
      throw ModelFileError(f_.path(), "tensor '" + t.name + "' has type " + ggml_type_traits(static_cast<uint32_t>(t.type))->name +
                                          ", which the CPU kernels do not multiply" +
                                          " (load it with --weights f32 to dequantize at load)");
    }
  }

  void dequantize(const GgufTensorInfo& t, float* dst, int64_t rows, int64_t cols) const {
    const size_t row_bytes = t.nbytes / static_cast<size_t>(rows);
    for (int64_t r = 0; r < rows; ++r) {
      if (!cpu::dequantize_row(t.type, t.data + r * row_bytes, dst + r * cols, cols)) {
        throw ModelFileError(f_.path(), "tensor '" + t.name + "' could not be dequantized");
      }
    }
  }

  // The mapped pages just read would otherwise stay resident next to the copy the model holds;
  // handing them back keeps a shard's memory at one copy of its own weights (the file stays mapped).
  void release(const GgufTensorInfo& t) const {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data) / page_ * page_;
    const uintptr_t hi = reinterpret_cast<uintptr_t>(t.data) + t.nbytes;
    if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }

  const GgufFile& f_;
  WeightFormat format_;
  size_t page_;
};

const TensorNaming& gguf_naming() {
  static const TensorNaming kNaming{
      "token_embd.weight", "output_norm.weight", "output.weight",
      [](int l) { return "blk." + std::to_string(l) + "."; },
      {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
       "attn_q.bias", "attn_k.bias", "attn_v.bias", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
       "ffn_down.weight"}};
  return kNaming;
}

// What the loader will hold for each tensor natively: a matrix its bytes in the file, a vector
// float32. Tensors the model does not have add nothing (the loader rejects the file anyway).
NativeWeightBytes native_weight_bytes(const GgufFile& f, const ModelConfig& c) {
  const TensorNaming& names = gguf_naming();
  const auto held = [&f](const std::string& name) -> int64_t {
    const GgufTensorInfo* t = f.find_tensor(name);
    if (!t) return 0;
    return t->dims.size() >= 2 ? static_cast<int64_t>(t->nbytes) : t->num_elements() * int64_t{4};
  };
  NativeWeightBytes b;
  for (int l = 0; l < c.n_layers; ++l) {
    int64_t layer = 0;
    for (size_t i = 0; i < static_cast<size_t>(LayerTensor::kCount); ++i) layer += held(names.layer(l, static_cast<LayerTensor>(i)));
    b.layer.push_back(layer);
  }
  b.embedding = held(names.embedding);
  b.head = held(names.output_norm) + (c.tied_embeddings ? 0 : held(names.lm_head));
  return b;
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& f) {
  ModelConfig c;
  c.arch_name = f.get_string("general.architecture");
  if (c.arch_name == "llama") {
    c.arch = Arch::kLlama;
    c.rope_style = RopeStyle::kInterleaved;  // the converter permuted Q/K rows for this pairing
  } else if (c.arch_name == "qwen2") {
    c.arch = Arch::kQwen2;
    c.rope_style = RopeStyle::kNeox;
  } else if (c.arch_name == "gemma") {
    c.arch = Arch::kGemma;
    c.rope_style = RopeStyle::kNeox;
    c.activation = Activation::kGeluTanh;
  } else {
    throw ModelFileError(f.path(), "unsupported architecture '" + c.arch_name + "' (supported: " +
                                       kGgufSupportedArchs + ")");
  }
  const std::string a = c.arch_name + ".";
  c.model_name = f.get_string_or("general.name", "");
  auto get_pos = [&](const std::string& key) { return positive_int(f, a + key, f.get_int(a + key)); };
  c.n_layers = get_pos("block_count");
  c.hidden = get_pos("embedding_length");
  c.ffn_hidden = get_pos("feed_forward_length");
  c.n_heads = get_pos("attention.head_count");
  c.n_kv_heads = f.find(a + "attention.head_count_kv") ? get_pos("attention.head_count_kv") : c.n_heads;
  if (c.n_heads % c.n_kv_heads != 0) {
    throw ModelFileError(f.path(), "attention.head_count " + std::to_string(c.n_heads) +
                                       " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
  }
  c.head_dim = f.find(a + "attention.key_length") ? get_pos("attention.key_length") : c.hidden / c.n_heads;
  if (f.find(a + "attention.value_length") && get_pos("attention.value_length") != c.head_dim) {
    throw ModelFileError(f.path(), "attention.value_length differs from key_length (not supported)");
  }
  c.context_length = f.find(a + "context_length") ? get_pos("context_length") : 4096;
  c.norm_eps = static_cast<float>(f.get_float_or(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_theta = static_cast<float>(f.get_float_or(a + "rope.freq_base", 10000.0));
  c.rope_dim = f.find(a + "rope.dimension_count") ? get_pos("rope.dimension_count") : c.head_dim;
  if (c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim) {
    throw ModelFileError(f.path(), "rope.dimension_count " + std::to_string(c.rope_dim) +
                                       " must be even and at most the head size " + std::to_string(c.head_dim));
  }
  const std::string scaling = f.get_string_or(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    c.rope_scaling.factor = static_cast<float>(f.get_float(a + "rope.scaling.factor"));
  } else if (scaling == "llama3") {
    c.rope_scaling.type = RopeScaling::Type::kLlama3;
    c.rope_scaling.factor = static_cast<float>(f.get_float(a + "rope.scaling.factor"));
    c.rope_scaling.low_freq_factor = static_cast<float>(f.get_float_or(a + "rope.scaling.low_freq_factor", 1.0));
    c.rope_scaling.high_freq_factor = static_cast<float>(f.get_float_or(a + "rope.scaling.high_freq_factor", 4.0));
    c.rope_scaling.original_context =
        static_cast<int>(f.get_int_or(a + "rope.scaling.original_context_length", 8192));
  } else if (scaling != "none") {
    throw ModelFileError(f.path(), "rope.scaling.type '" + scaling + "' is not supported (none, linear, llama3 are)");
  }
  if ((c.rope_scaling.type != RopeScaling::Type::kNone && !(c.rope_scaling.factor > 0)) ||
      (c.rope_scaling.type == RopeScaling::Type::kLlama3 &&
       !(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor))) {
    throw ModelFileError(f.path(), "rope.scaling parameters are out of range");
  }

  if (f.find(a + "vocab_size")) {
    c.vocab_size = get_pos("vocab_size");
  } else if (f.find("tokenizer.ggml.tokens")) {
    c.vocab_size = positive_int(f, "tokenizer.ggml.tokens", f.find("tokenizer.ggml.tokens")->array.size());
  } else if (const GgufTensorInfo* e = f.find_tensor("token_embd.weight"); e && e->dims.size() == 2) {
    c.vocab_size = positive_int(f, "token_embd.weight rows", e->dims[1]);
  } else {
    throw ModelFileError(f.path(), "cannot tell the vocabulary size (no vocab_size, token list or token_embd)");
  }
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.tied_embeddings = c.arch == Arch::kGemma || f.find_tensor("output.weight") == nullptr;
  // llama.cpp scales Gemma embeddings by sqrt(n_embd) at run time; the file holds them unscaled.
  if (c.arch == Arch::kGemma) c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
  c.native_bytes = native_weight_bytes(f, c);
  return c;
}

std::unique_ptr<Model> load_gguf_model(const std::string& path, const ShardSpec& requested,
                                       const LoadOptions& options) {
  GgufFile f = GgufFile::open(path);
  ModelConfig c = gguf_model_config(f);
  const ShardSpec shard = resolve_shard(requested, c.n_layers, path);
  TensorReader r(f, options.weights);
  // llama.cpp's converter already folded gemma's "1 + w" into the norm weights: no offset here.
  ModelWeights w = assemble_weights(c, shard, gguf_naming(), r, 0.0f);
  // Llama 3.1-style RoPE scaling stored as per-pair frequency divisors.
  if (r.has("rope_freqs.weight")) w.rope_freqs = r.vector("rope_freqs.weight", c.rope_dim / 2);
  // A middle rank neither tokenizes nor samples: its 49k-entry vocabulary would only add memory
  // (about 20 MB at its peak on SmolLM2) to a rank that should hold little beyond its layers.
  TokenizerData tok = shard.has_embedding || shard.has_head ? tokenizer_data_from_gguf(f) : TokenizerData{};
  return std::make_unique<Model>(std::move(c), shard, std::move(w), std::move(tok));
}

}  // namespace jarvis
