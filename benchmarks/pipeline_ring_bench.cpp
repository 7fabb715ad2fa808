// Decode throughput of a 3-rank in-process pipeline ring (threads + in-process links) against one
// rank running the same sequences in one batch. Shows what micro-batches in flight buy: with M
// micro-batches, while one is on rank 1 another runs on rank 0 (the bubble is (D-1)/(D-1+M)).
// Needs as many free cores as ranks to show overlap; on fewer cores the ranks take turns.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <thread>

#include "engine/pipeline/pipeline_runner.h"
#include "engine/pipeline/stage_worker.h"
#include "engine/step_runner.h"
#include "transport/inproc_link.h"

using namespace jarvis;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kPage = 16;

ScheduledStep make_step(int64_t first_id, int n_seqs, int pos, int n_tokens, int blocks_per_seq, int32_t token) {
  ScheduledStep st;
  for (int i = 0; i < n_seqs; ++i) {
    ScheduledSeq q;
    q.seq_id = first_id + i;
    q.start_pos = pos;
    q.tokens.assign(static_cast<size_t>(n_tokens), token + i);
    for (int b = 0; b < blocks_per_seq; ++b) {
      q.block_table.push_back(static_cast<int32_t>((first_id + i) * blocks_per_seq + b));
    }
    q.sample = true;
    st.seqs.push_back(std::move(q));
  }
  return st;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pipeline ring decode throughput"};
  std::string model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf", split = "10,10,10";
  int mbs = 3, seqs = 4, prompt = 32, steps = 32, threads = 1;
  int one_rank_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--model", model_path);
  app.add_option("--split", split, "layers per rank, 3 ranks");
  app.add_option("--micro-batches", mbs);
  app.add_option("--seqs", seqs, "sequences per micro-batch");
  app.add_option("--prompt", prompt);
  app.add_option("--steps", steps, "decode rounds");
  app.add_option("--threads", threads, "threads per rank");
  app.add_option("--one-rank-threads", one_rank_threads, "threads of the one-rank baseline (default: all cores)");
  CLI11_PARSE(app, argc, argv);
  std::vector<int> sp;
  std::stringstream ss(split);
  for (std::string x; std::getline(ss, x, ',');) sp.push_back(std::stoi(x));
  if (sp.size() != 3) { std::fprintf(stderr, "--split wants 3 numbers\n"); return 2; }

  const int blocks_per_seq = (prompt + steps + kPage - 1) / kPage;
  const int num_blocks = mbs * seqs * blocks_per_seq;
  auto shard = [](int a, int b, bool head) {
    ShardSpec s;
    s.first_layer = a;
    s.end_layer = b;
    s.has_embedding = head;
    s.has_head = head;
    return s;
  };
  auto m0 = load_model(model_path, shard(0, sp[0], true));
  auto m1 = load_model(model_path, shard(sp[0], sp[0] + sp[1], false));
  auto m2 = load_model(model_path, shard(sp[0] + sp[1], sp[0] + sp[1] + sp[2], false));
  auto full = load_model(model_path);

  // One rank, all micro-batches as one batch.
  double one_rank_tps = 0;
  {
    StepRunner r(*full, num_blocks, kPage, one_rank_threads);
    const ScheduledStep pre = make_step(0, mbs * seqs, 0, prompt, blocks_per_seq, 100);
    r.run_step(pre, PipelineRunner::sample_rows(pre));
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) {
      const ScheduledStep st = make_step(0, mbs * seqs, prompt + s, 1, blocks_per_seq, 200);
      r.run_step(st, PipelineRunner::sample_rows(st));
    }
    one_rank_tps = mbs * seqs * steps / std::chrono::duration<double>(Clock::now() - t0).count();
  }

  StageWorker w1(*m1, num_blocks, kPage, threads), w2(*m2, num_blocks, kPage, threads);
  auto [a0, a1] = transport::make_inproc_link_pair();
  auto [b0, b1] = transport::make_inproc_link_pair();
  auto [c0, c1] = transport::make_inproc_link_pair();
  std::thread t1([&, in = std::move(a1), out = std::move(b0)]() mutable { w1.run(*in, *out); out.reset(); });
  std::thread t2([&, in = std::move(b1), out = std::move(c0)]() mutable { w2.run(*in, *out); out.reset(); });
  double ring_tps = 0;
  {
    PipelineOptions o;
    o.max_in_flight = mbs;
    PipelineRunner ring(*m0, num_blocks, kPage, threads, *a0, *c1, o);
    for (int m = 0; m < mbs; ++m) {
      const ScheduledStep pre = make_step(m * seqs, seqs, 0, prompt, blocks_per_seq, 100);
      ring.run(pre, PipelineRunner::sample_rows(pre));
    }
    const auto t0 = Clock::now();
    for (int m = 0; m < mbs; ++m) {
      const ScheduledStep st = make_step(m * seqs, seqs, prompt, 1, blocks_per_seq, 200);
      ring.submit(st, PipelineRunner::sample_rows(st), static_cast<uint32_t>(m));
    }
    for (int round = 1; round <= steps; ++round) {
      for (int m = 0; m < mbs; ++m) {
        ring.collect();
        if (round == steps) continue;
        const ScheduledStep st = make_step(m * seqs, seqs, prompt + round, 1, blocks_per_seq, 200);
        ring.submit(st, PipelineRunner::sample_rows(st), static_cast<uint32_t>(m));
      }
    }
    ring_tps = mbs * seqs * steps / std::chrono::duration<double>(Clock::now() - t0).count();
  }
  a0.reset();
  t1.join();
  t2.join();
  std::printf("split %s, %d micro-batches x %d seqs, prompt %d, %d decode rounds, %d thread(s)/rank, "
              "one rank %d thread(s), %u cores\n",
              split.c_str(), mbs, seqs, prompt, steps, threads, one_rank_threads, std::thread::hardware_concurrency());
  std::printf("one rank: %.1f tok/s   ring: %.1f tok/s   ratio %.2f\n", one_rank_tps, ring_tps,
              ring_tps / one_rank_tps);
  return 0;
}
