// Hands out the KV cache's blocks (pages) to sequences. Pure bookkeeping over block ids: it never
// touches cache memory, so the scheduler can plan with it and tests need no model.
//
// Prefix caching: a block whose page_size tokens are all computed may be registered under the
// chained hash of every token of its sequence up to the block's end. A later sequence whose tokens
// begin the same way attaches those blocks (shared, reference counted) instead of recomputing
// them. A block whose last reference goes keeps its registration while it sits in the free pool,
// and loses it only when the pool hands it out again: registered blocks are reused least recently
// freed first, unregistered ones before any registered one.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "csrc/util/error.h"

namespace jarvis {

// Not enough free blocks for a request. The scheduler catches it to preempt or queue.
class OutOfBlocks : public Error {
 public:
  using Error::Error;
};

class BlockManager {
 public:
  BlockManager(int num_blocks, int page_size);  // throws InvalidArgument for non-positive sizes

  int num_blocks() const { return num_blocks_; }
  int page_size() const { return page_size_; }
  // Blocks no sequence references (cached-but-unreferenced ones included: they can be reused).
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int used_blocks() const { return num_blocks_ - free_blocks(); }
  // Blocks needed to hold n_positions tokens.
  int blocks_for(int n_positions) const { return (n_positions + page_size_ - 1) / page_size_; }

  // Whether ensure_capacity(seq_id, n_positions) would succeed now.
  bool can_allocate(int64_t seq_id, int n_positions) const;
  // Grows the sequence's block table (creating the sequence if new) to cover positions
  // [0, n_positions). Never shrinks. All or nothing: throws OutOfBlocks, changing nothing, when
  // the free pool is too small.
  void ensure_capacity(int64_t seq_id, int n_positions);
  // Drops the sequence's references to its blocks and forgets it; unknown ids are ignored, so a
  // finish path can free unconditionally.
  void free(int64_t seq_id);

  bool has_sequence(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }
  // Throws InvalidArgument for an unknown sequence.
  const std::vector<int32_t>& block_table(int64_t seq_id) const;
  // Token positions the sequence's blocks can hold.
  int capacity(int64_t seq_id) const;
  // Sequences referencing the block (0 for a free one).
  int ref_count(int32_t block) const { return blocks_.at(static_cast<size_t>(block)).refs; }

  // Prefix caching. For a sequence that holds no blocks yet: attaches the registered blocks that
  // hold tokens[0, k * page_size) for the largest k <= max_blocks, and returns the number of
  // tokens they cover (0 when nothing matches; the sequence then holds no blocks).
  int attach_cached_prefix(int64_t seq_id, const int32_t* tokens, int n_tokens, int max_blocks);
  // Registers the sequence's full blocks among positions [0, n_computed), whose tokens are
  // tokens[0, n_computed), unless identical content is registered already. Blocks registered by
  // an earlier call are skipped, so call it after every step with the growing count.
  void register_full_blocks(int64_t seq_id, const int32_t* tokens, int n_computed);
  int cached_blocks() const { return static_cast<int>(by_hash_.size()); }
  int64_t cache_hit_tokens() const { return hit_tokens_; }  // tokens attached so far, in total

 private:
  struct Block {
    int refs = 0;
    bool registered = false;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;      // its page_size tokens, to rule out hash collisions
    std::list<int32_t>::iterator at;  // position in free_ while refs == 0
  };
  struct SeqBlocks {
    std::vector<int32_t> table;
    int n_hashed = 0;         // leading blocks whose chained hash is known (registered or attached)
    uint64_t last_hash = 0;   // chained hash through block n_hashed - 1
  };

  int needed(int64_t seq_id, int n_positions) const;
  int32_t take_free_block();
  void release(int32_t block);
  uint64_t chain_hash(uint64_t prev, const int32_t* tokens) const;

  int num_blocks_;
  int page_size_;
  std::vector<Block> blocks_;
  // Free pool, handed out from the front: unregistered blocks are pushed to the front, registered
  // ones to the back, so cached content is evicted last and least recently freed first.
  std::list<int32_t> free_;
  std::unordered_map<int64_t, SeqBlocks> seqs_;
  std::unordered_map<uint64_t, int32_t> by_hash_;
  int64_t hit_tokens_ = 0;
};

}  // namespace jarvis
