// What runs one scheduled step and hands back logits: the local full model (StepRunner) or a
// pipeline ring whose rank 0 is this process (engine/pipeline/pipeline_executor.h). The engine
// only sees this interface, so the scheduler loop is the same for one rank and for N.
#pragma once

#include <vector>

#include "csrc/util/error.h"
#include "engine/scheduler.h"

namespace jarvis {

// The executor can run no more steps (a pipeline rank died, a link broke). The engine fails what
// is in flight with this text and stops taking requests; unlike other exceptions it is not retried.
class ExecutorBroken : public Error {
 public:
  using Error::Error;
};

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  // Runs the step. `rows` are indices into the step's tokens (concatenated in step order),
  // ascending; returns their logits, [rows.size(), vocab], valid until the next run.
  virtual const float* run(const ScheduledStep& step, const std::vector<int>& rows) = 0;
  virtual int vocab() const = 0;
};

}  // namespace jarvis
