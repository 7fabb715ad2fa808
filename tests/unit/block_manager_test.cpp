#include "engine/block_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

namespace jarvis {
namespace {

TEST(BlockManager, GrowsByPages) {
  BlockManager bm(10, 16);
  EXPECT_EQ(bm.free_blocks(), 10);
  bm.ensure_capacity(7, 1);
  EXPECT_EQ(bm.block_table(7).size(), 1u);
  bm.ensure_capacity(7, 16);  // still one page
  EXPECT_EQ(bm.block_table(7).size(), 1u);
  bm.ensure_capacity(7, 17);
  EXPECT_EQ(bm.block_table(7).size(), 2u);
  EXPECT_EQ(bm.capacity(7), 32);
  bm.ensure_capacity(7, 5);  // never shrinks
  EXPECT_EQ(bm.block_table(7).size(), 2u);
  bm.ensure_capacity(7, 100);  // ceil(100 / 16) = 7
  EXPECT_EQ(bm.block_table(7).size(), 7u);
  EXPECT_EQ(bm.free_blocks(), 3);
  EXPECT_EQ(bm.used_blocks(), 7);
}

TEST(BlockManager, SequencesGetDisjointBlocks) {
  BlockManager bm(12, 4);
  bm.ensure_capacity(1, 10);
  bm.ensure_capacity(2, 13);
  bm.ensure_capacity(1, 16);
  std::set<int32_t> seen;
  for (int64_t s : {1, 2}) {
    for (int32_t b : bm.block_table(s)) {
      EXPECT_GE(b, 0);
      EXPECT_LT(b, 12);
      EXPECT_TRUE(seen.insert(b).second) << "block " << b << " handed out twice";
    }
  }
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_EQ(bm.free_blocks(), 4);
}

TEST(BlockManager, FreeReturnsBlocks) {
  BlockManager bm(4, 8);
  bm.ensure_capacity(1, 32);
  EXPECT_EQ(bm.free_blocks(), 0);
  const auto first = bm.block_table(1);
  bm.free(1);
  EXPECT_EQ(bm.free_blocks(), 4);
  EXPECT_FALSE(bm.has_sequence(1));
  EXPECT_THROW(bm.block_table(1), InvalidArgument);
  bm.free(1);  // unknown: ignored
  bm.ensure_capacity(2, 32);
  auto again = bm.block_table(2);
  EXPECT_EQ(again, first);
}

TEST(BlockManager, OutOfBlocksIsClearAndChangesNothing) {
  BlockManager bm(3, 16);
  bm.ensure_capacity(1, 20);
  EXPECT_TRUE(bm.can_allocate(2, 16));
  EXPECT_FALSE(bm.can_allocate(2, 17));
  try {
    bm.ensure_capacity(2, 40);
    FAIL() << "no throw";
  } catch (const OutOfBlocks& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("KV cache full"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 of 3 free"), std::string::npos) << msg;
  }
  EXPECT_EQ(bm.free_blocks(), 1);
  EXPECT_FALSE(bm.has_sequence(2));
  EXPECT_THROW(bm.ensure_capacity(1, 49), OutOfBlocks);
  EXPECT_EQ(bm.block_table(1).size(), 2u);
}

TEST(BlockManager, RejectsBadSizes) {
  EXPECT_THROW(BlockManager(0, 16), InvalidArgument);
  EXPECT_THROW(BlockManager(4, 0), InvalidArgument);
  BlockManager bm(2, 2);
  EXPECT_THROW(bm.ensure_capacity(1, -1), InvalidArgument);
}

TEST(BlockManager, PrefixCacheMatchesWholeChainsOnly) {
  BlockManager bm(16, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7};
  bm.ensure_capacity(1, 7);
  bm.register_full_blocks(1, a.data(), 7);  // 3 full blocks of 2
  EXPECT_EQ(bm.cached_blocks(), 3);
  // Same second block after a different first one: the chain differs, nothing matches.
  const std::vector<int32_t> b = {9, 9, 3, 4, 5, 6};
  EXPECT_EQ(bm.attach_cached_prefix(2, b.data(), 6, 10), 0);
  EXPECT_FALSE(bm.has_sequence(2));
  const std::vector<int32_t> shifted = {3, 4, 5, 6};  // a's 2nd and 3rd blocks, at the start
  EXPECT_EQ(bm.attach_cached_prefix(2, shifted.data(), 4, 10), 0);
  // Diverging in the third block: the first two match, are shared, and counted.
  const std::vector<int32_t> c = {1, 2, 3, 4, 5, 0, 7};
  EXPECT_EQ(bm.attach_cached_prefix(3, c.data(), 7, 10), 4);
  EXPECT_EQ(bm.block_table(3), std::vector<int32_t>(bm.block_table(1).begin(), bm.block_table(1).begin() + 2));
  EXPECT_EQ(bm.ref_count(bm.block_table(1)[0]), 2);
  EXPECT_EQ(bm.ref_count(bm.block_table(1)[2]), 1);
  EXPECT_EQ(bm.cache_hit_tokens(), 4);
  // max_blocks caps the match.
  EXPECT_EQ(bm.attach_cached_prefix(4, a.data(), 7, 1), 2);
  EXPECT_EQ(bm.used_blocks(), 4);  // 4 blocks of sequence 1, shared by 3 and 4
  bm.free(1);
  bm.free(3);
  bm.free(4);
  EXPECT_EQ(bm.used_blocks(), 0);
  EXPECT_EQ(bm.cached_blocks(), 3);  // content survives in the free pool
  EXPECT_EQ(bm.attach_cached_prefix(5, a.data(), 7, 10), 6);
  EXPECT_EQ(bm.used_blocks(), 3);
  EXPECT_THROW(bm.attach_cached_prefix(5, a.data(), 7, 10), InvalidArgument);  // holds blocks already
}

TEST(BlockManager, CachedBlocksAreEvictedLastAndThenForgotten) {
  BlockManager bm(4, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4};
  bm.ensure_capacity(1, 4);
  bm.register_full_blocks(1, a.data(), 4);
  bm.ensure_capacity(2, 4);  // unregistered
  const std::vector<int32_t> plain = bm.block_table(2);
  bm.free(2);
  bm.free(1);
  // Fresh allocations take the unregistered blocks first.
  bm.ensure_capacity(3, 4);
  EXPECT_EQ(bm.block_table(3), plain);
  EXPECT_EQ(bm.cached_blocks(), 2);
  // Then the cached ones, tail first, which lose their registration.
  bm.ensure_capacity(3, 6);
  EXPECT_EQ(bm.cached_blocks(), 1);
  EXPECT_EQ(bm.attach_cached_prefix(4, a.data(), 4, 2), 2);  // the head is still there
  bm.free(4);
  bm.ensure_capacity(3, 8);
  EXPECT_EQ(bm.cached_blocks(), 0);
  bm.free(3);
  EXPECT_EQ(bm.attach_cached_prefix(4, a.data(), 4, 2), 0);
}

}  // namespace
}  // namespace jarvis
