#include "engine/scheduler.h"

#include <algorithm>
#include <string>

namespace jarvis {

void SchedulerConfig::validate() const {
  if (max_num_seqs < 1) throw InvalidArgument("max_num_seqs must be >= 1, got " + std::to_string(max_num_seqs));
  if (prefill_chunk < 1) throw InvalidArgument("prefill_chunk must be >= 1, got " + std::to_string(prefill_chunk));
  // Every running sequence must be able to decode in every step, or some would stall for good.
  if (max_batched_tokens < max_num_seqs) {
    throw InvalidArgument("max_batched_tokens (" + std::to_string(max_batched_tokens) +
                          ") must be >= max_num_seqs (" + std::to_string(max_num_seqs) + ")");
  }
}

int ScheduledStep::total_tokens() const {
  int n = 0;
  for (const ScheduledSeq& s : seqs) n += static_cast<int>(s.tokens.size());
  return n;
}

BatchView ScheduledStep::batch_view() const {
  BatchView view;
  view.seqs.reserve(seqs.size());
  for (const ScheduledSeq& s : seqs) {
    SequenceSlice slice;
    slice.seq_id = s.seq_id;
    slice.n_tokens = static_cast<int>(s.tokens.size());
    slice.start_pos = s.start_pos;
    slice.block_table = s.block_table;
    slice.want_logits = s.sample;
    view.seqs.push_back(std::move(slice));
  }
  return view;
}

Scheduler::Scheduler(const SchedulerConfig& config, int num_blocks, int page_size)
    : config_(config), blocks_(num_blocks, page_size) {
  config_.validate();
}

const Scheduler::Seq& Scheduler::get(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) throw InvalidArgument("scheduler: unknown sequence " + std::to_string(seq_id));
  return it->second;
}

void Scheduler::add(int64_t seq_id, std::vector<int32_t> prompt, bool cacheable) {
  if (seqs_.count(seq_id) != 0) throw InvalidArgument("scheduler: sequence " + std::to_string(seq_id) + " exists");
  if (prompt.empty()) throw InvalidArgument("scheduler: empty prompt");
  const int64_t cache_positions = static_cast<int64_t>(blocks_.num_blocks()) * blocks_.page_size();
  if (static_cast<int64_t>(prompt.size()) > cache_positions) {
    throw InvalidArgument("prompt of " + std::to_string(prompt.size()) + " tokens exceeds the KV cache's " +
                          std::to_string(cache_positions) + " positions");
  }
  Seq s;
  s.id = seq_id;
  s.arrival = next_arrival_++;
  s.all = prompt;
  s.prompt = std::move(prompt);
  s.cacheable = cacheable;
  seqs_.emplace(seq_id, std::move(s));
  waiting_.push_back(seq_id);
}

void Scheduler::plan(Seq& s, int n, ScheduledStep& step, int& budget) {
  ScheduledSeq p;
  p.seq_id = s.id;
  p.start_pos = s.num_computed;
  p.tokens.assign(s.all.begin() + s.num_computed, s.all.begin() + s.num_computed + n);
  blocks_.ensure_capacity(s.id, s.num_computed + n);  // admission reserved it; decode may add one
  p.block_table = blocks_.block_table(s.id);
  p.sample = s.num_computed + n == s.size();
  budget -= n;
  s.in_flight = true;
  ++in_flight_;
  step.seqs.push_back(std::move(p));
}

int64_t Scheduler::last_preemptable() const {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (!seqs_.at(*it).in_flight) return *it;
  }
  return -1;
}

int64_t Scheduler::preempt(int64_t id, ScheduledStep& step, int& budget) {
  running_.erase(std::find(running_.begin(), running_.end(), id));
  Seq& s = seqs_.at(id);
  blocks_.free(id);  // registered full blocks stay cached: the recompute may find them again
  s.num_computed = 0;
  s.running = false;
  waiting_.push_front(id);
  auto planned = std::find_if(step.seqs.begin(), step.seqs.end(),
                              [id](const ScheduledSeq& p) { return p.seq_id == id; });
  if (planned != step.seqs.end()) {
    budget += static_cast<int>(planned->tokens.size());
    step.seqs.erase(planned);
    s.in_flight = false;
    --in_flight_;
  }
  step.preempted.push_back(id);
  ++preemptions_;
  return id;
}

