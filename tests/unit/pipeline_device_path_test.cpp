// The stage workers' device path without GPUs: shards that say they keep their hidden state on a
// "GPU" (host memory here) and a DeviceLink stand-in that moves bytes through memory, in a ring of
// three workers behind a hand-driven rank 0. Checked: the hello sets NCCL up exactly on the hops
// device_hop.h names (worker to worker, different GPUs), records in device form carry the right
// rows, the result equals the same arithmetic done directly, and a transfer that never arrives
// ends in a kError reaching rank 0 instead of a hang. The real NCCL version of this runs on two
// GPUs: tests/gpu/pipeline/nccl_stage_worker_test.cpp.
// Rank 0's own hop to rank 1: pipeline_rank0_nccl_test.cpp.
#include <gtest/gtest.h>

#include <vector>

#include "pipeline_device_fakes.h"

namespace jarvis {
namespace {

using namespace device_fakes;

void run_steps(Ring& ring) {
  for (int step = 0; step < 3; ++step) {
    const BatchView b = step_batch(step);
    const int n = b.total_tokens();
    std::vector<float> h(static_cast<size_t>(n) * kHidden);
    for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i % 13) - 6.0f + 0.25f * step;
    const std::vector<int> rows = {0, n - 1};
    const StageRecord back = ring.round(encode_stage_step(10 + step, 0, b, h.data(), kHidden, kPage, rows));
    ASSERT_EQ(back.kind, StageKind::kStep) << back.error;
    ASSERT_TRUE(back.trimmed);
    ASSERT_EQ(back.hidden.size(), rows.size() * kHidden);
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<float> want(h.begin() + rows[r] * kHidden, h.begin() + (rows[r] + 1) * kHidden);
      apply_layers(want.data(), want.size(), 1, kLayers);
      for (int c = 0; c < kHidden; ++c) EXPECT_EQ(back.hidden[r * kHidden + c], want[c]) << "step " << step;
    }
  }
}

TEST(PipelineDevicePath, DistinctGpusMoveRowsDeviceToDevice) {
  Ring ring({{1, 2, true, 1}, {2, 4, true, 2}, {4, 6, true, 3}});
  const StageRecord hello = ring.hello();
  ASSERT_EQ(hello.kind, StageKind::kHello) << hello.error;
  ASSERT_EQ(hello.hello.devices.size(), 4u);
  EXPECT_FALSE(hello.hello.devices[0].cuda);  // rank 0 stated none
  EXPECT_TRUE(hello.hello.devices[2].cuda && hello.hello.devices[2].nccl);
  run_steps(ring);
  // Read after a step went round: a worker sets its output hop up after forwarding the hello,
  // and the step's path through the links orders that before these reads.
  // Rank 0's hops stay on the host; 1 -> 2 and 2 -> 3 go device to device.
  EXPECT_FALSE(ring.workers_[0]->nccl_in());
  EXPECT_TRUE(ring.workers_[0]->nccl_out());
  EXPECT_TRUE(ring.workers_[1]->nccl_in());
  EXPECT_TRUE(ring.workers_[1]->nccl_out());
  EXPECT_TRUE(ring.workers_[2]->nccl_in());
  EXPECT_FALSE(ring.workers_[2]->nccl_out());
  for (const auto& s : ring.shards_) {
    EXPECT_EQ(s->device_calls, 3);
    EXPECT_EQ(s->host_calls, 0);
  }
  ring.shut_down();
  for (const StageWorkerResult& r : ring.results_) EXPECT_TRUE(r.ok) << r.reason;
}

TEST(PipelineDevicePath, SameGpuCpuAndDisabledHopsKeepTheHostPath) {
  // 1 -> 2 share a GPU, 2 -> 3 is GPU -> CPU; 3 -> 4 has NCCL switched off at 4 (JARVIS_NCCL=0).
  Ring ring({{1, 2, true, 7}, {2, 3, true, 7}, {3, 4, false, 0}, {4, 5, true, 1}, {5, 6, true, 2, false}});
  const StageRecord hello = ring.hello();
  ASSERT_EQ(hello.kind, StageKind::kHello) << hello.error;
  run_steps(ring);
  for (const auto& w : ring.workers_) {
    EXPECT_FALSE(w->nccl_in());
    EXPECT_FALSE(w->nccl_out());
  }
  for (const auto& s : ring.shards_) EXPECT_EQ(s->device_calls, 0);
}

TEST(PipelineDevicePath, MixedHopsUploadAndDownloadAtTheirEnds) {
  // CPU -> GPU a -> GPU b -> CPU: only the middle hop is NCCL, so worker 2 uploads what came on
  // the host and worker 3 downloads for the host hop after it.
  Ring ring({{1, 2, false, 0}, {2, 3, true, 1}, {3, 5, true, 2}, {5, 6, false, 0}});
  ASSERT_EQ(ring.hello().kind, StageKind::kHello);
  run_steps(ring);
  EXPECT_TRUE(ring.workers_[1]->nccl_out());
  EXPECT_TRUE(ring.workers_[2]->nccl_in());
  EXPECT_FALSE(ring.workers_[2]->nccl_out());
  EXPECT_EQ(ring.shards_[1]->device_calls, 3);
  EXPECT_EQ(ring.shards_[2]->device_calls, 3);
  EXPECT_EQ(ring.shards_[3]->host_calls, 3);
}

TEST(PipelineDevicePath, ALostTransferIsAReportedFailureNotAHang) {
  Ring ring({{1, 3, true, 1}, {3, 6, true, 2}});
  ASSERT_EQ(ring.hello().kind, StageKind::kHello);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    for (auto& [key, c] : g_channels) c->drop_next = true;  // only this ring's channel has no data queued
  }
  const BatchView b = step_batch(0);
  std::vector<float> h(static_cast<size_t>(b.total_tokens()) * kHidden, 1.0f);
  const auto t0 = std::chrono::steady_clock::now();
  const StageRecord back = ring.round(encode_stage_step(5, 0, b, h.data(), kHidden, kPage, {0}));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));  // the 500 ms device timeout
  ASSERT_EQ(back.kind, StageKind::kError);
  EXPECT_NE(back.error.find("timed out"), std::string::npos) << back.error;
  ring.shut_down();
  EXPECT_FALSE(ring.results_[1].ok);
}

TEST(PipelineDevicePath, ADeviceFormRecordFromRankZeroIsRefused) {
  Ring ring({{1, 3, true, 1}, {3, 6, true, 2}});
  ASSERT_EQ(ring.hello().kind, StageKind::kHello);
  const StageRecord back = ring.round(encode_stage_step_device(9, 0, step_batch(0), kHidden, kPage, {0}));
  ASSERT_EQ(back.kind, StageKind::kError);
  EXPECT_NE(back.error.find("device"), std::string::npos) << back.error;
}

}  // namespace
}  // namespace jarvis
