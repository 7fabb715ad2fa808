// Scheduler tests without a model. A fake model stands in for the forward pass: it writes each fed
// token into a simulated paged KV cache through the step's block tables, and "samples" the next
// token as a hash of the whole context read back through those tables. So a wrong block table, a
// shared block that gets overwritten, or a recompute that feeds the wrong tokens changes the
// output, which is compared with the same hash chain computed directly from the prompt.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string>

namespace jarvis {
namespace {

int32_t next_token(const std::vector<int32_t>& context) {
  uint64_t h = 1469598103934665603ULL;
  for (int32_t t : context) h = (h ^ static_cast<uint32_t>(t)) * 1099511628211ULL;
  return static_cast<int32_t>(h % 1000);
}

// The tokens a sequence generates when nothing else runs: the reference for every test.
std::vector<int32_t> expected_output(std::vector<int32_t> context, int max_tokens) {
  std::vector<int32_t> out;
  for (int i = 0; i < max_tokens; ++i) {
    out.push_back(next_token(context));
    context.push_back(out.back());
  }
  return out;
}

std::vector<int32_t> make_prompt(int n, int seed) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((seed * 131 + i * 7) % 997);
  return p;
}

class FakeModel {
 public:
  FakeModel(int num_blocks, int page_size)
      : page_(page_size), slots_(static_cast<size_t>(num_blocks) * page_size, -1) {}

  // Runs a step; returns the sampled token of every sequence with sample set.
  std::map<int64_t, int32_t> run(const ScheduledStep& step) {
    std::map<int64_t, int32_t> sampled;
    for (const ScheduledSeq& s : step.seqs) {
      for (size_t i = 0; i < s.tokens.size(); ++i) slot(s.block_table, s.start_pos + static_cast<int>(i)) = s.tokens[i];
    }
    for (const ScheduledSeq& s : step.seqs) {
      if (!s.sample) continue;
      std::vector<int32_t> context;
      const int end = s.start_pos + static_cast<int>(s.tokens.size());
      for (int p = 0; p < end; ++p) context.push_back(slot(s.block_table, p));
      sampled[s.seq_id] = next_token(context);
    }
    return sampled;
  }

 private:
  int32_t& slot(const std::vector<int32_t>& table, int pos) {
    const size_t block = static_cast<size_t>(table.at(static_cast<size_t>(pos / page_)));
    return slots_.at(block * page_ + pos % page_);
  }
  int page_;
  std::vector<int32_t> slots_;
};

// Drives a scheduler with the fake model; records what every step looked like.
struct Driver {
  Scheduler sched;
  FakeModel model;
  std::map<int64_t, int> max_tokens;
  std::map<int64_t, std::vector<int32_t>> outputs;  // of finished sequences
  std::vector<ScheduledStep> steps;
  std::vector<std::vector<bool>> decodes;  // per step and entry: a true decode (not a prompt chunk)

  Driver(const SchedulerConfig& c, int num_blocks, int page_size)
      : sched(c, num_blocks, page_size), model(num_blocks, page_size) {}

  void add(int64_t id, std::vector<int32_t> prompt, int max_tok, bool cacheable = true) {
    sched.add(id, std::move(prompt), cacheable);
    max_tokens[id] = max_tok;
  }

  // One step; false when there was nothing to run.
  bool step() {
    ScheduledStep st = sched.schedule();
    if (st.empty()) return false;
    std::vector<bool> dec;
    for (const ScheduledSeq& s : st.seqs) {
      const int64_t len = static_cast<int64_t>(sched.prompt(s.seq_id).size() + sched.output(s.seq_id).size());
      dec.push_back(!sched.output(s.seq_id).empty() && s.start_pos == len - 1);
    }
    decodes.push_back(dec);
    std::map<int64_t, int32_t> sampled = model.run(st);
    std::vector<SeqOutput> outs;
    for (const auto& [id, tok] : sampled) {
      SeqOutput o;
      o.seq_id = id;
      o.has_token = true;
      o.token = tok;
      o.finished = static_cast<int>(sched.output(id).size()) + 1 >= max_tokens[id];
      if (o.finished) {
        outputs[id] = sched.output(id);
        outputs[id].push_back(tok);
      }
      outs.push_back(o);
    }
    sched.update(st, outs);
    steps.push_back(std::move(st));
    return true;
  }

