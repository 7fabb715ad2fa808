// A CPU shard that claims to sample on its device, for the device-sampling tests: sample_logits
// computes the rows' logits and samples them on the host with sample_request_on_host (the
// reference every device must match), counting the rows, so the engine, StepRunner and the
// pipeline take their device-sampling path end to end without a GPU.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "csrc/model/cpu_shard.h"
#include "csrc/sampling/sample_request.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis::engine_test {

class SamplingShard : public ShardForward {
 public:
  SamplingShard(const Model& m, int blocks, int page) : pool_(1), inner_(m, blocks, page, pool_) {}
  const ModelConfig& config() const override { return inner_.config(); }
  const ShardSpec& shard() const override { return inner_.shard(); }
  int num_blocks() const override { return inner_.num_blocks(); }
  int page_size() const override { return inner_.page_size(); }
  std::string device_name() const override { return "cpu (sampling)"; }
  void embed(const int32_t* t, int n, float* h) override { inner_.embed(t, n, h); }
  void forward_layers(const BatchView& b, float* h) override { inner_.forward_layers(b, h); }
  void compute_logits(const float* h, int n, float* l) override { inner_.compute_logits(h, n, l); }
  bool samples_on_device() const override { return true; }
  void sample_logits(const float* hidden, const std::vector<SampleRequest>& requests, SampleResult* out) override {
    const int v = config().vocab_size;
    std::vector<float> logits(requests.size() * static_cast<size_t>(v));
    inner_.compute_logits(hidden, static_cast<int>(requests.size()), logits.data());
    for (size_t i = 0; i < requests.size(); ++i) {
      out[i] = sample_request_on_host(requests[i], logits.data() + i * static_cast<size_t>(v), v);
    }
    *sampled += static_cast<int>(requests.size());
  }
  // Rows sampled so far; shared so that it outlives the shard (an engine or executor owns that).
  std::shared_ptr<int> sampled = std::make_shared<int>(0);

 private:
  cpu::ThreadPool pool_;
  CpuShard inner_;
};

}  // namespace jarvis::engine_test
