#include "engine/block_manager.h"

#include <string>

namespace jarvis {

BlockManager::BlockManager(int num_blocks, int page_size) : num_blocks_(num_blocks), page_size_(page_size) {
  if (num_blocks <= 0) throw InvalidArgument("KV cache needs at least one block, got " + std::to_string(num_blocks));
  if (page_size <= 0) throw InvalidArgument("KV page size must be positive, got " + std::to_string(page_size));
  free_.reserve(static_cast<size_t>(num_blocks));
  // Pushed in reverse so a fresh pool hands out 0, 1, 2, ...: easier to read in a debugger.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int BlockManager::needed(int64_t seq_id, int n_positions) const {
  if (n_positions < 0) throw InvalidArgument("negative position count " + std::to_string(n_positions));
  auto it = tables_.find(seq_id);
  const int have = it == tables_.end() ? 0 : static_cast<int>(it->second.size());
  const int want = blocks_for(n_positions);
  return want > have ? want - have : 0;
}

bool BlockManager::can_allocate(int64_t seq_id, int n_positions) const {
  return needed(seq_id, n_positions) <= free_blocks();
}

void BlockManager::ensure_capacity(int64_t seq_id, int n_positions) {
  const int more = needed(seq_id, n_positions);
  if (more > free_blocks()) {
    throw OutOfBlocks("KV cache full: sequence " + std::to_string(seq_id) + " needs " + std::to_string(more) +
                      " more blocks of " + std::to_string(page_size_) + " tokens for " +
                      std::to_string(n_positions) + " positions, " + std::to_string(free_blocks()) + " of " +
                      std::to_string(num_blocks_) + " free");
  }
  std::vector<int32_t>& table = tables_[seq_id];
  for (int i = 0; i < more; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
}

void BlockManager::free(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  // Reverse, so the next sequence gets the same blocks in the same order.
  for (auto b = it->second.rbegin(); b != it->second.rend(); ++b) free_.push_back(*b);
  tables_.erase(it);
}

const std::vector<int32_t>& BlockManager::block_table(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) throw InvalidArgument("no blocks for unknown sequence " + std::to_string(seq_id));
  return it->second;
}

int BlockManager::capacity(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? 0 : static_cast<int>(it->second.size()) * page_size_;
}

}  // namespace jarvis
