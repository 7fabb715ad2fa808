#include "benchmarks/serving/workload.h"

#include <cmath>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "csrc/util/error.h"

namespace jarvis::bench {
namespace {

// Frequent English words: each one is a single token (with its leading space) in GPT-2-style
// byte-level BPE vocabularies, so N words come to about N tokens. Varied so that a prefix cache
// cannot serve one synthetic prompt from another.
const char* const kWords[] = {
    "the",    "of",     "and",    "to",     "in",     "is",     "that",   "for",    "it",
    "as",     "was",    "with",   "be",     "by",     "on",     "not",    "he",     "this",
    "are",    "or",     "his",    "from",   "at",     "which",  "but",    "have",   "an",
    "had",    "they",   "you",    "were",   "their",  "one",    "all",    "we",     "can",
    "her",    "has",    "there",  "been",   "if",     "more",   "when",   "will",   "would",
    "who",    "so",     "no",     "time",   "people", "year",   "way",    "day",    "man",
    "thing",  "woman",  "life",   "child",  "world",  "school", "state",  "family", "group",
    "country", "problem", "hand",  "part",   "place",  "case",   "week",   "company", "system",
    "program", "question", "work", "government", "number", "night", "point", "home", "water",
    "room",   "mother", "area",   "money",  "story",  "fact",   "month",  "lot",    "right",
    "study",  "book",   "eye",    "job",    "word",   "business", "issue", "side",  "kind",
    "head",   "house",  "service", "friend", "father", "power",  "hour",   "game",   "line",
    "end",    "member", "law",    "car",    "city",   "name",   "president", "team", "minute",
    "idea",   "body",   "information", "back", "parent", "face", "others", "level", "office",
    "door",   "health", "person", "art",    "war",    "history", "party", "result", "change",
    "morning", "reason", "research", "girl", "guy",   "moment", "air",    "teacher", "force",
    "education", "good", "new",   "first",  "last",   "long",   "great",  "little", "own",
    "other",  "old",    "big",    "high",   "different", "small", "large", "next",  "early",
    "young",  "important", "few", "public", "bad",    "same",   "able",   "make",   "know",
    "take",   "see",    "come",   "think",  "look",   "want",   "give",   "use",    "find",
    "tell",   "ask",    "seem",   "feel",   "try",    "leave",  "call",   "keep",   "run"};
constexpr size_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);

int parse_int(const std::string& text, const std::string& what) {
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw InvalidArgument(what + ": not an integer: '" + text + "'");
  return value;
}

int draw(const LengthRange& r, std::mt19937_64& rng) {
  if (r.min == r.max) return r.min;
  return std::uniform_int_distribution<int>(r.min, r.max)(rng);
}

struct DatasetEntry {
  std::string prompt;
  int max_tokens = 0;  // 0: use the spec's output length
};

std::vector<DatasetEntry> read_dataset(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open dataset");
  std::vector<DatasetEntry> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) throw InvalidArgument(where + ": not a JSON object");
    if (!j.contains("prompt") || !j["prompt"].is_string() || j["prompt"].get<std::string>().empty())
      throw InvalidArgument(where + ": needs a non-empty string \"prompt\"");
    DatasetEntry e;
    e.prompt = j["prompt"].get<std::string>();
    if (j.contains("max_tokens")) {
      if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int>() < 1)
        throw InvalidArgument(where + ": \"max_tokens\" must be a positive integer");
      e.max_tokens = j["max_tokens"].get<int>();
    }
    out.push_back(std::move(e));
  }
  if (out.empty()) throw InvalidArgument(path + ": dataset has no prompts");
  return out;
}

}  // namespace

LengthRange parse_length_range(const std::string& text) {
  LengthRange r;
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    r.min = r.max = parse_int(text, "length");
  } else {
    r.min = parse_int(text.substr(0, colon), "length range");
    r.max = parse_int(text.substr(colon + 1), "length range");
  }
  if (r.min < 1 || r.max < r.min)
    throw InvalidArgument("length range '" + text + "': need 1 <= a <= b");
  return r;
}

std::string synthetic_prompt(int tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, kNumWords - 1);
  std::string out;
  out.reserve(static_cast<size_t>(tokens) * 6);
  for (int i = 0; i < tokens; ++i) {
    if (i) out += ' ';
    out += kWords[pick(rng)];
  }
  return out;
}

std::vector<BenchRequest> make_workload(const WorkloadSpec& spec) {
  if (spec.num_requests < 1) throw InvalidArgument("number of requests must be >= 1");
  std::mt19937_64 rng(spec.seed);
  std::vector<DatasetEntry> dataset;
  if (!spec.dataset_path.empty()) dataset = read_dataset(spec.dataset_path);

  std::vector<BenchRequest> out(static_cast<size_t>(spec.num_requests));
  // Poisson arrivals: exponential gaps with mean 1/rate, drawn from their own stream so that the
  // prompts do not change with the rate.
  std::mt19937_64 arrivals(spec.seed ^ 0x9e3779b97f4a7c15ULL);
  std::exponential_distribution<double> gap(spec.request_rate > 0 ? spec.request_rate : 1.0);
  const bool poisson = spec.request_rate > 0 && std::isfinite(spec.request_rate);
  double t = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    BenchRequest& r = out[i];
    if (dataset.empty()) {
      r.input_len = draw(spec.input_len, rng);
      r.prompt = synthetic_prompt(r.input_len, rng());
      r.max_tokens = draw(spec.output_len, rng);
    } else {
      const DatasetEntry& e = dataset[i % dataset.size()];
      r.prompt = e.prompt;
      r.max_tokens = e.max_tokens > 0 ? e.max_tokens : draw(spec.output_len, rng);
    }
    if (poisson && i > 0) t += gap(arrivals);
    r.send_at_s = t;
  }
  return out;
}

}  // namespace jarvis::bench
