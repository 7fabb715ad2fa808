// Runs a workload against a server: one thread per concurrent stream, each taking the next request
// once its (Poisson) arrival time has come, so at most `concurrency` requests are in flight.
#pragma once

#include <vector>

#include "benchmarks/serving/openai_stream_client.h"
#include "benchmarks/serving/workload.h"

namespace jarvis::bench {

struct RunOptions {
  int concurrency = 1;   // <= 0: unlimited (one stream per request, capped at kMaxStreams)
  int warmup = 0;        // requests sent (one at a time) and discarded before timing starts
  bool progress = false; // a progress line on stderr
};

constexpr int kMaxStreams = 1024;

struct RunOutput {
  std::vector<RequestResult> results;  // in workload order
  double duration_s = 0;               // start to the last completion
};

RunOutput run_benchmark(const EndpointConfig& endpoint, const std::vector<BenchRequest>& workload,
                        const RunOptions& options);

}  // namespace jarvis::bench
