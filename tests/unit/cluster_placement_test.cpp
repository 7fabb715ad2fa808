// Split planning and the per-rank memory check (engine/cluster/placement.h).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "csrc/gguf/gguf_file.h"
#include "csrc/model/kv_cache.h"
#include "csrc/util/error.h"
#include "engine/cluster/cluster_plan.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/placement.h"

using namespace jarvis;

namespace {

const std::string kModel = std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::vector<int> counts(const std::vector<ShardSpec>& shards) {
  std::vector<int> out;
  for (const ShardSpec& s : shards) out.push_back(s.end_layer - s.first_layer);
  return out;
}

// The message of the InvalidArgument `f` throws ("" when it throws nothing).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ClusterPlacement, ParseSplit) {
  EXPECT_EQ(parse_split("10,10,10"), (std::vector<int>{10, 10, 10}));
  EXPECT_EQ(parse_split("0,30"), (std::vector<int>{0, 30}));
  for (const char* bad : {"", "10,,10", "10,x", "-1,31", "10,", "1.5,2", "99999999999"}) {
    EXPECT_NE(error_of([&] { parse_split(bad); }), "") << bad;
  }
  EXPECT_NE(error_of([] { parse_split("10,x"); }).find("'x'"), std::string::npos);
}

TEST(ClusterPlacement, EvenSplitGivesTheRemainderToTheLastRanks) {
  EXPECT_EQ(counts(plan_split(30, 3)), (std::vector<int>{10, 10, 10}));
  EXPECT_EQ(counts(plan_split(30, 4)), (std::vector<int>{7, 7, 8, 8}));
  EXPECT_EQ(counts(plan_split(30, 7)), (std::vector<int>{4, 4, 4, 4, 4, 5, 5}));
  EXPECT_EQ(counts(plan_split(30, 30)), std::vector<int>(30, 1));
  EXPECT_EQ(counts(plan_split(30, 1)), std::vector<int>{30});
  // Ranges are consecutive, cover every layer once, and the ends sit on rank 0 by default.
  const auto shards = plan_split(30, 4);
  int next = 0;
  for (size_t r = 0; r < shards.size(); ++r) {
    EXPECT_EQ(shards[r].first_layer, next);
    next = shards[r].end_layer;
    EXPECT_EQ(shards[r].has_embedding, r == 0);
    EXPECT_EQ(shards[r].has_head, r == 0);
  }
  EXPECT_EQ(next, 30);
}

TEST(ClusterPlacement, ExplicitSplitAndEnds) {
  const auto shards = plan_split(30, 3, std::vector<int>{1, 28, 1}, EndsPlacement{0, 2});
  EXPECT_EQ(counts(shards), (std::vector<int>{1, 28, 1}));
  EXPECT_EQ(shards[1].first_layer, 1);
  EXPECT_EQ(shards[2].first_layer, 29);
  EXPECT_TRUE(shards[0].has_embedding);
  EXPECT_FALSE(shards[0].has_head);
  EXPECT_TRUE(shards[2].has_head);
  EXPECT_EQ(describe_shard(2, shards[2]), "rank 2: layers [29, 30) + head");
  // JARVIS's user device: head and tail only, the layers elsewhere.
  EXPECT_EQ(counts(plan_split(30, 3, std::vector<int>{0, 15, 15})), (std::vector<int>{0, 15, 15}));
}

TEST(ClusterPlacement, SplitErrorsSayWhatIsWrong) {
  EXPECT_NE(error_of([] {
              plan_split(30, 3, std::vector<int>{10, 10});
            }).find("names 2 ranks but there are 3"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              plan_split(30, 3, std::vector<int>{10, 10, 11});
            }).find("sums to 31 layers but the model has 30"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              plan_split(30, 3, std::vector<int>{10, 20, 0});
            }).find("rank 2 would hold no layers"),
            std::string::npos);
  EXPECT_NE(error_of([] { plan_split(30, 3, std::vector<int>{-1, 21, 10}); }).find("negative"), std::string::npos);
  EXPECT_NE(error_of([] { plan_split(2, 3); }).find("cannot divide 2 layers over 3 ranks"), std::string::npos);
  EXPECT_NE(error_of([] { plan_split(30, 0); }).find("ranks must be >= 1"), std::string::npos);
  EXPECT_NE(error_of([] {
              plan_split(30, 3, std::nullopt, EndsPlacement{3, 0});
            }).find("head (embedding) is placed on rank 3"),
            std::string::npos);
  EXPECT_NE(error_of([] { plan_split(30, 3, std::nullopt, EndsPlacement{0, -1}); }).find("tail"), std::string::npos);
}

