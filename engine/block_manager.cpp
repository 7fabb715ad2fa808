#include "engine/block_manager.h"

#include <algorithm>
#include <string>

namespace jarvis {
namespace {

// splitmix64's finaliser: a bijective mix, so distinct inputs of one step never collide.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

BlockManager::BlockManager(int num_blocks, int page_size)
    : num_blocks_(num_blocks), page_size_(page_size) {
  if (num_blocks <= 0) throw InvalidArgument("KV cache needs at least one block, got " + std::to_string(num_blocks));
  if (page_size <= 0) throw InvalidArgument("KV page size must be positive, got " + std::to_string(page_size));
  blocks_.resize(static_cast<size_t>(num_blocks));
  // A fresh pool hands out 0, 1, 2, ...: easier to read in a debugger.
  for (int32_t b = 0; b < num_blocks; ++b) blocks_[b].at = free_.insert(free_.end(), b);
}

int BlockManager::needed(int64_t seq_id, int n_positions) const {
  if (n_positions < 0) throw InvalidArgument("negative position count " + std::to_string(n_positions));
  auto it = seqs_.find(seq_id);
  const int have = it == seqs_.end() ? 0 : static_cast<int>(it->second.table.size());
  const int want = blocks_for(n_positions);
  return want > have ? want - have : 0;
}

bool BlockManager::can_allocate(int64_t seq_id, int n_positions) const {
  return needed(seq_id, n_positions) <= free_blocks();
}

int32_t BlockManager::take_free_block() {
  const int32_t b = free_.front();
  free_.pop_front();
  Block& block = blocks_[b];
  if (block.registered) {  // evicted: its content is about to be overwritten
    auto it = by_hash_.find(block.hash);
    if (it != by_hash_.end() && it->second == b) by_hash_.erase(it);
    block.registered = false;
    block.tokens.clear();
  }
  block.refs = 1;
  return b;
}

void BlockManager::release(int32_t b) {
  Block& block = blocks_[b];
  if (--block.refs > 0) return;
  block.at = block.registered ? free_.insert(free_.end(), b) : free_.insert(free_.begin(), b);
}

void BlockManager::ensure_capacity(int64_t seq_id, int n_positions) {
  const int more = needed(seq_id, n_positions);
  if (more > free_blocks()) {
    throw OutOfBlocks("KV cache full: sequence " + std::to_string(seq_id) + " needs " + std::to_string(more) +
                      " more blocks of " + std::to_string(page_size_) + " tokens for " +
                      std::to_string(n_positions) + " positions, " + std::to_string(free_blocks()) + " of " +
                      std::to_string(num_blocks_) + " free");
  }
  std::vector<int32_t>& table = seqs_[seq_id].table;
  for (int i = 0; i < more; ++i) table.push_back(take_free_block());
}

void BlockManager::free(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  // Last block first: unregistered blocks go to the front of the pool, so the next sequence gets
  // the same blocks in the same order; registered ones go to the back with the sequence's tail
  // ahead of its head, so a shared prefix outlives the suffixes hanging off it.
  const std::vector<int32_t>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) release(*b);
  seqs_.erase(it);
}

const std::vector<int32_t>& BlockManager::block_table(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) throw InvalidArgument("no blocks for unknown sequence " + std::to_string(seq_id));
  return it->second.table;
}

int BlockManager::capacity(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? 0 : static_cast<int>(it->second.table.size()) * page_size_;
}

uint64_t BlockManager::chain_hash(uint64_t prev, const int32_t* tokens) const {
  uint64_t h = mix64(prev ^ 0x9e3779b97f4a7c15ULL);
  for (int i = 0; i < page_size_; ++i) h = mix64(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

int BlockManager::attach_cached_prefix(int64_t seq_id, const int32_t* tokens, int n_tokens, int max_blocks) {
  if (seqs_.count(seq_id) != 0) {
    throw InvalidArgument("attach_cached_prefix: sequence " + std::to_string(seq_id) + " already holds blocks");
  }
  const int limit = std::min(max_blocks, n_tokens / page_size_);
  SeqBlocks seq;
  for (int i = 0; i < limit; ++i) {
    const int32_t* block_tokens = tokens + static_cast<size_t>(i) * page_size_;
    const uint64_t h = chain_hash(seq.last_hash, block_tokens);
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) break;
    Block& block = blocks_[it->second];
    if (!std::equal(block.tokens.begin(), block.tokens.end(), block_tokens)) break;
    if (block.refs++ == 0) free_.erase(block.at);
    seq.table.push_back(it->second);
    seq.n_hashed = i + 1;
    seq.last_hash = h;
  }
  if (seq.table.empty()) return 0;
  const int covered = static_cast<int>(seq.table.size()) * page_size_;
  hit_tokens_ += covered;
  seqs_.emplace(seq_id, std::move(seq));
  return covered;
}

void BlockManager::register_full_blocks(int64_t seq_id, const int32_t* tokens, int n_computed) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  SeqBlocks& seq = it->second;
  const int full = std::min(n_computed / page_size_, static_cast<int>(seq.table.size()));
  for (int i = seq.n_hashed; i < full; ++i) {
    const int32_t* block_tokens = tokens + static_cast<size_t>(i) * page_size_;
    seq.last_hash = chain_hash(seq.last_hash, block_tokens);
    seq.n_hashed = i + 1;
    if (by_hash_.count(seq.last_hash) != 0) continue;  // another block holds the same content
    Block& block = blocks_[seq.table[i]];
    if (block.registered) continue;
    block.registered = true;
    block.hash = seq.last_hash;
    block.tokens.assign(block_tokens, block_tokens + page_size_);
    by_hash_.emplace(seq.last_hash, seq.table[i]);
  }
}

}  // namespace jarvis
