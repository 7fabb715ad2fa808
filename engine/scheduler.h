// Continuous-batching scheduler: decides, step by step, which tokens of which sequences the model
// runs, and keeps the KV block tables that go with them. Pure logic over token ids and block ids:
// it never touches the model, so it is tested without one (vLLM v1 / nano-vllm shape:
// schedule() -> step plan, run the model, update(outputs)).
//
// Per step, within max_batched_tokens: first one token for every running sequence that decodes,
// then prompt chunks (at most prefill_chunk tokens each) of running sequences still prefilling,
// then new sequences from the waiting queue, first come first served, while max_num_seqs allows.
// A sequence is admitted only when blocks for all its tokens so far are free, so prefill never
// runs out of blocks mid-prompt; decoding may, and then the most recently arrived running
// sequence is preempted: its blocks are freed and it goes back to the front of the waiting queue,
// to be recomputed later from its prompt and the tokens it generated.
//
// Micro-batches (pipeline rings): a planned sequence is "in flight" until update() gets its step
// back. schedule() may be called again meanwhile; it plans only sequences not in flight and never
// preempts one that is (its step is still being computed), so a sequence is in at most one
// in-flight step. `max_seqs` cuts the running batch into micro-batches.
#pragma once

#include <climits>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "csrc/model/kv_cache.h"
#include "engine/block_manager.h"

namespace jarvis {

struct SchedulerConfig {
  int max_num_seqs = 64;         // running sequences at most
  int max_batched_tokens = 512;  // tokens per step; >= max_num_seqs so every decode fits
  int prefill_chunk = 256;       // tokens of one sequence per step at most
  bool prefix_caching = true;    // attach cached blocks of identical token prefixes

  void validate() const;  // throws InvalidArgument naming the bad value
};

// One sequence's part of a step.
struct ScheduledSeq {
  int64_t seq_id = 0;
  std::vector<int32_t> tokens;       // fed this step, at positions [start_pos, start_pos + size)
  int start_pos = 0;
  std::vector<int32_t> block_table;  // covers at least start_pos + tokens.size() positions
  bool sample = false;  // the chunk reaches the sequence's last token: sample from its logits
};

// The plan of one step: a plain value (it can be sent to other pipeline ranks).
struct ScheduledStep {
  std::vector<ScheduledSeq> seqs;   // decodes first, then prefill chunks
  std::vector<int64_t> preempted;   // sent back to the waiting queue while planning this step

  bool empty() const { return seqs.empty(); }
  int total_tokens() const;
  BatchView batch_view() const;     // the model's view of the step (want_logits = sample)
};

// What the engine made of one scheduled sequence after the model ran.
struct SeqOutput {
  int64_t seq_id = 0;
  bool has_token = false;  // a token was sampled (only for ScheduledSeq::sample)
  int32_t token = 0;
  bool finished = false;   // the sequence is done: its blocks are freed
};

class Scheduler {
 public:
  // A pool of num_blocks KV blocks of page_size tokens. Throws InvalidArgument for a bad config.
  Scheduler(const SchedulerConfig& config, int num_blocks, int page_size);

  // Queues a new sequence. `cacheable` false keeps it off the prefix cache in both directions
  // (a request that wants logits of every prompt token must compute every prompt token).
  // Throws InvalidArgument for a known id, an empty prompt, or one longer than the whole cache.
  void add(int64_t seq_id, std::vector<int32_t> prompt, bool cacheable = true);
  // Plans the next step of at most `max_seqs` sequences, none of them in flight; empty when there
  // is nothing to run now. The planned sequences are in flight until update() gets the step.
  ScheduledStep schedule(int max_seqs = INT_MAX);
  // Applies the outputs of a step planned by schedule() (steps in flight may come back in any
  // order): every scheduled sequence advances by the tokens it was fed; sampled tokens are
  // appended; finished sequences leave and free their blocks.
  void update(const ScheduledStep& step, const std::vector<SeqOutput>& outputs);
  // Removes a sequence wherever it is and frees its blocks; unknown ids are ignored.
  void abort(int64_t seq_id);

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_in_flight() const { return in_flight_; }
  // Sequences a schedule() call could plan now: running ones not in flight, and waiting ones.
  int num_schedulable() const { return num_running() - in_flight_ + num_waiting(); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int64_t preemptions() const { return preemptions_; }
  const BlockManager& blocks() const { return blocks_; }
  const SchedulerConfig& config() const { return config_; }

  // A sequence's tokens: its prompt, then what it generated. Throws for an unknown id.
  const std::vector<int32_t>& prompt(int64_t seq_id) const { return get(seq_id).prompt; }
  const std::vector<int32_t>& output(int64_t seq_id) const { return get(seq_id).output; }
  int num_computed(int64_t seq_id) const { return get(seq_id).num_computed; }
  bool contains(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }

 private:
  struct Seq {
    int64_t id = 0;
    uint64_t arrival = 0;  // order of add(); preemption victims are the highest running
    std::vector<int32_t> prompt, output;
    std::vector<int32_t> all;  // prompt + output: what a recompute feeds
    int num_computed = 0;      // leading tokens whose K/V are in the cache
    bool cacheable = true;
    bool running = false;
    bool in_flight = false;    // planned in a step that update() has not had back yet
    int size() const { return static_cast<int>(all.size()); }
  };

  const Seq& get(int64_t seq_id) const;
  // Frees the blocks of running sequence `id` (not in flight) and requeues it; drops its entry
  // from `step` when it was already planned there (giving back its tokens to `budget`).
  int64_t preempt(int64_t id, ScheduledStep& step, int& budget);
  // The latest-arrived running sequence not in flight (the preemption victim); -1 when none.
  int64_t last_preemptable() const;
  bool admit_front(ScheduledStep& step, int& budget);
  void plan(Seq& seq, int n, ScheduledStep& step, int& budget);

  SchedulerConfig config_;
  BlockManager blocks_;
  std::unordered_map<int64_t, Seq> seqs_;
  std::vector<int64_t> running_;  // by arrival, oldest first
  std::deque<int64_t> waiting_;   // by arrival (preempted ones were admitted first: they lead)
  uint64_t next_arrival_ = 0;
  int64_t preemptions_ = 0;
  int in_flight_ = 0;             // sequences with in_flight set
};

}  // namespace jarvis
