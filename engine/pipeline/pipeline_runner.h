// Rank 0's end of the pipeline ring: embeds a scheduled step, runs its own layers, sends the
// hidden state to rank 1, and when the record comes back from the last rank computes logits for
// the rows that want them. submit() and collect() are split so up to max_in_flight steps
// (micro-batches) can be in the ring at once: while rank 1 works on step m, rank 0 already runs
// step m+1. The ring keeps order, so collect() always returns the oldest outstanding step.
//
// Not thread-safe: one thread (the scheduler loop) calls submit / collect / free_sequences.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "csrc/model/model.h"
#include "engine/pipeline/stage_message.h"
#include "engine/scheduler.h"
#include "kernels/cpu/thread_pool.h"
#include "transport/link.h"

namespace jarvis {

// The ring failed: a worker reported an error (its text is in what()), a link broke or timed out,
// or a record came back that was not the one expected. The runner is unusable afterwards.
class PipelineError : public Error {
 public:
  using Error::Error;
};

struct PipelineOptions {
  int max_in_flight = 1;                                // steps between submit and collect
  std::chrono::milliseconds recv_timeout{30000};        // one step's round trip at most
};

struct PipelineResult {
  uint64_t step_id = 0;
  uint32_t micro_batch = 0;
  int n_rows = 0;
  std::vector<float> logits;  // [n_rows, vocab], rows in the order given to submit()
};

class PipelineRunner {
 public:
  // `model` must hold the embedding, the head and layers [0, end) for some end; num_blocks and
  // page_size must equal the workers' (block ids from rank 0's block manager index every rank's
  // cache). Links are borrowed: to_next goes to rank 1, from_last comes from the last rank.
  PipelineRunner(const Model& model, int num_blocks, int page_size, int threads, transport::Link& to_next,
                 transport::Link& from_last, PipelineOptions options = {});

  // Sends a kHello round the ring before the first step: every rank checks that it fits (model,
  // KV layout, its layers follow the previous rank's) and the ring must end at the model's last
  // layer. Returns each rank's [first, end) layers in ring order; throws PipelineError naming what
  // does not fit. Call with nothing in flight.
  std::vector<std::pair<int, int>> handshake();

  // Runs embed + own layers for `step` and sends it into the ring; returns its step id. `rows` are
  // indices into the step's tokens (concatenated in step order) whose logits collect() returns.
  // Throws InvalidArgument when max_in_flight steps are already outstanding or a row is outside
  // the step, PipelineError when the ring is broken.
  uint64_t submit(const ScheduledStep& step, std::vector<int> rows, uint32_t micro_batch = 0);

  // Waits for the oldest outstanding step to come back and returns its logits.
  // Throws InvalidArgument when none is outstanding, PipelineError for a ring failure.
  PipelineResult collect();

  // submit + collect, for a caller with one step at a time.
  PipelineResult run(const ScheduledStep& step, std::vector<int> rows) {
    submit(step, std::move(rows));
    return collect();
  }

  // Tells every rank these sequences finished. Sent in order with the steps; its echo is consumed
  // by a later collect() (or drain()).
  void free_sequences(const std::vector<int64_t>& seq_ids);
  // Waits until every record sent has come back (steps are dropped: call collect() first to keep them).
  void drain();

  int in_flight() const { return in_flight_; }
  int vocab() const { return model_.config().vocab_size; }
  const KvCache& kv() const { return kv_; }

  // Rows of the last token of every slice that wants logits: what sampling reads.
  static std::vector<int> sample_rows(const ScheduledStep& step);

 private:
  struct Outstanding {
    StageKind kind = StageKind::kStep;
    uint64_t step_id = 0;
    uint32_t micro_batch = 0;
    int n_tokens = 0;
    std::vector<int> rows;
  };
  void send(const std::vector<uint8_t>& record, uint32_t tag);
  // Receives the next record, checks it is `expect`'s echo, returns it decoded.
  StageRecord receive(const Outstanding& expect);
  [[noreturn]] void broken(const std::string& why);

  const Model& model_;
  cpu::ThreadPool pool_;
  KvCache kv_;
  transport::Link& to_next_;
  transport::Link& from_last_;
  PipelineOptions options_;
  StageLimits limits_;
  std::deque<Outstanding> outstanding_;  // in send order: the order records come back
  int in_flight_ = 0;                    // kStep entries in outstanding_
  uint64_t next_step_id_ = 1;
  std::string broken_;                   // set once the ring failed
  std::vector<int32_t> tokens_;
  std::vector<float> hidden_, selected_;
};

}  // namespace jarvis