  void run_all(int max_steps = 10000) {
    for (int i = 0; i < max_steps && sched.has_work(); ++i) ASSERT_TRUE(step()) << "stalled with work left";
    ASSERT_FALSE(sched.has_work()) << "did not finish in " << max_steps << " steps";
  }
};

SchedulerConfig config(int max_seqs, int max_tokens, int chunk, bool prefix = false) {
  SchedulerConfig c;
  c.max_num_seqs = max_seqs;
  c.max_batched_tokens = max_tokens;
  c.prefill_chunk = chunk;
  c.prefix_caching = prefix;
  return c;
}

TEST(Scheduler, ChunksPromptAndSamplesOnlyTheLastChunk) {
  Driver d(config(4, 8, 4), 64, 4);
  d.add(1, make_prompt(10, 1), 3);
  ScheduledStep s = d.sched.schedule();
  ASSERT_EQ(s.seqs.size(), 1u);
  EXPECT_EQ(s.seqs[0].start_pos, 0);
  EXPECT_EQ(s.seqs[0].tokens.size(), 4u);
  EXPECT_FALSE(s.seqs[0].sample);
  EXPECT_EQ(s.seqs[0].block_table.size(), 3u);  // all 10 prompt tokens reserved at admission
  d.sched.update(s, {});
  s = d.sched.schedule();
  EXPECT_EQ(s.seqs[0].start_pos, 4);
  EXPECT_FALSE(s.seqs[0].sample);
  d.sched.update(s, {});
  d.add(2, make_prompt(3, 2), 3);
  s = d.sched.schedule();
  ASSERT_EQ(s.seqs.size(), 2u);
  EXPECT_EQ(s.seqs[0].seq_id, 1);  // the running prompt's last chunk first, then the new one
  EXPECT_EQ(s.seqs[0].start_pos, 8);
  EXPECT_EQ(s.seqs[0].tokens.size(), 2u);
  EXPECT_TRUE(s.seqs[0].sample);
  EXPECT_EQ(s.seqs[1].seq_id, 2);
  EXPECT_EQ(s.seqs[1].tokens.size(), 3u);
  EXPECT_TRUE(s.seqs[1].sample);
  EXPECT_THROW(d.sched.update(s, {}), InvalidArgument);  // sampled sequences need a token
}

TEST(Scheduler, DecodesComeFirstAndBudgetsHold) {
  const int kBudget = 16, kChunk = 6, kMaxSeqs = 5;
  Driver d(config(kMaxSeqs, kBudget, kChunk), 400, 4);
  for (int i = 0; i < 12; ++i) d.add(i, make_prompt(3 + 5 * i, i), 4 + i % 5);
  d.run_all();
  for (size_t k = 0; k < d.steps.size(); ++k) {
    const ScheduledStep& st = d.steps[k];
    EXPECT_LE(st.total_tokens(), kBudget);
    EXPECT_LE(static_cast<int>(st.seqs.size()), kMaxSeqs);
    bool seen_chunk = false;
    for (size_t i = 0; i < st.seqs.size(); ++i) {
      EXPECT_GE(st.seqs[i].tokens.size(), 1u);
      EXPECT_LE(static_cast<int>(st.seqs[i].tokens.size()), kChunk);
      if (d.decodes[k][i]) {
        EXPECT_EQ(st.seqs[i].tokens.size(), 1u);
        EXPECT_FALSE(seen_chunk) << "step " << k << ": a decode after a prompt chunk";
      } else {
        seen_chunk = true;
      }
    }
  }
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(d.outputs[i], expected_output(make_prompt(3 + 5 * i, i), 4 + i % 5)) << "sequence " << i;
  }
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
  EXPECT_EQ(d.sched.preemptions(), 0);
}

