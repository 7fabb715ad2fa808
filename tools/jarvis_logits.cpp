// jarvis-logits: runs token ids through a (possibly partial) model via the paged KV cache and
// writes what the shard produces for every position: logits [seqs, n_tokens, vocab] (tail shard)
// and/or hidden states [seqs, n_tokens, hidden], as raw float32. The numerical reference tests
// compare these files against an independent NumPy forward pass.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/model/model.h"
#include "csrc/util/error.h"
#include "kernels/cpu/thread_pool.h"
#include "tools/model_flags.h"

namespace {

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    long v = std::stol(item, &used);
    if (used != item.size()) throw jarvis::InvalidArgument("bad token id '" + item + "'");
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

void write_f32(const std::string& path, const std::vector<float>& v) {
  std::ofstream o(path, std::ios::binary);
  o.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  if (!o) throw jarvis::Error("cannot write " + path);
}

std::vector<float> read_f32(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw jarvis::Error("cannot read " + path);
  if (static_cast<size_t>(in.tellg()) != n * sizeof(float)) {
    throw jarvis::InvalidArgument(path + ": expected " + std::to_string(n) + " floats");
  }
  std::vector<float> v(n);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
  return v;
}

// A field of /proc/self/status in kB (VmRSS: resident now, VmHWM: peak resident), -1 if absent.
long status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size() + 1, field + ":") == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

int run(int argc, char** argv) {
  CLI::App app{"Run token ids through a model shard; write per-position logits / hidden states"};
  std::string model_path, tokens_arg, out_path, in_hidden, out_hidden;
  bool report = false;
  int first_layer = 0, end_layer = -1, threads = 1, chunk = 0, decode = 0, seqs = 1, page_size = 16;
  app.add_option("--model", model_path, "GGUF file or HF directory")->required();
  jarvis::LoadOptions load;
  jarvis::tools::add_load_flags(app, load);
  app.add_option("--tokens", tokens_arg, "comma-separated token ids")->required();
  app.add_option("--first-layer", first_layer, "first layer of the shard");
  app.add_option("--end-layer", end_layer, "one past the last layer of the shard (-1: last)");
  app.add_option("--out", out_path, "write logits [seqs, n_tokens, vocab] here (loads the head)");
  app.add_option("--in-hidden", in_hidden, "read input hidden states instead of embedding tokens");
  app.add_option("--out-hidden", out_hidden, "write hidden states after the shard's layers");
  app.add_option("--threads", threads, "CPU threads");
  app.add_option("--chunk", chunk, "prefill in chunks of this many tokens (0: all at once)");
  app.add_option("--decode", decode, "feed the last N tokens one per step, as decoding does");
  app.add_option("--seqs", seqs, "run this many copies of the prompt as one batch");
  app.add_option("--page-size", page_size, "KV cache page size in tokens");
  app.add_flag("--report", report, "print loaded weight bytes and resident memory to stderr");
  CLI11_PARSE(app, argc, argv);

  const std::vector<int32_t> tokens = parse_tokens(tokens_arg);
  const int n = static_cast<int>(tokens.size());
  if (n == 0 || seqs < 1 || page_size < 1 || decode < 0 || decode > n || chunk < 0) {
    throw jarvis::InvalidArgument("need tokens, --seqs >= 1, --page-size >= 1, 0 <= --decode <= n");
  }
  if (out_path.empty() && out_hidden.empty()) throw jarvis::InvalidArgument("nothing to write: give --out and/or --out-hidden");

  jarvis::ShardSpec shard;
  shard.first_layer = first_layer;
  shard.end_layer = end_layer;
  shard.has_embedding = in_hidden.empty();
  shard.has_head = !out_path.empty();
  std::unique_ptr<jarvis::Model> model = jarvis::load_model(model_path, shard, load);
  const jarvis::ModelConfig& c = model->config();
  if (report) {
    std::cerr << "weights_bytes=" << model->weights().bytes() << " rss_kb=" << status_kb("VmRSS")
              << " hwm_kb=" << status_kb("VmHWM") << " layers=" << model->n_shard_layers() << "\n";
  }
  jarvis::cpu::ThreadPool pool(threads);

  // Blocks of all sequences interleaved and scrambled, so no sequence's pages are contiguous
  // or in order: page lookups through the block table are really exercised.
  const int blocks_per_seq = (n + page_size - 1) / page_size;
  const int num_blocks = blocks_per_seq * seqs + 1;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  for (int i = num_blocks - 1; i > 0; --i) std::swap(perm[i], perm[(i * 7919 + 13) % (i + 1)]);
  jarvis::KvCache kv = model->make_kv_cache(num_blocks, page_size);

  std::vector<float> hidden_in;
  if (!in_hidden.empty()) hidden_in = read_f32(in_hidden, static_cast<size_t>(seqs) * n * c.hidden);
  std::vector<float> logits_out(out_path.empty() ? 0 : static_cast<size_t>(seqs) * n * c.vocab_size);
  std::vector<float> hidden_out(out_hidden.empty() ? 0 : static_cast<size_t>(seqs) * n * c.hidden);

  // Steps: chunks of the prompt, then single tokens.
  std::vector<std::pair<int, int>> steps;  // (start, length)
  const int prefill = n - decode;
  const int chunk_len = chunk > 0 ? chunk : std::max(prefill, 1);
  for (int s = 0; s < prefill; s += chunk_len) steps.emplace_back(s, std::min(chunk_len, prefill - s));
  for (int s = prefill; s < n; ++s) steps.emplace_back(s, 1);

  std::vector<float> hidden, logits;
  for (const auto& [start, len] : steps) {
    jarvis::BatchView batch;
    hidden.assign(static_cast<size_t>(seqs) * len * c.hidden, 0.0f);
    for (int q = 0; q < seqs; ++q) {
      jarvis::SequenceSlice sl;
      sl.seq_id = q;
      sl.start_pos = start;
      sl.n_tokens = len;
      for (int b = 0; b < blocks_per_seq; ++b) sl.block_table.push_back(perm[b * seqs + q]);
      batch.seqs.push_back(sl);
      float* rows = hidden.data() + static_cast<size_t>(q) * len * c.hidden;
      if (hidden_in.empty()) {
        model->embed(tokens.data() + start, len, rows);
      } else {
        std::copy_n(hidden_in.data() + (static_cast<size_t>(q) * n + start) * c.hidden,
                    static_cast<size_t>(len) * c.hidden, rows);
      }
    }
    model->forward_layers(batch, hidden.data(), kv, pool);
    for (int q = 0; q < seqs; ++q) {
      const float* rows = hidden.data() + static_cast<size_t>(q) * len * c.hidden;
      if (!hidden_out.empty()) {
        std::copy_n(rows, static_cast<size_t>(len) * c.hidden,
                    hidden_out.data() + (static_cast<size_t>(q) * n + start) * c.hidden);
      }
      if (!logits_out.empty()) {
        model->compute_logits(rows, len, logits_out.data() + (static_cast<size_t>(q) * n + start) * c.vocab_size, pool);
      }
    }
  }
  if (!out_path.empty()) write_f32(out_path, logits_out);
  if (!out_hidden.empty()) write_f32(out_hidden, hidden_out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "jarvis-logits: error: " << e.what() << "\n";
    return 1;
  }
}
