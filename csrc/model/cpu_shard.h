// The CPU backend behind ShardForward: a Model, its KV cache and the thread pool it runs on.
#pragma once

#include "csrc/model/kv_cache.h"
#include "csrc/model/model.h"
#include "csrc/model/shard_forward.h"

namespace jarvis {

namespace cpu { class ThreadPool; }

class CpuShard : public ShardForward {
 public:
  // Allocates the KV cache: num_blocks pages of page_size tokens. model and pool must outlive this.
  CpuShard(const Model& model, int num_blocks, int page_size, cpu::ThreadPool& pool);

  const ModelConfig& config() const override { return model_.config(); }
  const ShardSpec& shard() const override { return model_.shard(); }
  int num_blocks() const override { return kv_.num_blocks(); }
  int page_size() const override { return kv_.page_size(); }
  std::string device_name() const override { return "cpu"; }

  void embed(const int32_t* tokens, int n, float* hidden) override { model_.embed(tokens, n, hidden); }
  void forward_layers(const BatchView& batch, float* hidden) override;
  void compute_logits(const float* hidden, int n_rows, float* logits) override;

  const KvCache& kv() const { return kv_; }

 private:
  const Model& model_;
  cpu::ThreadPool& pool_;
  KvCache kv_;
};

}  // namespace jarvis
