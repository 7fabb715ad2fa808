#include "csrc/model/llama_block.h"

#include <cmath>

#include "csrc/util/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_matrix.h"

namespace jarvis {

void Workspace::reserve(const ModelConfig& c, int n_tokens) {
  const size_t n = static_cast<size_t>(n_tokens);
  auto grow = [n](std::vector<float>& b, int width) {
    if (b.size() < n * width) b.resize(n * width);
  };
  grow(norm, c.hidden);
  grow(q, c.q_dim());
  grow(k, c.kv_dim());
  grow(v, c.kv_dim());
  grow(attn, c.q_dim());
  grow(gate, c.ffn_hidden);
}

void llama_block_forward(const ModelConfig& c, const LayerWeights& w, const StepPlan& plan,
                         int cache_layer, float* hidden, KvCache& kv, Workspace& ws,
                         cpu::ThreadPool& pool) {
  const int64_t n = plan.n_tokens;
  const cpu::RopePairing pairing =
      c.rope_style == RopeStyle::kInterleaved ? cpu::RopePairing::kInterleaved : cpu::RopePairing::kNeox;

  // Synchronisation points (ThreadPool::parallel_for) per layer: QKV, attention, wo, gate/up, down
  // (5; a decode token's RMSNorms run on the calling thread, kernels/cpu/norm.cpp). Each one is a
  // data dependency over whole rows, so fork-join cannot go lower. See csrc/model/README.md.

  // Attention.
  cpu::rmsnorm(hidden, w.attn_norm.data(), ws.norm.data(), n, c.hidden, c.norm_eps, pool);
  const cpu::QMatmulTarget qkv[] = {{&w.wq, ws.q.data()}, {&w.wk, ws.k.data()}, {&w.wv, ws.v.data()}};
  cpu::qmatmul_multi(ws.norm.data(), n, qkv, 3, pool);
  if (c.qkv_bias) {
    cpu::add_bias(w.bq.data(), ws.q.data(), n, c.q_dim());
    cpu::add_bias(w.bk.data(), ws.k.data(), n, c.kv_dim());
    cpu::add_bias(w.bv.data(), ws.v.data(), n, c.kv_dim());
  }
  cpu::rope_apply(ws.q.data(), plan.rope_cos_sin.data(), n, c.n_heads, c.head_dim, c.rope_dim, pairing);
  cpu::rope_apply(ws.k.data(), plan.rope_cos_sin.data(), n, c.n_kv_heads, c.head_dim, c.rope_dim, pairing);

  cpu::AttentionShape shape;
  shape.n_heads = c.n_heads;
  shape.n_kv_heads = c.n_kv_heads;
  shape.head_dim = c.head_dim;
  shape.page_size = kv.page_size();
  shape.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  float* k_pages = kv.k_block(cache_layer, 0);
  float* v_pages = kv.v_block(cache_layer, 0);
  for (const cpu::PagedSequence& s : plan.sequences) {
    cpu::write_kv_pages(ws.k.data() + s.token_offset * c.kv_dim(), ws.v.data() + s.token_offset * c.kv_dim(),
                        s, shape, k_pages, v_pages);
  }
  if (!cpu::paged_attention(ws.q.data(), k_pages, v_pages, plan.sequences.data(),
                            static_cast<int>(plan.sequences.size()), ws.attn.data(), shape, pool)) {
    throw Error("paged_attention rejected the shape: heads " + std::to_string(c.n_heads) + "/" +
                std::to_string(c.n_kv_heads) + ", head_dim " + std::to_string(c.head_dim));
  }
  // h += attn Wo^T: the residual add is the product's epilogue.
  cpu::qmatmul(ws.attn.data(), n, w.wo, hidden, pool, /*accumulate=*/true);

  // Feed-forward: act(n(h) Wgate^T) * n(h) Wup^T in one pass, then h += that Wdown^T.
  cpu::rmsnorm(hidden, w.ffn_norm.data(), ws.norm.data(), n, c.hidden, c.norm_eps, pool);
  const cpu::GateActivation act =
      c.activation == Activation::kGeluTanh ? cpu::GateActivation::kGeluTanh : cpu::GateActivation::kSilu;
  cpu::qmatmul_gated(ws.norm.data(), n, w.w_gate, w.w_up, act, ws.gate.data(), pool);
  cpu::qmatmul(ws.gate.data(), n, w.w_down, hidden, pool, /*accumulate=*/true);
}

}  // namespace jarvis