// The estimate comes from the architecture; the reference is the file's own tensor table
// (element counts of every tensor a shard loads), an independent path to the same numbers.
TEST(ClusterPlacement, WeightEstimateMatchesTheFilesTensors) {
  const ModelConfig c = read_model_config(kModel);
  ASSERT_EQ(c.n_layers, 30);
  const GgufFile f = GgufFile::open(kModel);
  for (int l : {0, 17, 29}) {
    int64_t elements = 0;
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (const GgufTensorInfo& t : f.tensors()) {
      if (t.name.rfind(prefix, 0) == 0) elements += t.num_elements();
    }
    EXPECT_EQ(layer_weight_elements(c), elements) << "layer " << l;
  }
  ASSERT_NE(f.find_tensor("token_embd.weight"), nullptr);
  EXPECT_EQ(embedding_elements(c), f.find_tensor("token_embd.weight")->num_elements());
  const GgufTensorInfo* out = f.find_tensor("output.weight");
  EXPECT_EQ(c.tied_embeddings, out == nullptr);
  EXPECT_EQ(head_elements(c), f.find_tensor("output_norm.weight")->num_elements() + (out ? out->num_elements() : 0));

  // Shard totals at float32 (--weights f32), with a KV reservation of 100 blocks of 16 tokens.
  const auto shards = plan_split(30, 3);
  const ShardMemory m0 = estimate_shard_memory(c, shards[0], 100, 16, WeightFormat::kF32);
  const ShardMemory m1 = estimate_shard_memory(c, shards[1], 100, 16, WeightFormat::kF32);
  EXPECT_EQ(m1.layer_weights, 10 * layer_weight_elements(c) * 4);
  EXPECT_EQ(m1.end_weights, 0);
  // Rank 0 holds the embedding (once, even though the tied head also uses it) and the norm.
  EXPECT_EQ(m0.end_weights, (embedding_elements(c) + c.hidden) * 4);
  // KV: K and V, 10 layers, 100 blocks x 16 slots x kv_dim floats.
  EXPECT_EQ(m1.kv_cache, int64_t{2} * 10 * 100 * 16 * c.n_kv_heads * c.head_dim * 4);
  // A tail rank without the embedding still needs it when the head is tied.
  const auto split_ends = plan_split(30, 3, std::nullopt, EndsPlacement{0, 2});
  if (c.tied_embeddings) {
    EXPECT_EQ(estimate_shard_memory(c, split_ends[2], 0, 16, WeightFormat::kF32).end_weights,
              (embedding_elements(c) + c.hidden) * 4);
  }
}

// Held natively, a matrix takes its bytes in the file's blocks and a vector float32. The reference
// sizes each tensor from the GGUF block definitions (Q4_1: 32 weights in 2 + 2 + 16 bytes; Q8_0: 32
// in 2 + 32; F32: 4 bytes each), not from the loader's type table.
int64_t block_def_bytes(const GgufTensorInfo& t) {
  const int64_t n = t.num_elements();
  if (t.dims.size() < 2) return 4 * n;
  switch (t.type) {
    case GgmlType::Q4_1: return n / 32 * 20;
    case GgmlType::Q8_0: return n / 32 * 34;
    case GgmlType::F32: return 4 * n;
    default: ADD_FAILURE() << t.name << ": a type this test has no block definition for"; return 0;
  }
}

