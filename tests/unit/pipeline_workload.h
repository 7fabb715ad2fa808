// A pipeline workload for the ring tests: several groups of sequences (one micro-batch each),
// prompts prefilled in chunks beside other sequences' decodes, then greedy decode, with up to
// max_in_flight micro-batches in the ring at once. Every step also runs on a full model through
// StepRunner (one rank, no links); the logits of the ring must equal it bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/pipeline/pipeline_runner.h"
#include "engine/step_runner.h"

namespace jarvis::pipeline_test {

inline std::string model_path() { return std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }

// Layers [first, end) (end -1: to the last); `ends`: with the embedding and the head (rank 0).
inline ShardSpec shard(int first, int end, bool ends) {
  ShardSpec s;
  s.first_layer = first;
  s.end_layer = end;
  s.has_embedding = ends;
  s.has_head = ends;
  return s;
}

constexpr int kPageSize = 16;
constexpr int kBlocksPerSeq = 4;   // 64 positions: longest prompt + decode steps fit
constexpr int kSeqsPerGroup = 2;
constexpr int kNumBlocks = 64;

struct WorkloadStats {
  int steps = 0;
  int compared_rows = 0;
  int decode_tokens = 0;
};

struct TestSeq {
  int64_t id = 0;
  std::vector<int32_t> prompt, generated;
  int pos = 0;  // tokens whose K/V are in the cache
  std::vector<int32_t> blocks;
};

struct Group {
  std::vector<TestSeq> seqs;
  bool done(int decode_steps) const {
    for (const TestSeq& s : seqs) {
      if (static_cast<int>(s.generated.size()) < decode_steps) return false;
    }
    return true;
  }
};

inline int32_t argmax(const float* v, int n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

// Runs `n_groups` groups (slot g % max_in_flight's blocks; a later group reuses the blocks of a
// finished one after free_sequences) through `ring` and `reference` side by side.
inline WorkloadStats run_workload(PipelineRunner& ring, StepRunner& reference, int max_in_flight, int n_groups,
                                  int decode_steps, int chunk) {
  const int vocab = ring.vocab();
  std::vector<int32_t> block_ids(kNumBlocks);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::shuffle(block_ids.begin(), block_ids.end(), std::mt19937(3));  // tables are not 0, 1, 2, ...
  std::mt19937 rng(11);
  int64_t next_id = 100;
  auto make_group = [&](int slot) {
    Group g;
    for (int i = 0; i < kSeqsPerGroup; ++i) {
      TestSeq s;
      s.id = next_id++;
      const int len = 5 + static_cast<int>(rng() % 30);  // 5..34: one to five chunks
      for (int t = 0; t < len; ++t) s.prompt.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab)));
      const int base = (slot * kSeqsPerGroup + i) * kBlocksPerSeq;
      s.blocks.assign(block_ids.begin() + base, block_ids.begin() + base + kBlocksPerSeq);
      g.seqs.push_back(std::move(s));
    }
    return g;
  };
  auto next_step = [&](const Group& g) {
    ScheduledStep st;
    for (const TestSeq& s : g.seqs) {
      if (static_cast<int>(s.generated.size()) >= decode_steps) continue;
      ScheduledSeq q;
      q.seq_id = s.id;
      q.start_pos = s.pos;
      q.block_table = s.blocks;
      const int plen = static_cast<int>(s.prompt.size());
      if (s.pos < plen) {
        const int n = std::min(chunk, plen - s.pos);
        q.tokens.assign(s.prompt.begin() + s.pos, s.prompt.begin() + s.pos + n);
        q.sample = s.pos + n == plen;
      } else {
        q.tokens = {s.generated.back()};
        q.sample = true;
      }
      st.seqs.push_back(std::move(q));
    }
    return st;
  };

  WorkloadStats stats;
  std::vector<Group> groups;
  std::deque<int> ring_order;                 // slots in the ring, oldest first
  std::deque<ScheduledStep> submitted;        // their steps
  std::deque<std::vector<float>> expected;    // reference logits of those steps
  int started = 0;
  auto submit = [&](int slot) {
    ScheduledStep st = next_step(groups[static_cast<size_t>(slot)]);
    const std::vector<int> rows = PipelineRunner::sample_rows(st);
    const float* ref = reference.run_step(st, rows);
    expected.emplace_back(ref, ref + rows.size() * static_cast<size_t>(vocab));
    ring.submit(st, rows, static_cast<uint32_t>(slot));
    ring_order.push_back(slot);
    submitted.push_back(std::move(st));
  };
  for (int slot = 0; slot < max_in_flight && started < n_groups; ++slot, ++started) {
    groups.push_back(make_group(slot));
    submit(slot);
  }
  while (!ring_order.empty()) {
    const int slot = ring_order.front();
    ring_order.pop_front();
    const ScheduledStep st = std::move(submitted.front());
    submitted.pop_front();
    const std::vector<float> want = std::move(expected.front());
    expected.pop_front();
    const PipelineResult got = ring.collect();
    ++stats.steps;
    EXPECT_EQ(got.micro_batch, static_cast<uint32_t>(slot));
    EXPECT_EQ(got.logits.size(), want.size());
    if (got.logits.size() != want.size()) return stats;
    for (int r = 0; r < got.n_rows; ++r) {
      const size_t off = static_cast<size_t>(r) * static_cast<size_t>(vocab);
      EXPECT_EQ(std::memcmp(got.logits.data() + off, want.data() + off, vocab * sizeof(float)), 0)
          << "step " << got.step_id << " row " << r << ": ring logits differ from the one-rank run";
      ++stats.compared_rows;
    }
    // Advance the group with the ring's tokens (the reference gave the same, or the check failed).
    Group& g = groups[static_cast<size_t>(slot)];
    int row = 0;
    for (const ScheduledSeq& q : st.seqs) {
      TestSeq& s = *std::find_if(g.seqs.begin(), g.seqs.end(), [&](const TestSeq& t) { return t.id == q.seq_id; });
      s.pos += static_cast<int>(q.tokens.size());
      if (q.sample) {
        s.generated.push_back(argmax(got.logits.data() + static_cast<size_t>(row++) * vocab, vocab));
        if (q.tokens.size() == 1 && s.pos > static_cast<int>(s.prompt.size())) ++stats.decode_tokens;
      }
    }
    if (g.done(decode_steps)) {
      std::vector<int64_t> ids;
      for (const TestSeq& s : g.seqs) ids.push_back(s.id);
      ring.free_sequences(ids);
      if (started == n_groups) continue;
      ++started;
      g = make_group(slot);  // same blocks, stale K/V from the finished group in them
    }
    submit(slot);
  }
  ring.drain();
  return stats;
}

}  // namespace jarvis::pipeline_test
