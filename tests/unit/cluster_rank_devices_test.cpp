// Per-rank devices (engine/cluster/rank_devices.h, RankSetup::device): jarvis-serve's --device list
// and the cluster file's node "device". Expected values are written from the flag's documented
// syntax, not produced by the code.
#include "engine/cluster/rank_devices.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "engine/cluster/rank_setup.h"

using namespace jarvis;

TEST(RankDevices, OneDeviceIsRankZerosAndTheWorkersStayOnTheCpu) {
  const std::vector<DeviceSpec> d = parse_rank_devices("cuda:1", 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].str(), "cuda:1");
  EXPECT_EQ(d[1].str(), "cpu");
  EXPECT_EQ(d[2].str(), "cpu");
  EXPECT_EQ(rank_devices_str(parse_rank_devices("cpu", 1)), "cpu");
  EXPECT_EQ(rank_devices_str(parse_rank_devices("cuda", 2)), "cuda:0,cpu");
}

TEST(RankDevices, AListGivesEveryRankItsOwn) {
  const std::vector<DeviceSpec> d = parse_rank_devices("cuda:0,cpu,cuda:2", 3);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_TRUE(d[0].is_cuda());
  EXPECT_FALSE(d[1].is_cuda());
  EXPECT_EQ(d[2].index, 2);
  EXPECT_EQ(rank_devices_str(d), "cuda:0,cpu,cuda:2");
}

TEST(RankDevices, BadItemsAndWrongLengthsAreRefused) {
  struct Case {
    const char* text;
    int ranks;
    const char* says;
  };
  for (const Case& c : {Case{"cpu,cpu", 3, "lists 2 devices for 3 ranks"},
                        Case{"cpu,cpu,cpu,cpu", 3, "lists 4 devices for 3 ranks"},
                        Case{"cuda:0,cpu", 1, "lists 2 devices for 1 ranks"},
                        Case{"cpu,,cpu", 3, "item 1"}, Case{"cpu,tpu,cpu", 3, "item 1"},
                        Case{"cpu,cpu,", 3, "item 2"}, Case{"", 2, "item 0"}, Case{"gpu", 2, "item 0"}}) {
    try {
      parse_rank_devices(c.text, c.ranks);
      ADD_FAILURE() << "'" << c.text << "' accepted for " << c.ranks << " ranks";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
    }
  }
}

// A GPU rank that cannot run is named by rank and device, whatever the build: no CUDA backend,
// no device, or an index no machine has.
TEST(RankDevices, UnusableGpuRankIsNamed) {
  EXPECT_NO_THROW(check_rank_devices(parse_rank_devices("cpu,cpu,cpu", 3)));
  const std::string bad = cuda_backend_built() ? "cuda:9999" : "cuda:0";
  try {
    check_rank_devices(parse_rank_devices("cpu," + bad + ",cpu", 3));
    ADD_FAILURE() << bad << " accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("rank 1: ", 0), 0u) << what;
    EXPECT_NE(what.find(bad), std::string::npos) << what;
  }
}

TEST(RankDevices, RankZerosGpuBudgetOnlyWhenEveryRankHasItsOwnGpu) {
  EXPECT_TRUE(kv_blocks_from_rank0_gpu(parse_rank_devices("cuda:0", 1)));
  EXPECT_TRUE(kv_blocks_from_rank0_gpu(parse_rank_devices("cuda:0,cuda:1,cuda:2", 3)));
  EXPECT_FALSE(kv_blocks_from_rank0_gpu(parse_rank_devices("cuda:0,cpu,cuda:1", 3)));   // a CPU rank
  EXPECT_FALSE(kv_blocks_from_rank0_gpu(parse_rank_devices("cuda:0,cuda:1,cuda:0", 3)));  // shared GPU
  EXPECT_FALSE(kv_blocks_from_rank0_gpu(parse_rank_devices("cpu", 2)));
}

TEST(RankDevices, ClusterNodesCarryTheirDevice) {
  const std::string path = std::string(JARVIS_SOURCE_DIR) + "/engine/cluster/examples/smollm2-3-local.json";
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  const std::string from = R"("name": "rank1", "address": "127.0.0.1:7101", "device": "cpu")";
  const size_t at = json.find(from);
  ASSERT_NE(at, std::string::npos) << "the example changed";
  json.replace(at, from.size(), R"("name": "rank1", "address": "127.0.0.1:7101", "device": "cuda:1")");
  const ClusterConfig c = parse_cluster_config(json, path);
  const transport::LinkShapes shapes = c.link_shapes();
  EXPECT_EQ(rank_setup(c, 0, shapes).device.str(), "cpu");
  EXPECT_EQ(rank_setup(c, 1, shapes).device.str(), "cuda:1");
  EXPECT_EQ(rank_setup(c, 2, shapes).device.str(), "cpu");
}
