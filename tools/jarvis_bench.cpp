// jarvis-bench: a serving benchmark client for any OpenAI-compatible endpoint. Streams every
// request (SSE), times TTFT / ITL / TPOT / e2e on the client, prints a table and writes JSON.
// It links no engine code: it measures a server from the outside, as a user would.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>

#include <CLI/CLI.hpp>

#include "benchmarks/serving/bench_report.h"
#include "benchmarks/serving/bench_runner.h"
#include "benchmarks/serving/workload.h"
#include "csrc/util/error.h"

int main(int argc, char** argv) {
  using namespace jarvis::bench;
  CLI::App app{"Benchmark an OpenAI-compatible server: TTFT, ITL, TPOT, e2e latency, throughput"};
  EndpointConfig endpoint;
  WorkloadSpec spec;
  RunOptions run;
  std::string input_len = "128", output_len = "64", input_range, output_range, json_path;
  bool no_ignore_eos = false, no_usage = false;
  double rate = std::numeric_limits<double>::infinity();
  int concurrency = 0;
  app.add_option("--base-url", endpoint.base_url, "Server URL up to the API prefix")
      ->capture_default_str();
  app.add_option("--endpoint", endpoint.endpoint, "completions or chat")
      ->check(CLI::IsMember({"completions", "chat"}))
      ->capture_default_str();
  app.add_option("--model", endpoint.model, "Model name (default: first of GET /models)");
  app.add_option("--api-key", endpoint.api_key, "Bearer token (default: $OPENAI_API_KEY)");
  app.add_option("-n,--num-prompts", spec.num_requests, "Requests to send")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--concurrency", concurrency,
                 "Requests in flight at most (default: 1, or unlimited with --request-rate)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--request-rate", rate, "Poisson arrival rate in requests/s (default inf: all at once)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", spec.seed, "Seed for prompts, lengths and arrivals")->capture_default_str();
  app.add_option("--input-len", input_len, "Prompt tokens (approximately)")->capture_default_str();
  app.add_option("--output-len", output_len, "Output tokens (max_tokens)")->capture_default_str();
  app.add_option("--input-len-range", input_range, "Uniform prompt length a:b (inclusive)");
  app.add_option("--output-len-range", output_range, "Uniform output length a:b (inclusive)");
  app.add_option("--dataset", spec.dataset_path,
                 "JSONL of {\"prompt\": str, \"max_tokens\": int?} (cycled to --num-prompts)")
      ->check(CLI::ExistingFile);
  app.add_option("--temperature", endpoint.temperature)->capture_default_str();
  app.add_flag("--no-ignore-eos", no_ignore_eos, "Do not send ignore_eos (servers that reject it)");
  app.add_flag("--no-usage", no_usage, "Do not ask for stream_options.include_usage");
  app.add_option("--warmup", run.warmup, "Untimed requests sent first")->capture_default_str();
  app.add_option("--timeout", endpoint.timeout_s, "Per-request timeout in seconds")->capture_default_str();
  app.add_option("--json", json_path, "Write results (summary and per request) to this file");
  app.add_flag("--progress", run.progress, "Progress line on stderr (default: when it is a TTY)");
  CLI11_PARSE(app, argc, argv);

  try {
    endpoint.ignore_eos = !no_ignore_eos;
    endpoint.include_usage = !no_usage;
    if (endpoint.api_key.empty())
      if (const char* key = std::getenv("OPENAI_API_KEY")) endpoint.api_key = key;
    spec.input_len = parse_length_range(input_range.empty() ? input_len : input_range);
    spec.output_len = parse_length_range(output_range.empty() ? output_len : output_range);
    spec.request_rate = std::isfinite(rate) ? rate : 0.0;
    const bool rate_given = spec.request_rate > 0;
    run.concurrency = concurrency > 0 ? concurrency : (rate_given ? 0 : 1);
    run.progress = run.progress || isatty(STDERR_FILENO);
    if (endpoint.model.empty()) endpoint.model = OpenAiStreamClient(endpoint).first_model_id();

    const std::vector<BenchRequest> workload = make_workload(spec);
    const RunOutput output = run_benchmark(endpoint, workload, run);
    const BenchSummary summary = summarize_run(output.results, output.duration_s);

    RunDescription d;
    d.base_url = endpoint.base_url;
    d.endpoint = endpoint.endpoint;
    d.model = endpoint.model;
    d.concurrency = run.concurrency;
    d.request_rate = spec.request_rate;
    d.input = spec.dataset_path.empty() ? (input_range.empty() ? input_len : input_range)
                                        : "dataset:" + spec.dataset_path;
    d.output = output_range.empty() ? output_len : output_range;
    std::cout << format_table(summary, d) << std::flush;
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << to_json(summary, d, output.results).dump(2) << "\n";
      if (!f) throw jarvis::Error(json_path + ": cannot write");
    }
    return summary.failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "jarvis-bench: " << e.what() << "\n";
    return 2;
  }
}
