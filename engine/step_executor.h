// What runs one scheduled step and hands back logits: the local full model (StepRunner) or a
// pipeline ring whose rank 0 is this process (engine/pipeline/pipeline_executor.h). The engine
// only sees this interface, so the scheduler loop is the same for one rank and for N.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/sampling/sample_request.h"
#include "csrc/util/error.h"
#include "engine/scheduler.h"

namespace jarvis {

// The executor can run no more steps (a pipeline rank died, a link broke). The engine fails what
// is in flight with this text and stops taking requests; unlike other exceptions it is not retried.
class ExecutorBroken : public Error {
 public:
  using Error::Error;
};

// Steps go in with submit() and their logits come out with collect(), oldest first. An executor
// with max_in_flight() > 1 (a pipeline ring) keeps several steps (micro-batches) in flight, so
// its ranks work on different micro-batches at once; the local runner computes in submit().
class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  // How many steps may be submitted before the oldest is collected.
  virtual int max_in_flight() const { return 1; }
  // Starts the step. `rows` are indices into the step's tokens (concatenated in step order),
  // ascending, whose logits collect() returns. The caller keeps a sequence in at most one
  // step in flight (its next token needs this step's logits anyway).
  virtual void submit(const ScheduledStep& step, const std::vector<int>& rows) = 0;
  // Waits for the oldest submitted step not yet collected; returns its logits,
  // [rows.size(), vocab] (null when no rows), valid until the next collect().
  virtual const float* collect() = 0;
  // These sequences finished or were aborted; their blocks may go to others (a hint for ranks
  // that keep per-sequence state; block tables travel with every step anyway).
  virtual void release(const std::vector<int64_t>& seq_ids) { (void)seq_ids; }
  virtual int vocab() const = 0;

  // ---- Sampling on the executor's device (optional; default: not supported) ----
  virtual bool samples_on_device() const { return false; }
  // As submit(), and the rows named by requests[i].row (indices into `rows`, distinct) are sampled
  // where their logits are: collect() then returns [rows.size(), vocab] with only the other rows
  // filled, and samples() the results, one per request in request order.
  virtual void submit_sampled(const ScheduledStep& step, const std::vector<int>& rows,
                              const std::vector<SampleRequest>& requests) {
    (void)step, (void)rows, (void)requests;
    throw InvalidArgument("this executor does not sample on its device");
  }
  // The collected step's samples (empty after a plain submit()); valid until the next collect().
  virtual const std::vector<SampleResult>& samples() const {
    static const std::vector<SampleResult> kNone;
    return kNone;
  }

  // One step at a time: submit, then collect.
  const float* run_step(const ScheduledStep& step, const std::vector<int>& rows) {
    submit(step, rows);
    return collect();
  }
};

}  // namespace jarvis
