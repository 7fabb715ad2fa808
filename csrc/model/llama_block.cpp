#include "csrc/model/llama_block.h"

#include <cmath>

#include "csrc/util/error.h"
#include "kernels/cpu/ops.h"

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
  grow(proj, c.hidden);
  grow(gate, c.ffn_hidden);
  grow(up, c.ffn_hidden);
}

void llama_block_forward(const ModelConfig& c, const LayerWeights& w, const StepPlan& plan,
                         int cache_layer, float* hidden, KvCache& kv, Workspace& ws,
                         cpu::ThreadPool& pool) {
  const int64_t n = plan.n_tokens;
  const cpu::RopePairing pairing =
      c.rope_style == RopeStyle::kInterleaved ? cpu::RopePairing::kInterleaved : cpu::RopePairing::kNeox;

  // Attention.
  cpu::rmsnorm(hidden, w.attn_norm.data(), ws.norm.data(), n, c.hidden, c.norm_eps, pool);
  cpu::matmul(ws.norm.data(), w.wq.data.data(), ws.q.data(), n, c.q_dim(), c.hidden, pool);
  cpu::matmul(ws.norm.data(), w.wk.data.data(), ws.k.data(), n, c.kv_dim(), c.hidden, pool);
  cpu::matmul(ws.norm.data(), w.wv.data.data(), ws.v.data(), n, c.kv_dim(), c.hidden, pool);
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
  cpu::matmul(ws.attn.data(), w.wo.data.data(), ws.proj.data(), n, c.hidden, c.q_dim(), pool);
  cpu::add(ws.proj.data(), hidden, n * c.hidden);

  // Feed-forward.
  cpu::rmsnorm(hidden, w.ffn_norm.data(), ws.norm.data(), n, c.hidden, c.norm_eps, pool);
  cpu::matmul(ws.norm.data(), w.w_gate.data.data(), ws.gate.data(), n, c.ffn_hidden, c.hidden, pool);
  cpu::matmul(ws.norm.data(), w.w_up.data.data(), ws.up.data(), n, c.ffn_hidden, c.hidden, pool);
  if (c.activation == Activation::kGeluTanh) {
    cpu::gelu_tanh_mul(ws.gate.data(), ws.up.data(), ws.gate.data(), n * c.ffn_hidden, pool);
  } else {
    cpu::silu_mul(ws.gate.data(), ws.up.data(), ws.gate.data(), n * c.ffn_hidden, pool);
  }
  cpu::matmul(ws.gate.data(), w.w_down.data.data(), ws.proj.data(), n, c.hidden, c.ffn_hidden, pool);
  cpu::add(ws.proj.data(), hidden, n * c.hidden);
}

}  // namespace jarvis
