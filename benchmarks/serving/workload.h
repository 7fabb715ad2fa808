// What a serving benchmark sends and when: prompts (synthetic of a token length, or from a JSONL
// file), output lengths, and arrival times (all at once, or a seeded Poisson process).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jarvis::bench {

struct LengthRange {
  int min = 0;
  int max = 0;  // inclusive; min == max is a fixed length
};

// "a:b" (inclusive) or "n". Throws InvalidArgument.
LengthRange parse_length_range(const std::string& text);

struct WorkloadSpec {
  int num_requests = 32;
  LengthRange input_len{128, 128};
  LengthRange output_len{64, 64};
  std::string dataset_path;        // JSONL {"prompt": str, "max_tokens": int?}; overrides input_len
  double request_rate = 0.0;       // requests/s of a Poisson process; <= 0 or inf: all at time 0
  uint64_t seed = 0;
};

struct BenchRequest {
  std::string prompt;
  int input_len = 0;      // tokens asked for (synthetic) or 0 when unknown (dataset)
  int max_tokens = 0;
  double send_at_s = 0;   // offset from the start of the run
};

// Deterministic for a given spec (seed). Throws InvalidArgument / Error on a bad dataset file.
std::vector<BenchRequest> make_workload(const WorkloadSpec& spec);

// About `tokens` tokens of English text: common words that byte-level BPE vocabularies of the
// GPT-2 family (SmolLM2's included) hold as single tokens with their leading space.
std::string synthetic_prompt(int tokens, uint64_t seed);

}  // namespace jarvis::bench