TEST(Scheduler, RunningSequencesDecodeEveryStepWhileAPromptIsChunked) {
  Driver d(config(4, 10, 8), 200, 4);
  d.add(1, make_prompt(3, 1), 40);
  d.add(2, make_prompt(5, 2), 40);
  for (int i = 0; i < 3; ++i) d.step();
  d.add(3, make_prompt(100, 3), 2);
  const size_t first = d.steps.size();
  while (d.sched.contains(3) && d.sched.output(3).empty()) d.step();
  const size_t prefill_steps = d.steps.size() - first;
  EXPECT_GE(prefill_steps, 100u / 8);  // the prompt needed many chunks...
  for (size_t i = first; i < d.steps.size(); ++i) {
    std::set<int64_t> decoded;
    for (const ScheduledSeq& s : d.steps[i].seqs) {
      if (s.seq_id != 3) {
        EXPECT_EQ(s.tokens.size(), 1u);
        decoded.insert(s.seq_id);
      }
    }
    EXPECT_EQ(decoded, (std::set<int64_t>{1, 2})) << "step " << i;  // ...and 1, 2 never paused
  }
}

TEST(Scheduler, PreemptsLatestArrivalAndRecomputesIt) {
  // 4-token pages, 8 blocks. Three 6-token prompts take 2 blocks each; as they decode past 8
  // tokens each needs a third, and the pool runs dry.
  Driver d(config(4, 16, 16), 8, 4);
  for (int i = 0; i < 3; ++i) d.add(i, make_prompt(6, i), 12);
  bool checked_first = false;
  while (d.sched.has_work()) {
    ASSERT_TRUE(d.step());
    const ScheduledStep& st = d.steps.back();
    if (!st.preempted.empty() && !checked_first) {
      EXPECT_EQ(st.preempted[0], 2) << "victim must be the most recently arrived";
      checked_first = true;
    }
    for (const ScheduledSeq& s : st.seqs) {
      for (int64_t p : st.preempted) EXPECT_NE(s.seq_id, p) << "a preempted sequence ran";
    }
  }
  EXPECT_TRUE(checked_first);
  EXPECT_GT(d.sched.preemptions(), 0);
  // The victim was recomputed from position 0 with its prompt and generated tokens.
  bool recomputed = false;
  for (const ScheduledStep& st : d.steps) {
    for (const ScheduledSeq& s : st.seqs) recomputed |= s.seq_id == 2 && s.start_pos == 0 && s.tokens.size() > 6;
  }
  EXPECT_TRUE(recomputed);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(d.outputs[i], expected_output(make_prompt(6, i), 12)) << "sequence " << i;
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
}

TEST(Scheduler, HeavyPreemptionStillFinishesEverythingCorrectly) {
  for (bool prefix : {false, true}) {
    Driver d(config(8, 24, 5, prefix), 12, 4);
    for (int i = 0; i < 16; ++i) d.add(i, make_prompt(2 + (i * 5) % 17, i % 5), 3 + (i * 7) % 23);
    d.run_all();
    EXPECT_GT(d.sched.preemptions(), 0);
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(d.outputs[i], expected_output(make_prompt(2 + (i * 5) % 17, i % 5), 3 + (i * 7) % 23))
          << "sequence " << i << " prefix caching " << prefix;
    }
    EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
  }
}

TEST(Scheduler, AbortFreesBlocksWhereverTheSequenceIs) {
  Driver d(config(2, 32, 32), 20, 4);
  d.add(1, make_prompt(9, 1), 50);
  d.add(2, make_prompt(9, 2), 50);
  d.add(3, make_prompt(9, 3), 50);  // waits: max_num_seqs is 2
  d.step();
  d.step();
  EXPECT_EQ(d.sched.num_running(), 2);
  EXPECT_EQ(d.sched.num_waiting(), 1);
  EXPECT_GT(d.sched.blocks().used_blocks(), 0);
  d.sched.abort(3);
  d.sched.abort(1);
  EXPECT_FALSE(d.sched.contains(1));
  EXPECT_EQ(d.sched.num_waiting(), 0);
  EXPECT_EQ(d.sched.blocks().used_blocks(), d.sched.blocks().blocks_for(9 + 1));
  d.sched.abort(2);
  d.sched.abort(42);  // unknown: ignored
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
  EXPECT_FALSE(d.sched.has_work());
  EXPECT_TRUE(d.sched.schedule().empty());
}

