// Tokenizer speed: encodes prompts of about 2,000 tokens cut from the test corpus and prints the
// median time per encode, and the time to decode them again.
//   jarvis-tokenizer-bench MODEL.gguf|HF_DIR [CORPUS]   (default corpus: tests/data/tokenizer_corpus.txt)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/tokenizer/tokenizer.h"
#include "csrc/tokenizer/tokenizer_loader.h"

namespace {

constexpr size_t kPromptTokens = 2000;
constexpr int kRepeats = 50;

double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [CORPUS]\n", argv[0]);
    return 2;
  }
  std::string corpus_path = argc > 2 ? argv[2] : "tests/data/tokenizer_corpus.txt";
  std::ifstream in(corpus_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", corpus_path.c_str());
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string corpus = ss.str();

  auto t0 = std::chrono::steady_clock::now();
  auto tok = jarvis::Tokenizer::create(jarvis::load_tokenizer_data(argv[1]));
  double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  // Consecutive corpus slices of ~kPromptTokens tokens each (sized by a first encode).
  std::vector<std::string> prompts;
  for (size_t start = 0; start < corpus.size() && prompts.size() < 20;) {
    size_t len = 4000;
    while (start + len < corpus.size() && tok->encode(corpus.substr(start, len), false, true).size() < kPromptTokens) {
      len += 1000;
    }
    prompts.push_back(corpus.substr(start, len));
    start += len;
  }
  std::vector<double> encode_ms, decode_ms;
  size_t tokens = 0;
  size_t bytes = 0;
  for (const std::string& p : prompts) bytes += p.size();
  for (int r = 0; r < kRepeats; ++r) {
    for (const std::string& p : prompts) {
      auto a = std::chrono::steady_clock::now();
      std::vector<int32_t> ids = tok->encode(p, false, true);
      auto b = std::chrono::steady_clock::now();
      std::string text = tok->decode(ids, false);
      auto c = std::chrono::steady_clock::now();
      encode_ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
      decode_ms.push_back(std::chrono::duration<double, std::milli>(c - b).count());
      if (r == 0) tokens += ids.size();
    }
  }
  std::printf("load %.1f ms; %zu prompts, %.0f tokens each on average (%.0f bytes)\n", load_ms, prompts.size(),
              static_cast<double>(tokens) / prompts.size(),
              static_cast<double>(bytes) / prompts.size());
  std::printf("encode median %.3f ms per prompt; decode median %.3f ms\n", median_ms(encode_ms), median_ms(decode_ms));
  return 0;
}
