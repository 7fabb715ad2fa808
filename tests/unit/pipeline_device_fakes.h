// Test doubles for the pipeline's device path without GPUs, shared by pipeline_device_path_test.cpp
// (stage workers) and pipeline_rank0_nccl_test.cpp (rank 0): shards that say they keep their hidden
// state on a "GPU" (host memory here), a DeviceLink stand-in that moves bytes through memory, and
// a ring of StageWorker threads behind a rank 0 the test drives (by hand, or a PipelineRunner).
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/pipeline/stage_message.h"
#include "engine/pipeline/stage_worker.h"
#include "transport/inproc_link.h"

namespace jarvis::device_fakes {

inline constexpr int kLayers = 6, kHidden = 8, kBlocks = 16, kPage = 4;

// Layer l maps x to x/2 + l + 1: exact in float for these values, and different per layer, so a
// row that skipped, repeated or swapped a stage shows.
inline void apply_layers(float* x, size_t n, int first, int end) {
  for (int l = first; l < end; ++l) {
    for (size_t i = 0; i < n; ++i) x[i] = x[i] * 0.5f + static_cast<float>(l + 1);
  }
}

// Rank 0's embedding and head, as plain formulas the tests recompute: token t's row is
// (t - 3) / 4 + c / 2 (exact in float); logit v of a row is row[v % hidden] * (v + 1) (exact too).
inline constexpr int kVocab = 16;
inline float embed_value(int32_t t, int c) { return static_cast<float>(t - 3) * 0.25f + static_cast<float>(c) * 0.5f; }
inline float logit_value(const float* row, int v) { return row[v % kHidden] * static_cast<float>(v + 1); }

class FakeShard : public ShardForward {
 public:
  // rank0: holds the embedding and the head (PipelineRunner's shard), layers [0, end).
  FakeShard(int first, int end, bool gpu, uint8_t uuid, bool rank0 = false) : gpu_(gpu) {
    config_.n_layers = kLayers;
    config_.hidden = kHidden;
    config_.vocab_size = kVocab;
    shard_.first_layer = first;
    shard_.end_layer = end;
    shard_.has_embedding = rank0;
    shard_.has_head = rank0;
    uuid_[3] = uuid;
  }
  const ModelConfig& config() const override { return config_; }
  const ShardSpec& shard() const override { return shard_; }
  int num_blocks() const override { return kBlocks; }
  int page_size() const override { return kPage; }
  std::string device_name() const override { return gpu_ ? "fake-gpu" : "cpu"; }
  void embed(const int32_t* t, int n, float* hidden) override {
    if (!shard_.has_embedding) throw InvalidArgument("no embedding");
    ++embeds;
    for (int i = 0; i < n; ++i) {
      for (int c = 0; c < kHidden; ++c) hidden[i * kHidden + c] = embed_value(t[i], c);
    }
  }
  void forward_layers(const BatchView& b, float* hidden) override {
    ++host_calls;
    apply_layers(hidden, static_cast<size_t>(b.total_tokens()) * kHidden, shard_.first_layer, shard_.end_layer);
  }
  void compute_logits(const float* hidden, int n, float* logits) override {
    if (!shard_.has_head) throw InvalidArgument("no head");
    for (int r = 0; r < n; ++r) {
      for (int v = 0; v < kVocab; ++v) logits[r * kVocab + v] = logit_value(hidden + r * kHidden, v);
    }
  }

  bool has_device_hidden() const override { return gpu_; }
  int device_ordinal() const override { return gpu_ ? 0 : -1; }
  std::array<uint8_t, 16> device_uuid() const override { return uuid_; }
  float* device_hidden(int n) override {
    if (dev_.size() < static_cast<size_t>(n) * kHidden) dev_.resize(static_cast<size_t>(n) * kHidden);
    return dev_.data();
  }
  void forward_layers_device(const BatchView& b) override {
    ++device_calls;
    apply_layers(dev_.data(), static_cast<size_t>(b.total_tokens()) * kHidden, shard_.first_layer, shard_.end_layer);
  }
  void hidden_to_device(const float* h, int n) override {
    std::memcpy(device_hidden(n), h, static_cast<size_t>(n) * kHidden * sizeof(float));
  }
  void hidden_to_host(float* h, int n) override {
    std::memcpy(h, dev_.data(), static_cast<size_t>(n) * kHidden * sizeof(float));
  }

  int host_calls = 0, device_calls = 0, embeds = 0;

 private:
  bool gpu_;
  ModelConfig config_;
  ShardSpec shard_;
  std::array<uint8_t, 16> uuid_{};
  std::vector<float> dev_;
};

// The in-memory "NCCL": rank 0 of a pair registers a channel and sends its key over the control
// link, as NcclLink sends its unique id; rank 1 looks it up.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<uint8_t>> q;
  bool drop_next = false;  // the next send vanishes: a peer dying mid-transfer
  bool fail_sends = false;  // sends throw LinkBroken: the transfer failed at the sender
};

inline std::mutex g_mu;
inline std::map<uint64_t, std::shared_ptr<Channel>> g_channels;
inline uint64_t g_next_key = 1;