TEST(Scheduler, FirstComeFirstServedWithoutStarvation) {
  // A steady stream of short requests must not keep an earlier long one waiting.
  Driver d(config(3, 8, 4), 16, 4);
  d.add(0, make_prompt(2, 0), 30);
  d.add(1, make_prompt(2, 1), 30);
  d.add(2, make_prompt(2, 2), 30);
  d.add(100, make_prompt(40, 9), 5);  // needs 10 of the 16 blocks: waits for room
  int64_t next = 3;
  int steps = 0;
  bool seen100 = false;
  while (d.sched.contains(100) && steps < 2000) {
    if (steps % 2 == 0) {
      d.add(next, make_prompt(2, static_cast<int>(next)), 3);
      ++next;
    }
    d.step();
    ++steps;
    for (const ScheduledSeq& s : d.steps.back().seqs) {
      if (s.seq_id == 100) seen100 = true;
      if (s.seq_id > 2 && s.seq_id != 100) {
        EXPECT_TRUE(seen100) << s.seq_id << " overtook an earlier request";
      }
    }
  }
  EXPECT_FALSE(d.sched.contains(100)) << "the long request starved";
  EXPECT_EQ(d.outputs[100], expected_output(make_prompt(40, 9), 5));
}

TEST(Scheduler, PrefixCachingSharesFullBlocks) {
  Driver d(config(4, 64, 64, true), 32, 4);
  std::vector<int32_t> shared = make_prompt(13, 5);
  std::vector<int32_t> other = shared;
  other.push_back(777);
  other.push_back(778);
  d.add(1, shared, 20);
  d.step();  // prompt 1 computed: its 3 full blocks are registered
  d.add(2, other, 20);
  d.add(3, shared, 20, /*cacheable=*/false);
  ScheduledStep st = d.sched.schedule();
  const ScheduledSeq* s2 = nullptr;
  const ScheduledSeq* s3 = nullptr;
  for (const ScheduledSeq& s : st.seqs) {
    if (s.seq_id == 2) s2 = &s;
    if (s.seq_id == 3) s3 = &s;
  }
  ASSERT_TRUE(s2 && s3);
  EXPECT_EQ(s2->start_pos, 12);  // 3 cached blocks: only the last 3 tokens are computed
  EXPECT_EQ(s3->start_pos, 0);   // not cacheable
  const std::vector<int32_t>& t1 = d.sched.blocks().block_table(1);
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(s2->block_table[b], t1[b]);
    EXPECT_EQ(d.sched.blocks().ref_count(t1[b]), 2);
  }
  EXPECT_EQ(d.sched.blocks().cache_hit_tokens(), 12);
  // Finish the plan by hand, then run to the end: outputs are those of unshared runs.
  std::map<int64_t, int32_t> sampled = d.model.run(st);
  std::vector<SeqOutput> outs;
  for (const auto& [id, tok] : sampled) outs.push_back({id, true, tok, false});
  d.sched.update(st, outs);
  d.run_all();
  EXPECT_EQ(d.outputs[1], expected_output(shared, 20));
  EXPECT_EQ(d.outputs[2], expected_output(other, 20));
  EXPECT_EQ(d.outputs[3], expected_output(shared, 20));
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
  EXPECT_GT(d.sched.blocks().cached_blocks(), 0);  // kept for later requests
}

TEST(Scheduler, FullyCachedPromptStillComputesItsLastToken) {
  Driver d(config(4, 64, 64, true), 32, 4);
  const std::vector<int32_t> prompt = make_prompt(12, 3);  // exactly 3 pages
  d.add(1, prompt, 2);
  d.run_all();
  d.add(2, prompt, 2);
  ScheduledStep st = d.sched.schedule();
  ASSERT_EQ(st.seqs.size(), 1u);
  EXPECT_EQ(st.seqs[0].start_pos, 8);  // 2 of the 3 cached pages: the last one is recomputed
  EXPECT_TRUE(st.seqs[0].sample);
  d.sched.abort(2);
}