bool Scheduler::admit_front(ScheduledStep& step, int& budget) {
  Seq& s = seqs_.at(waiting_.front());
  s.num_computed = 0;
  if (config_.prefix_caching && s.cacheable) {
    // At least one token is computed, so its logits exist to sample from.
    const int max_blocks = (s.size() - 1) / blocks_.page_size();
    s.num_computed = blocks_.attach_cached_prefix(s.id, s.all.data(), s.size(), max_blocks);
  }
  // Blocks for every token it has now: its prefill never runs out mid-prompt.
  if (!blocks_.can_allocate(s.id, s.size())) {
    blocks_.free(s.id);
    s.num_computed = 0;
    return false;
  }
  blocks_.ensure_capacity(s.id, s.size());
  waiting_.pop_front();
  s.running = true;
  auto at = std::upper_bound(running_.begin(), running_.end(), s.arrival,
                             [this](uint64_t arrival, int64_t id) { return arrival < seqs_.at(id).arrival; });
  running_.insert(at, s.id);
  plan(s, std::min({s.size() - s.num_computed, config_.prefill_chunk, budget}), step, budget);
  return true;
}

ScheduledStep Scheduler::schedule(int max_seqs) {
  ScheduledStep step;
  int budget = config_.max_batched_tokens;
  auto room = [&] { return budget > 0 && static_cast<int>(step.seqs.size()) < max_seqs; };
  const bool steps_in_flight = in_flight_ > 0;  // planned by earlier calls, not yet updated

  // Decodes: one token each. A victim is always the latest-arrived running sequence not in
  // flight, which comes at or after s in running_, so indices below i stay valid.
  for (size_t i = 0; i < running_.size() && room(); ++i) {
    Seq& s = seqs_.at(running_[i]);
    if (s.in_flight || s.size() - s.num_computed != 1) continue;
    bool self_preempted = false, wait_for_flight = false;
    while (!blocks_.can_allocate(s.id, s.size())) {
      const int64_t victim = last_preemptable();
      if (victim == s.id) {
        if (steps_in_flight) {  // blocks come back when steps in flight finish: wait for them
          wait_for_flight = true;
          break;
        }
        if (running_.size() == 1) {
          throw Error("scheduler: sequence " + std::to_string(s.id) + " of " + std::to_string(s.size()) +
                      " tokens does not fit the KV cache even alone");
        }
        preempt(victim, step, budget);
        self_preempted = true;
        break;
      }
      preempt(victim, step, budget);
    }
    if (self_preempted) break;  // it was the last sequence that could be preempted
    if (wait_for_flight) continue;
    plan(s, 1, step, budget);
  }

  // Prompt chunks of running sequences (their blocks were reserved at admission).
  for (size_t i = 0; i < running_.size() && room(); ++i) {
    Seq& s = seqs_.at(running_[i]);
    const int remaining = s.size() - s.num_computed;
    if (s.in_flight || remaining <= 1) continue;
    plan(s, std::min({remaining, config_.prefill_chunk, budget}), step, budget);
  }

  // New (or preempted) sequences, in arrival order; none while blocks had to be taken back.
  if (step.preempted.empty()) {
    while (!waiting_.empty() && room() && num_running() < config_.max_num_seqs) {
      if (!admit_front(step, budget)) break;  // the head waits for blocks; nobody overtakes it
    }
  }
  return step;
}

void Scheduler::update(const ScheduledStep& step, const std::vector<SeqOutput>& outputs) {
  std::unordered_map<int64_t, const SeqOutput*> by_id;
  for (const SeqOutput& o : outputs) by_id[o.seq_id] = &o;
  for (const ScheduledSeq& p : step.seqs) {
    auto it = seqs_.find(p.seq_id);
    if (it == seqs_.end() || !it->second.running) continue;  // aborted since it was planned
    Seq& s = it->second;
    if (!s.in_flight || p.start_pos != s.num_computed) {
      throw InvalidArgument("scheduler: outputs of a stale plan for sequence " + std::to_string(s.id));
    }
    s.in_flight = false;
    --in_flight_;
    s.num_computed += static_cast<int>(p.tokens.size());
    auto out = by_id.find(s.id);
    const SeqOutput* o = out == by_id.end() ? nullptr : out->second;
    if (p.sample && o && o->has_token) {
      s.output.push_back(o->token);
      s.all.push_back(o->token);
    } else if (p.sample && !(o && o->finished)) {
      throw InvalidArgument("scheduler: sequence " + std::to_string(s.id) + " was sampled but got no token");
    }
    // Register before a finished sequence frees them: the next request with this prefix (the
    // same system prompt, say) finds them.
    if (config_.prefix_caching && s.cacheable) blocks_.register_full_blocks(s.id, s.all.data(), s.num_computed);
    if (o && o->finished) abort(s.id);
  }
}

void Scheduler::abort(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  if (it->second.in_flight) --in_flight_;  // its step's outputs will be ignored
  blocks_.free(seq_id);
  running_.erase(std::remove(running_.begin(), running_.end(), seq_id), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq_id), waiting_.end());
  seqs_.erase(it);
}

}  // namespace jarvis