class MemDeviceLink : public transport::DeviceLink {
 public:
  MemDeviceLink(std::shared_ptr<Channel> c, std::chrono::nanoseconds timeout) : c_(std::move(c)), timeout_(timeout) {}
  const std::shared_ptr<Channel>& channel() const { return c_; }
  void send(const void* data, size_t bytes) override {
    std::lock_guard<std::mutex> lk(c_->mu);
    if (c_->fail_sends) throw transport::LinkBroken("transfer failed: peer gone");
    if (c_->drop_next) {
      c_->drop_next = false;
      return;
    }
    const auto* p = static_cast<const uint8_t*>(data);
    c_->q.emplace_back(p, p + bytes);
    c_->cv.notify_all();
  }
  void recv(void* data, size_t bytes) override {
    std::unique_lock<std::mutex> lk(c_->mu);
    if (!c_->cv.wait_for(lk, timeout_, [&] { return !c_->q.empty(); })) {
      throw transport::LinkBroken("device transfer timed out");
    }
    if (c_->q.front().size() != bytes) throw transport::LinkBroken("device transfer of the wrong size");
    std::memcpy(data, c_->q.front().data(), bytes);
    c_->q.pop_front();
  }

 private:
  std::shared_ptr<Channel> c_;
  std::chrono::nanoseconds timeout_;
};

inline std::unique_ptr<transport::DeviceLink> make_mem_link(transport::Link& control, int rank, int,
                                                     std::chrono::nanoseconds timeout) {
  if (rank == 0) {
    auto c = std::make_shared<Channel>();
    uint64_t key = 0;
    {
      std::lock_guard<std::mutex> lk(g_mu);
      key = g_next_key++;
      g_channels[key] = c;
    }
    control.send(transport::MessageType::kData, 0, &key, sizeof(key));
    return std::make_unique<MemDeviceLink>(c, timeout);
  }
  const transport::Message m = control.recv(timeout);
  uint64_t key = 0;
  if (m.payload.size() != sizeof(key)) throw transport::FrameError("not a channel key");
  std::memcpy(&key, m.payload.data(), sizeof(key));
  std::lock_guard<std::mutex> lk(g_mu);
  return std::make_unique<MemDeviceLink>(g_channels.at(key), timeout);
}

inline StageLimits limits() {
  StageLimits l;
  l.hidden = kHidden;
  l.num_blocks = kBlocks;
  l.page_size = kPage;
  return l;
}

struct WorkerSpec {
  int first, end;
  bool gpu;
  uint8_t uuid;
  bool nccl = true;
};

// Rank 0 (layers [0, 1), driven by the test) and workers after it.
class Ring {
 public:
  explicit Ring(const std::vector<WorkerSpec>& specs) {
    auto [r0_out, first_in] = transport::make_inproc_link_pair();
    to_first_ = std::move(r0_out);
    std::unique_ptr<transport::Link> in = std::move(first_in);
    results_.resize(specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      shards_.push_back(std::make_unique<FakeShard>(specs[i].first, specs[i].end, specs[i].gpu, specs[i].uuid));
      workers_.push_back(std::make_unique<StageWorker>(*shards_.back()));
      workers_.back()->set_device_link_factory(make_mem_link);
      workers_.back()->set_nccl(specs[i].nccl);
      workers_.back()->set_device_timeout(std::chrono::milliseconds(500));
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      auto [out, next_in] = transport::make_inproc_link_pair();
      StageWorker& w = *workers_[i];
      StageWorkerResult& r = results_[i];
      threads_.emplace_back([&w, &r, in = std::move(in), out = std::move(out)]() mutable {
        r = w.run(*in, *out);
        out.reset();
      });
      in = std::move(next_in);
    }
    from_last_ = std::move(in);
  }
  ~Ring() { shut_down(); }
  void shut_down() {
    to_first_.reset();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  StageRecord round(const std::vector<uint8_t>& record) {
    to_first_->send(record);
    const transport::Message m = from_last_->recv(std::chrono::seconds(10));
    return decode_stage_record(m.payload, limits());
  }
  StageRecord hello() {
    StageHello h;
    h.n_layers = kLayers;
    h.hidden = kHidden;
    h.num_blocks = kBlocks;
    h.page_size = kPage;
    h.tail_rank = 0;
    h.ranges = {{0, 1}};
    return round(encode_stage_hello(1, h));
  }

  std::vector<std::unique_ptr<FakeShard>> shards_;
  std::vector<std::unique_ptr<StageWorker>> workers_;
  std::vector<StageWorkerResult> results_;
  std::vector<std::thread> threads_;
  std::unique_ptr<transport::Link> to_first_, from_last_;
};

inline BatchView step_batch(int step) {
  BatchView b;
  b.seqs.push_back({1, 3 + step, 0, {0, 1, 2}, true});
  b.seqs.push_back({2, 1, 4 + step, {3, 4, 5}, true});
  return b;
}

// Three steps round the ring; every returned row must equal layers [1, 6) applied directly.

}  // namespace jarvis::device_fakes
