// Summary statistics of a serving benchmark run, as a table for people and JSON for scripts.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "benchmarks/serving/openai_stream_client.h"

namespace jarvis::bench {

struct Distribution {
  size_t count = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, min = 0, max = 0;
};

// Percentiles by linear interpolation between order statistics (NumPy's default method), so a
// script recomputing them from the per-request JSON gets the same numbers. Empty input: all 0.
Distribution summarize(std::vector<double> values);
double percentile(const std::vector<double>& sorted, double q);  // q in [0, 100]

struct BenchSummary {
  int requests = 0;
  int completed = 0;
  int failed = 0;
  int resent = 0;                 // sent again after the server closed a kept-alive connection
  double duration_s = 0;          // first send to last completion
  long long prompt_tokens = 0;    // server-reported (0 when the server does not report usage)
  long long output_tokens = 0;
  double request_throughput = 0;  // completed / duration
  double output_throughput = 0;   // output tokens / s
  double total_token_throughput = 0;  // (prompt + output) tokens / s
  Distribution ttft_s, tpot_s, itl_s, e2e_s;
  std::vector<std::string> first_errors;  // a few, for the report
};

// Only completed requests enter the latencies; TPOT is (e2e - ttft) / (output tokens - 1) for
// requests with more than one output token.
BenchSummary summarize_run(const std::vector<RequestResult>& results, double duration_s);

struct RunDescription {
  std::string base_url, endpoint, model;
  int concurrency = 0;     // 0: unlimited
  double request_rate = 0; // <= 0: all at once
  std::string input, output;  // lengths as given ("128", "32:256", "dataset:file")
};

std::string format_table(const BenchSummary& s, const RunDescription& d);
// Latencies in milliseconds; includes every request (with its ITLs) for independent checking.
nlohmann::json to_json(const BenchSummary& s, const RunDescription& d,
                       const std::vector<RequestResult>& results);

}  // namespace jarvis::bench
