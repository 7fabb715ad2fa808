#include "benchmarks/serving/bench_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

namespace jarvis::bench {
namespace {

nlohmann::json distribution_ms(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean * 1e3}, {"p50", d.p50 * 1e3}, {"p90", d.p90 * 1e3},
          {"p99", d.p99 * 1e3}, {"min", d.min * 1e3}, {"max", d.max * 1e3}};
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (rank - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

Distribution summarize(std::vector<double> values) {
  Distribution d;
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  d.count = values.size();
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.p50 = percentile(values, 50);
  d.p90 = percentile(values, 90);
  d.p99 = percentile(values, 99);
  d.min = values.front();
  d.max = values.back();
  return d;
}

BenchSummary summarize_run(const std::vector<RequestResult>& results, double duration_s) {
  BenchSummary s;
  s.requests = static_cast<int>(results.size());
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestResult& r : results) {
    if (r.resent) ++s.resent;
    if (!r.ok) {
      ++s.failed;
      if (s.first_errors.size() < 5) s.first_errors.push_back(r.error);
      continue;
    }
    ++s.completed;
    s.prompt_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    if (r.output_tokens > 1) tpot.push_back((r.e2e_s - r.ttft_s) / (r.output_tokens - 1));
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
  }
  s.ttft_s = summarize(std::move(ttft));
  s.tpot_s = summarize(std::move(tpot));
  s.itl_s = summarize(std::move(itl));
  s.e2e_s = summarize(std::move(e2e));
  if (duration_s > 0) {
    s.request_throughput = s.completed / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_token_throughput = static_cast<double>(s.prompt_tokens + s.output_tokens) / duration_s;
  }
  return s;
}

std::string format_table(const BenchSummary& s, const RunDescription& d) {
  std::ostringstream out;
  auto line = [&out](const std::string& key, const std::string& value) {
    out << "  " << key << std::string(key.size() < 34 ? 34 - key.size() : 1, ' ') << value << "\n";
  };
  out << "============ Serving benchmark ============\n";
  line("Endpoint:", d.base_url + " (" + d.endpoint + ")");
  line("Model:", d.model);
  line("Concurrency:", d.concurrency > 0 ? std::to_string(d.concurrency) : "unlimited");
  line("Request rate (req/s):", d.request_rate > 0 ? fmt("%.2f", d.request_rate) : "inf");
  line("Input / output length:", d.input + " / " + d.output);
  line("Successful requests:", std::to_string(s.completed) + " of " + std::to_string(s.requests));
  line("Failed requests:", std::to_string(s.failed));
  if (s.resent > 0) line("Resent (connection closed):", std::to_string(s.resent));
  line("Benchmark duration (s):", fmt("%.2f", s.duration_s));
  line("Total input tokens:", std::to_string(s.prompt_tokens));
  line("Total generated tokens:", std::to_string(s.output_tokens));
  line("Request throughput (req/s):", fmt("%.2f", s.request_throughput));
  line("Output token throughput (tok/s):", fmt("%.2f", s.output_throughput));
  line("Total token throughput (tok/s):", fmt("%.2f", s.total_token_throughput));
  out << "  " << std::string(41, '-') << "\n";
  out << "  latency (ms)         mean      p50      p90      p99\n";
  auto row = [&out](const char* name, const Distribution& x) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "  %-16s %8.2f %8.2f %8.2f %8.2f\n", name, x.mean * 1e3,
                  x.p50 * 1e3, x.p90 * 1e3, x.p99 * 1e3);
    out << buf;
  };
  row("TTFT", s.ttft_s);
  row("TPOT", s.tpot_s);
  row("ITL", s.itl_s);
  row("E2E", s.e2e_s);
  out << "===========================================\n";
  for (const std::string& e : s.first_errors) out << "  error: " << e << "\n";
  return out.str();
}

nlohmann::json to_json(const BenchSummary& s, const RunDescription& d,
                       const std::vector<RequestResult>& results) {
  nlohmann::json per_request = nlohmann::json::array();
  for (const RequestResult& r : results) {
    nlohmann::json itl = nlohmann::json::array();
    for (double v : r.itl_s) itl.push_back(v * 1e3);
    per_request.push_back({{"ok", r.ok}, {"error", r.error}, {"start_ms", r.start_s * 1e3},
                           {"ttft_ms", r.ttft_s * 1e3}, {"e2e_ms", r.e2e_s * 1e3},
                           {"itl_ms", itl}, {"output_tokens", r.output_tokens},
                           {"prompt_tokens", r.prompt_tokens},
                           {"usage_reported", r.usage_reported},
                           {"finish_reason", r.finish_reason}, {"resent", r.resent}});
  }
  return {
      {"config",
       {{"base_url", d.base_url}, {"endpoint", d.endpoint}, {"model", d.model},
        {"concurrency", d.concurrency}, {"request_rate", d.request_rate > 0 ? d.request_rate : 0.0},
        {"input", d.input}, {"output", d.output}}},
      {"requests", s.requests},
      {"completed", s.completed},
      {"failed", s.failed},
      {"resent", s.resent},
      {"duration_s", s.duration_s},
      {"total_input_tokens", s.prompt_tokens},
      {"total_output_tokens", s.output_tokens},
      {"request_throughput", s.request_throughput},
      {"output_throughput", s.output_throughput},
      {"total_token_throughput", s.total_token_throughput},
      {"ttft_ms", distribution_ms(s.ttft_s)},
      {"tpot_ms", distribution_ms(s.tpot_s)},
      {"itl_ms", distribution_ms(s.itl_s)},
      {"e2e_ms", distribution_ms(s.e2e_s)},
      {"errors", s.first_errors},
      {"per_request", per_request},
  };
}

}  // namespace jarvis::bench