TEST(Scheduler, RejectsBadInput) {
  EXPECT_THROW(Scheduler(config(0, 8, 4), 8, 4), InvalidArgument);
  EXPECT_THROW(Scheduler(config(8, 4, 4), 8, 4), InvalidArgument);  // budget below max_num_seqs
  EXPECT_THROW(Scheduler(config(2, 8, 0), 8, 4), InvalidArgument);
  Scheduler s(config(2, 8, 4), 2, 4);
  EXPECT_THROW(s.add(1, {}), InvalidArgument);
  EXPECT_THROW(s.add(1, make_prompt(9, 1)), InvalidArgument);  // more than the cache holds
  s.add(1, make_prompt(8, 1));
  EXPECT_THROW(s.add(1, make_prompt(2, 1)), InvalidArgument);
}

}  // namespace
}  // namespace jarvis

namespace jarvis {
namespace {

// Micro-batches as a pipeline ring sees them: up to `slots` steps outstanding, each computed when
// submitted (every rank handles records in submit order), its outputs applied by update() only
// when it comes back, oldest first. Checks the in-flight rules on every step.
struct RingDriver : Driver {
  int slots;
  std::deque<std::pair<ScheduledStep, std::map<int64_t, int32_t>>> outstanding;
  std::set<int64_t> flying;
  int max_seen_in_flight = 0;
  size_t largest_micro_batch = 0;

  RingDriver(const SchedulerConfig& c, int num_blocks, int page_size, int slots_)
      : Driver(c, num_blocks, page_size), slots(slots_) {}

  void submit_while_room() {
    while (static_cast<int>(outstanding.size()) < slots) {
      const int left = slots - static_cast<int>(outstanding.size());
      const int candidates = sched.num_schedulable();
      if (candidates == 0) return;
      ScheduledStep st = sched.schedule((candidates + left - 1) / left);
      for (int64_t p : st.preempted) EXPECT_EQ(flying.count(p), 0u) << "preempted " << p << " while in flight";
      if (st.empty()) return;
      for (const ScheduledSeq& s : st.seqs) {
        EXPECT_TRUE(flying.insert(s.seq_id).second) << s.seq_id << " is in two steps in flight";
      }
      largest_micro_batch = std::max(largest_micro_batch, st.seqs.size());
      std::map<int64_t, int32_t> sampled = model.run(st);
      outstanding.emplace_back(std::move(st), std::move(sampled));
      max_seen_in_flight = std::max(max_seen_in_flight, static_cast<int>(outstanding.size()));
    }
  }

  void collect_oldest() {
    auto [st, sampled] = std::move(outstanding.front());
    outstanding.pop_front();
    std::vector<SeqOutput> outs;
    for (const auto& [id, tok] : sampled) {
      if (!sched.contains(id)) continue;  // aborted while in flight
      SeqOutput o{id, true, tok, static_cast<int>(sched.output(id).size()) + 1 >= max_tokens[id]};
      if (o.finished) {
        outputs[id] = sched.output(id);
        outputs[id].push_back(tok);
      }
      outs.push_back(o);
    }
    for (const ScheduledSeq& s : st.seqs) flying.erase(s.seq_id);
    sched.update(st, outs);
  }

