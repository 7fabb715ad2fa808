// Hands out the KV cache's blocks (pages) to sequences. Pure bookkeeping over block ids: it never
// touches cache memory, so the scheduler can plan with it and tests need no model.
#pragma once

#include <cstdint>
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
  // Returns the sequence's blocks to the pool and forgets it; unknown ids are ignored, so a
  // finish path can free unconditionally.
  void free(int64_t seq_id);

  bool has_sequence(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  // Throws InvalidArgument for an unknown sequence.
  const std::vector<int32_t>& block_table(int64_t seq_id) const;
  // Token positions the sequence's blocks can hold.
  int capacity(int64_t seq_id) const;

 private:
  int needed(int64_t seq_id, int n_positions) const;

  int num_blocks_;
  int page_size_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::unordered_map<int64_t, std::vector<int32_t>> tables_;
};

}  // namespace jarvis
