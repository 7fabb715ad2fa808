// The decoder block shared by the LLaMA family (llama, qwen2, gemma):
//   h += Wo · attn(rope(Wq·n(h) [+bq]), rope(Wk·n(h) [+bk]), Wv·n(h) [+bv]);  n = RMSNorm
//   h += Wdown · (act(Wgate·n(h)) * Wup·n(h))        act = SiLU (llama, qwen2) or GELU-tanh (gemma)
// Differences between the families are ModelConfig flags read here; the loaders fold weight
// conventions (Gemma's 1 + w norms, embedding scale) into the weights and config.
#pragma once

#include "csrc/model/config.h"
#include "csrc/model/forward_step.h"
#include "csrc/model/kv_cache.h"
#include "csrc/model/weights.h"

namespace jarvis {

namespace cpu { class ThreadPool; }

// Runs one layer over hidden[plan.n_tokens, hidden] in place; `cache_layer` indexes kv.
void llama_block_forward(const ModelConfig& config, const LayerWeights& w, const StepPlan& plan,
                         int cache_layer, float* hidden, KvCache& kv, Workspace& ws,
                         cpu::ThreadPool& pool);

}  // namespace jarvis