  void run_ring(int max_rounds = 20000) {
    for (int i = 0; i < max_rounds && (sched.has_work() || !outstanding.empty()); ++i) {
      submit_while_room();
      ASSERT_FALSE(outstanding.empty()) << "stalled with work left";
      collect_oldest();
    }
    ASSERT_FALSE(sched.has_work()) << "did not finish";
    EXPECT_EQ(sched.num_in_flight(), 0);
  }
};

TEST(SchedulerMicroBatches, SequencesInFlightAreNotPlannedAgain) {
  Driver d(config(8, 64, 64), 64, 4);
  for (int i = 0; i < 4; ++i) d.add(i, make_prompt(5, i), 4);
  ScheduledStep a = d.sched.schedule(2);
  ASSERT_EQ(a.seqs.size(), 2u);  // cut at max_seqs
  EXPECT_EQ(d.sched.num_in_flight(), 2);
  ScheduledStep b = d.sched.schedule();
  ASSERT_EQ(b.seqs.size(), 2u);  // only the two not in flight
  EXPECT_EQ(b.seqs[0].seq_id, 2);
  EXPECT_EQ(b.seqs[1].seq_id, 3);
  EXPECT_TRUE(d.sched.schedule().empty());  // everything is in flight
  EXPECT_EQ(d.sched.num_schedulable(), 0);
  // b comes back first: its sequences can run again while a is still in flight.
  std::map<int64_t, int32_t> sb = d.model.run(b);
  std::vector<SeqOutput> ob;
  for (const auto& [id, tok] : sb) ob.push_back({id, true, tok, false});
  d.sched.update(b, ob);
  ScheduledStep c = d.sched.schedule();
  ASSERT_EQ(c.seqs.size(), 2u);
  EXPECT_EQ(c.seqs[0].seq_id, 2);
  EXPECT_EQ(c.seqs[0].start_pos, 5);  // a decode now
  EXPECT_THROW(d.sched.update(b, ob), InvalidArgument);  // b's sequences are in c now: stale
  d.sched.abort(0);  // aborting a sequence in flight: its outputs are ignored when they come
  EXPECT_EQ(d.sched.num_in_flight(), 3);
}

TEST(SchedulerMicroBatches, RingOfThreeGivesTheSameTokensAsAlone) {
  RingDriver d(config(16, 64, 8), 256, 4, 3);
  for (int i = 0; i < 12; ++i) d.add(i, make_prompt(3 + 5 * i, i), 4 + i);
  d.run_ring();
  for (int i = 0; i < 12; ++i) EXPECT_EQ(d.outputs[i], expected_output(make_prompt(3 + 5 * i, i), 4 + i)) << i;
  EXPECT_EQ(d.max_seen_in_flight, 3);
  EXPECT_EQ(d.largest_micro_batch, 4u);  // 12 sequences over 3 micro-batches
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
}

TEST(SchedulerMicroBatches, PreemptionUnderATightCacheNeverTakesASequenceInFlight) {
  // 12 blocks of 4 tokens for 6 sequences growing to 20+ tokens each: decodes must preempt.
  RingDriver d(config(6, 64, 8, false), 12, 4, 3);
  for (int i = 0; i < 6; ++i) d.add(i, make_prompt(6, i + 1), 16);
  d.run_ring();
  EXPECT_GT(d.sched.preemptions(), 0);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d.outputs[i], expected_output(make_prompt(6, i + 1), 16)) << i;
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
}

TEST(SchedulerMicroBatches, AbortWhileInFlightFreesBlocksAndOthersStayCorrect) {
  RingDriver d(config(8, 64, 8), 32, 4, 2);
  for (int i = 0; i < 4; ++i) d.add(i, make_prompt(7, i + 3), 10);
  d.submit_while_room();
  ASSERT_EQ(d.outstanding.size(), 2u);
  const int64_t victim = d.outstanding.front().first.seqs.front().seq_id;
  d.sched.abort(victim);  // its block ids go to others while its step is still in the ring
  d.add(9, make_prompt(9, 4), 6);
  d.run_ring();
  EXPECT_EQ(d.outputs.count(victim), 0u);
  for (int i = 0; i < 4; ++i) {
    if (i == victim) continue;
    EXPECT_EQ(d.outputs[i], expected_output(make_prompt(7, i + 3), 10)) << i;
  }
  EXPECT_EQ(d.outputs[9], expected_output(make_prompt(9, 4), 6));
  EXPECT_EQ(d.sched.blocks().used_blocks(), 0);
}

}  // namespace
}  // namespace jarvis
