#include "csrc/model/weight_assembly.h"

#include "csrc/util/error.h"

namespace jarvis {

ShardSpec resolve_shard(const ShardSpec& requested, int n_layers, const std::string& path) {
  ShardSpec shard = requested;
  if (shard.end_layer < 0) shard.end_layer = n_layers;
  if (shard.first_layer < 0 || shard.first_layer > shard.end_layer || shard.end_layer > n_layers) {
    throw InvalidArgument("shard layers [" + std::to_string(shard.first_layer) + ", " +
                          std::to_string(shard.end_layer) + ") outside the model's " +
                          std::to_string(n_layers) + " layers (" + path + ")");
  }
  return shard;
}

namespace {

struct LayerShapes {
  int64_t h, q, kv, ffn;
};

// Logical shape of a layer tensor: {rows, cols} for matrices, {n, 0} for vectors.
std::pair<int64_t, int64_t> shape_of(LayerTensor t, const LayerShapes& s) {
  switch (t) {
    case LayerTensor::kAttnNorm: case LayerTensor::kFfnNorm: return {s.h, 0};
    case LayerTensor::kBq: return {s.q, 0};
    case LayerTensor::kBk: case LayerTensor::kBv: return {s.kv, 0};
    case LayerTensor::kWq: return {s.q, s.h};
    case LayerTensor::kWk: case LayerTensor::kWv: return {s.kv, s.h};
    case LayerTensor::kWo: return {s.h, s.q};
    case LayerTensor::kGate: case LayerTensor::kUp: return {s.ffn, s.h};
    case LayerTensor::kDown: return {s.h, s.ffn};
    case LayerTensor::kCount: break;
  }
  return {0, 0};
}

bool is_bias(LayerTensor t) { return t == LayerTensor::kBq || t == LayerTensor::kBk || t == LayerTensor::kBv; }

std::vector<float> with_offset(std::vector<float> v, float offset) {
  if (offset != 0.0f) {
    for (float& x : v) x += offset;
  }
  return v;
}

}  // namespace

ModelWeights assemble_weights(const ModelConfig& c, const ShardSpec& shard, const TensorNaming& names,
                              const WeightSource& src, float norm_offset) {
  const LayerShapes s{c.hidden, c.q_dim(), c.kv_dim(), c.ffn_hidden};
  const int64_t vocab = c.vocab_size;
  const auto layer_tensors = [&](int l, auto&& visit) {
    for (size_t i = 0; i < static_cast<size_t>(LayerTensor::kCount); ++i) {
      const auto t = static_cast<LayerTensor>(i);
      if (is_bias(t) && !c.qkv_bias) continue;
      const auto [rows, cols] = shape_of(t, s);
      visit(t, names.layer(l, t), rows, cols);
    }
  };

  // Check every tensor first (headers only, nothing is decoded).
  src.expect_matrix(names.embedding, vocab, s.h);
  src.expect_vector(names.output_norm, s.h);
  if (!c.tied_embeddings) src.expect_matrix(names.lm_head, vocab, s.h);
  for (int l = 0; l < c.n_layers; ++l) {
    layer_tensors(l, [&](LayerTensor, const std::string& name, int64_t rows, int64_t cols) {
      if (cols == 0) {
        src.expect_vector(name, rows);
      } else {
        src.expect_matrix(name, rows, cols);
      }
    });
  }

  // Then decode only what this shard holds (a tied head needs the embedding matrix).
  ModelWeights w;
  if (shard.has_embedding || (shard.has_head && c.tied_embeddings)) w.embedding = src.matrix(names.embedding, vocab, s.h);
  if (shard.has_head) {
    w.output_norm = with_offset(src.vector(names.output_norm, s.h), norm_offset);
    if (!c.tied_embeddings) w.lm_head = src.matrix(names.lm_head, vocab, s.h);
  }
  for (int l = shard.first_layer; l < shard.end_layer; ++l) {
    LayerWeights lw;
    std::vector<float>* vectors[] = {&lw.attn_norm, nullptr, nullptr, nullptr, nullptr, &lw.bq, &lw.bk, &lw.bv,
                                     &lw.ffn_norm};
    Matrix* matrices[] = {nullptr, &lw.wq, &lw.wk, &lw.wv, &lw.wo, nullptr, nullptr, nullptr, nullptr,
                          &lw.w_gate, &lw.w_up, &lw.w_down};
    layer_tensors(l, [&](LayerTensor t, const std::string& name, int64_t rows, int64_t cols) {
      const auto i = static_cast<size_t>(t);
      if (cols != 0) {
        *matrices[i] = src.matrix(name, rows, cols);
      } else {
        const bool norm = t == LayerTensor::kAttnNorm || t == LayerTensor::kFfnNorm;
        *vectors[i] = with_offset(src.vector(name, rows), norm ? norm_offset : 0.0f);
      }
    });
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace jarvis