TEST(ClusterPlacement, NativeWeightBytesAreTheFilesBlocks) {
  const ModelConfig c = read_model_config(kModel);
  const GgufFile f = GgufFile::open(kModel);
  ASSERT_EQ(static_cast<int>(c.native_bytes.layer.size()), 30);
  int64_t layers_0_10 = 0, all_layers = 0;
  for (int l = 0; l < 30; ++l) {
    int64_t bytes = 0;
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (const GgufTensorInfo& t : f.tensors()) {
      if (t.name.rfind(prefix, 0) == 0) bytes += block_def_bytes(t);
    }
    EXPECT_EQ(layer_weight_bytes(c, l, WeightFormat::kNative), bytes) << "layer " << l;
    EXPECT_EQ(layer_weight_bytes(c, l, WeightFormat::kF32), layer_weight_elements(c) * 4);
    if (l < 10) layers_0_10 += bytes;
    all_layers += bytes;
  }
  const int64_t embedding = block_def_bytes(*f.find_tensor("token_embd.weight"));
  const int64_t norm = block_def_bytes(*f.find_tensor("output_norm.weight"));
  EXPECT_EQ(embedding_bytes(c, WeightFormat::kNative), embedding);
  ASSERT_TRUE(c.tied_embeddings);
  EXPECT_EQ(head_bytes(c, WeightFormat::kNative), norm);
  // The default (native) estimate: rank 0 of three holds layers 0-9, the embedding once (the tied
  // head reuses it) and the norm; the whole model is at most the file.
  const auto shards = plan_split(30, 3);
  const ShardMemory m0 = estimate_shard_memory(c, shards[0], 0, 16);
  EXPECT_EQ(m0.layer_weights, layers_0_10);
  EXPECT_EQ(m0.end_weights, embedding + norm);
  const ShardMemory whole = estimate_shard_memory(c, ShardSpec::full(), 0, 16);
  EXPECT_EQ(whole.total(), all_layers + embedding + norm);
  std::ifstream file(kModel, std::ios::binary | std::ios::ate);
  EXPECT_LE(whole.total(), static_cast<int64_t>(file.tellg()));
  // A config that records no native bytes (synthetic) is counted at float32.
  ModelConfig synthetic = c;
  synthetic.native_bytes = {};
  EXPECT_EQ(estimate_shard_memory(synthetic, shards[1], 0, 16).layer_weights, 10 * layer_weight_elements(c) * 4);
}

TEST(ClusterPlacement, MemoryBudgetErrorNamesRankNeedAndBudget) {
  const ModelConfig c = read_model_config(kModel);
  const auto shards = plan_split(30, 3);
  const int64_t rank2_need = estimate_shard_memory(c, shards[2], 64, 16).total();
  // Everything fits with room to spare.
  EXPECT_NO_THROW(check_memory(c, shards, {int64_t{1} << 30, int64_t{1} << 30, int64_t{1} << 30}, 64, 16));
  // Rank 2 gets one byte too few; rank 1 has no budget (0 = unlimited).
  const std::string e = error_of([&] { check_memory(c, shards, {int64_t{1} << 30, 0, rank2_need - 1}, 64, 16); });
  EXPECT_NE(e.find("rank 2 needs " + format_bytes(rank2_need)), std::string::npos) << e;
  EXPECT_NE(e.find("layers [20, 30)"), std::string::npos) << e;
  EXPECT_NE(e.find("memory budget is " + format_bytes(rank2_need - 1)), std::string::npos) << e;
  EXPECT_NO_THROW(check_memory(c, shards, {int64_t{1} << 30, 0, rank2_need}, 64, 16));
  EXPECT_NE(error_of([&] { check_memory(c, shards, {0, 0}, 64, 16); }).find("budgets for 2 ranks"), std::string::npos);
  // 100 MiB cannot hold rank 0's float32 embedding (49152 x 576 x 4 = 108 MiB) whatever the KV.
  const std::string e0 =
      error_of([&] { check_memory(c, shards, {100 << 20, 0, 0}, 0, 16, WeightFormat::kF32); });
  EXPECT_NE(e0.find("rank 0 needs"), std::string::npos) << e0;
  EXPECT_NE(e0.find("+ embedding + head"), std::string::npos) << e0;
}

