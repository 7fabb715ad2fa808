// rank_setup (engine/cluster/rank_setup.h): what each rank of a cluster file does, derived on
// every host alike. Expected values come from the example file's text, not from the code.
#include "engine/cluster/rank_setup.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/cluster/model_identity.h"

using namespace jarvis;
using namespace std::chrono_literals;

namespace {

const std::string kExample = std::string(JARVIS_SOURCE_DIR) + "/engine/cluster/examples/smollm2-3-local.json";

}  // namespace

TEST(ClusterRankSetup, EveryRankOfTheExample) {
  const ClusterConfig c = read_cluster_config(kExample);
  const transport::LinkShapes shapes = c.link_shapes();
  const RankSetup s0 = rank_setup(c, 0, shapes), s1 = rank_setup(c, 1, shapes), s2 = rank_setup(c, 2, shapes);
  EXPECT_EQ(s1.world_size, 3);
  EXPECT_EQ(s1.listen_host, "127.0.0.1");
  EXPECT_EQ(s1.listen_port, 7101);
  EXPECT_EQ(s1.next_port, 7102);
  EXPECT_EQ(s2.next_port, 7100);  // the ring closes back to rank 0
  EXPECT_EQ(s0.next_port, 7101);
  EXPECT_EQ(s1.shard.first_layer, 10);
  EXPECT_EQ(s1.shard.end_layer, 20);
  EXPECT_TRUE(s0.shard.has_embedding && s0.shard.has_head);
  EXPECT_FALSE(s2.shard.has_embedding || s2.shard.has_head);
  ASSERT_EQ(s2.plan.size(), 3u);
  EXPECT_EQ(s2.plan[0].end_layer, 10);
  // Each rank shapes the link to its successor: 0-1 2ms, 1-2 10ms +- 1ms, 2-0 2ms at 100 mbit.
  EXPECT_EQ(s0.send_shape.delay, 2ms);
  EXPECT_EQ(s1.send_shape.delay, 10ms);
  EXPECT_EQ(s1.send_shape.jitter, 1ms);
  EXPECT_EQ(s2.send_shape.delay, 2ms);
  EXPECT_DOUBLE_EQ(s2.send_shape.bits_per_second, 100e6);
  // The command line overrides the file link by link.
  EXPECT_EQ(rank_setup(c, 1, c.link_shapes("1-2:3ms")).send_shape.delay, 3ms);
  // Budgets (2 GiB, 1 GiB, 1 GiB) and no "kv_blocks": every rank derives the same number.
  EXPECT_GT(s0.kv_blocks, 0);
  EXPECT_EQ(s0.kv_blocks, s1.kv_blocks);
  EXPECT_EQ(s0.kv_blocks, s2.kv_blocks);
  EXPECT_EQ(s1.page_size, 16);
  EXPECT_TRUE(s0.all_loopback);
}

TEST(ClusterRankSetup, KvBlocksFromTheFileOrTheDefault) {
  const std::string model = std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  const std::string nodes = R"("nodes": [{"name": "a", "address": "10.0.0.1:7100"},
                                         {"name": "b", "address": "10.0.0.2:7100"}]})";
  ClusterConfig c = parse_cluster_config(R"({"model": ")" + model + R"(", "kv_blocks": 300, "page_size": 32, )" + nodes,
                                         "c.json");
  RankSetup s = rank_setup(c, 1, c.link_shapes());
  EXPECT_EQ(s.kv_blocks, 300);
  EXPECT_EQ(s.page_size, 32);
  EXPECT_FALSE(s.all_loopback);
  EXPECT_EQ(s.next_host, "10.0.0.1");
  c = parse_cluster_config(R"({"model": ")" + model + R"(", )" + nodes, "c.json");
  s = rank_setup(c, 1, c.link_shapes());
  const ModelConfig mc = read_model_config(model);
  EXPECT_EQ(s.kv_blocks, kDefaultClusterKvSequences * ((mc.context_length + 15) / 16));
  EXPECT_THROW(rank_setup(c, 2, c.link_shapes()), ClusterConfigError);
  // A "kv_blocks" that does not fit a budget is refused with the rank named.
  c = parse_cluster_config(R"({"model": ")" + model + R"(", "kv_blocks": 100000000, )" + nodes, "c.json");
  c.nodes[1].memory_bytes = int64_t(1) << 30;
  try {
    rank_setup(c, 0, c.link_shapes());
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
}
