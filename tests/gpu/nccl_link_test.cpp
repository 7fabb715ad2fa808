// NcclLink between two GPUs (two threads, in-process control link). NCCL cannot put two ranks on
// one device, so this needs two CUDA devices and skips with a clear line otherwise.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "transport/inproc_link.h"
#include "transport/nccl/nccl_link.h"

using namespace jarvis::transport;
using namespace std::chrono_literals;

TEST(TransportNccl, TwoDevicesExchangeVerifiedBuffers) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  if (devices < 2) GTEST_SKIP() << "NcclLink test needs 2 CUDA devices; found " << devices;

  auto [c0, c1] = make_inproc_link_pair();
  const std::vector<size_t> sizes = {1, 16384, 4 << 20};
  std::vector<std::vector<uint8_t>> got(sizes.size());
  auto rank_main = [&](int rank, Link& control) {
    cudaSetDevice(rank);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    {
      NcclLink link(control, rank, rank, stream, 20s);
      void* buf = nullptr;
      ASSERT_EQ(cudaMalloc(&buf, 4 << 20), cudaSuccess);
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (rank == 0) {
          std::vector<uint8_t> host(sizes[i]);
          for (size_t k = 0; k < host.size(); ++k) host[k] = static_cast<uint8_t>(k * 31 + i);
          cudaMemcpy(buf, host.data(), host.size(), cudaMemcpyHostToDevice);
          link.send(static_cast<uint32_t>(i), buf, sizes[i]);
          link.synchronize();
        } else {
          const auto r = link.recv(buf, 4 << 20, 20s);
          EXPECT_EQ(r.tag, i);
          link.synchronize();
          got[i].resize(r.bytes);
          cudaMemcpy(got[i].data(), buf, r.bytes, cudaMemcpyDeviceToHost);
        }
      }
      cudaFree(buf);
    }
    cudaStreamDestroy(stream);
  };
  std::thread t0([&, &c0 = c0] { rank_main(0, *c0); });
  std::thread t1([&, &c1 = c1] { rank_main(1, *c1); });
  t0.join();
  t1.join();
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(got[i].size(), sizes[i]);
    for (size_t k = 0; k < got[i].size(); ++k) ASSERT_EQ(got[i][k], static_cast<uint8_t>(k * 31 + i)) << k;
  }
}