TEST(ClusterPlacement, MaxKvBlocksIsLimitedByTheTightestRank) {
  const ModelConfig c = read_model_config(kModel);
  const auto shards = plan_split(30, 3);
  const int64_t block10 = static_cast<int64_t>(KvCache::block_bytes(10, 16, c.n_kv_heads, c.head_dim));
  const int64_t w1 = estimate_shard_memory(c, shards[1], 0, 16).total();
  // Rank 1 has room for exactly 7 blocks beside its weights; the others for far more.
  const std::vector<int64_t> budgets = {int64_t{1} << 32, w1 + 7 * block10 + block10 / 2, 0};
  EXPECT_EQ(max_kv_blocks(c, shards, budgets, 16), 7);
  EXPECT_NO_THROW(check_memory(c, shards, budgets, 7, 16));
  EXPECT_THROW(check_memory(c, shards, budgets, 8, 16), InvalidArgument);
  EXPECT_EQ(max_kv_blocks(c, shards, {0, 0, 0}, 16), -1);
  EXPECT_NE(error_of([&] { max_kv_blocks(c, shards, {0, w1 - 1, 0}, 16); }).find("rank 1 needs"), std::string::npos);
}

TEST(ClusterPlacement, FormatBytes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(int64_t{3} << 30), "3.00 GiB");
}

TEST(ClusterPlan, FromFlagsAndFromTheExampleFile) {
  // The example: 2 GiB / 1 GiB / 1 GiB for 10 layers each on SmolLM2 at float32. The KV blocks
  // are what the tightest rank has room for, and the resulting plan passes the check.
  const ClusterConfig cluster =
      read_cluster_config(std::string(JARVIS_SOURCE_DIR) + "/engine/cluster/examples/smollm2-3-local.json");
  const PlanRequest req = plan_request(cluster);
  const ClusterPlan plan = make_plan(req);
  ASSERT_EQ(plan.shards.size(), 3u);
  EXPECT_EQ(plan.kv_blocks, max_kv_blocks(plan.model, plan.shards, req.budgets, req.page_size));
  EXPECT_GT(plan.kv_blocks, 0);
  for (size_t r = 0; r < 3; ++r) EXPECT_LE(plan.memory[r].total(), req.budgets[r]) << r;
  EXPECT_NE(describe_plan(plan, req.budgets).find("rank 2: layers [20, 30) -- weights"), std::string::npos);

  PlanRequest flags;
  flags.model_path = kModel;
  flags.n_ranks = 3;
  flags.split = parse_split("1,28,1");
  EXPECT_EQ(make_plan(flags).kv_blocks, 0);  // no budgets: the engine sizes the KV itself
  flags.split = parse_split("1,28,2");
  EXPECT_NE(error_of([&] { make_plan(flags); }).find("sums to 31 layers but the model has 30"), std::string::npos);
  // A budget that holds rank 1's 28 layers' weights but not a single KV block.
  flags.split = parse_split("1,28,1");
  const auto shards = plan_split(30, 3, flags.split);
  const ModelConfig c = read_model_config(kModel);
  flags.budgets = {0, estimate_shard_memory(c, shards[1], 0, 16).total() + 1, 0};
  const std::string e = error_of([&] { make_plan(flags); });
  EXPECT_NE(e.find("rank 1 needs"), std::string::npos) << e;
  flags.model_path = "/nonexistent.gguf";
  EXPECT_THROW(make_plan(flags), ModelFileError);
}

TEST(ClusterPlan, RankMemoryFlag) {
  EXPECT_EQ(parse_rank_memory("", 2), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(parse_rank_memory("1GiB", 2), (std::vector<int64_t>{int64_t{1} << 30, int64_t{1} << 30}));
  EXPECT_EQ(parse_rank_memory("0:2GiB,2:512MiB", 3), (std::vector<int64_t>{int64_t{2} << 30, 0, int64_t{512} << 20}));
  EXPECT_NE(error_of([] { parse_rank_memory("3:1GiB", 3); }).find("names rank 3 but ranks are 0..2"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_rank_memory("a:1GiB", 3); }).find("is not RANK:SIZE"), std::string::npos);
  EXPECT_NE(error_of([] { parse_rank_memory("0:lots", 3); }).find("'lots' is not a memory size"), std::string::npos);
}
