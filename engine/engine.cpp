#include "engine/engine.h"

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/engine_config.h"
#include "engine/logprobs.h"
#include "engine/scheduler.h"
#include "engine/step_runner.h"
#include "metrics/serving_metrics.h"

namespace jarvis {
namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

// A request the engine holds, from submit() to its last update.
struct Live {
  Request req;
  UpdateCallback on_update;
  int64_t seq = 0;
  Sampler sampler;
  TokenStream stream;
  std::vector<PromptTokenLogprob> prompt_logprobs;  // entry i is prompt token i; filled in order
  bool prompt_logprobs_sent = false;
  bool scheduled = false;
  Clock::time_point first_token, last_token;

  Live(Request r, UpdateCallback cb, const Tokenizer& tok, const StopConditions& stop)
      : req(std::move(r)), on_update(std::move(cb)), sampler(req.options.sampling), stream(tok, stop) {}
  bool wants_prompt_logprobs() const { return req.options.prompt_logprobs >= 0; }
  bool prompt_logprobs_done() const { return prompt_logprobs.size() >= req.prompt.size(); }
};

struct Engine::Impl {
  const Model& model;
  const Tokenizer& tokenizer;
  EngineConfig config;
  metrics::ServingMetrics* metrics;
  int num_blocks = 0;
  int context_length = 0;
  std::unique_ptr<StepExecutor> runner;
  Scheduler scheduler;

  mutable std::mutex mu;  // guards everything below up to the engine-thread-only part
  std::condition_variable work_cv;  // the engine thread waits for work
  std::condition_variable idle_cv;  // shutdown waits for in-flight requests
  std::deque<std::unique_ptr<Live>> incoming;
  std::vector<int64_t> cancels;
  std::unordered_map<std::string, int64_t> ids;  // every request not yet finished
  int64_t next_seq = 0;
  bool stopping = false;
  bool stop_now = false;
  std::string degraded;  // set once by the engine thread when the executor broke
  EngineStats stats;
  std::mutex join_mu;
  std::thread thread;

  // Engine thread only.
  std::unordered_map<int64_t, std::unique_ptr<Live>> live;
  // A step submitted to the executor and not yet collected, with what collect_step() needs to
  // read its logits.
  struct InFlight {
    ScheduledStep plan;
    std::vector<int> first_row, n_prompt_rows;  // per plan.seqs entry: its rows in the logits
    bool sampled_on_device = false;  // the executor sampled the last rows (samples(), plan order)
  };
  std::deque<InFlight> in_flight;  // oldest first: the order collect() returns them
  std::vector<int64_t> released;   // ended since the last release_finished()
  bool executor_broken = false;

  Impl(const Model& m, const Tokenizer& t, const EngineConfig& c, metrics::ServingMetrics* mx, int blocks,
       std::unique_ptr<StepExecutor> exec)
      : model(m), tokenizer(t), config(c), metrics(mx), num_blocks(blocks),
        runner(exec ? std::move(exec) : std::make_unique<StepRunner>(m, blocks, c.page_size, c.threads)),
        scheduler(SchedulerConfig{c.max_num_seqs, c.max_batched_tokens, c.prefill_chunk, c.prefix_caching},
                  blocks, c.page_size) {
    const int64_t cache_positions = static_cast<int64_t>(blocks) * c.page_size;
    const int model_context = m.config().context_length > 0 ? m.config().context_length : INT32_MAX;
    context_length = static_cast<int>(std::min<int64_t>(cache_positions, model_context));
    stats.kv_blocks_total = blocks;
  }

  void loop();
  void step();
  void submit_steps();
  std::vector<int> plan_rows(InFlight& f);
  std::vector<SampleRequest> sample_requests(const InFlight& f);
  void collect_step();
  void release_finished();
  void fail_all(const std::string& error);
  void deliver(Live& l, RequestUpdate& u);
  void finish(int64_t seq, RequestUpdate u, const std::string& reason_label);
  void fail(int64_t seq, const std::string& error);
  void degrade(const std::string& why);
  void publish();
};

void Engine::Impl::loop() {
  for (;;) {
    std::deque<std::unique_ptr<Live>> fresh;
    std::vector<int64_t> cancel_now;
    std::string degraded_now;
    {
      std::unique_lock<std::mutex> lock(mu);
      work_cv.wait(lock, [&] {
        return stop_now || !incoming.empty() || !cancels.empty() || scheduler.has_work() || !in_flight.empty();
      });
      if (stop_now) break;
      fresh.swap(incoming);
      cancel_now.swap(cancels);
      degraded_now = degraded;
    }
    for (std::unique_ptr<Live>& l : fresh) {
      const int64_t seq = l->seq;
      live[seq] = std::move(l);
      if (!degraded_now.empty()) {  // queued just before the executor broke
        fail(seq, "engine degraded: " + degraded_now);
        continue;
      }
      try {
        // A request that wants every prompt row's logits must compute every prompt row.
        scheduler.add(seq, live[seq]->req.prompt, /*cacheable=*/!live[seq]->wants_prompt_logprobs());
      } catch (const std::exception& e) {  // submit() checked what add() checks; stay up regardless
        fail(seq, e.what());
      }
    }
    for (int64_t seq : cancel_now) {
      if (live.count(seq) == 0) continue;
      scheduler.abort(seq);
      RequestUpdate u;
      u.finished = true;
      u.finish = FinishReason::kCancelled;
      finish(seq, std::move(u), "abort");
    }
    try {
      if (scheduler.has_work() || !in_flight.empty()) step();
    } catch (const std::exception& e) {  // a bug, not a request's fault: end what runs, keep serving
      fail_all(std::string("engine: ") + e.what());
    }
    release_finished();
    publish();
  }
  // Shutting down: whatever is left is cancelled.
  {
    std::lock_guard<std::mutex> lock(mu);
    for (std::unique_ptr<Live>& l : incoming) live[l->seq] = std::move(l);
    incoming.clear();
  }
  std::vector<int64_t> left;
  for (const auto& kv : live) left.push_back(kv.first);
  for (int64_t seq : left) {
    scheduler.abort(seq);
    RequestUpdate u;
    u.finished = true;
    u.finish = FinishReason::kCancelled;
    finish(seq, std::move(u), "abort");
  }
  publish();
}

// Fills the executor with steps (micro-batches) up to its in-flight limit, then finishes the
// oldest one. With one step at a time (the local runner) this is plan, run, sample.
void Engine::Impl::step() {
  submit_steps();
  if (!in_flight.empty()) collect_step();
}

void Engine::Impl::fail_all(const std::string& error) {
  std::vector<int64_t> all;
  for (const auto& kv : live) all.push_back(kv.first);
  for (int64_t seq : all) fail(seq, error);
}

void Engine::Impl::submit_steps() {
  const int max_flight = runner->max_in_flight();
  while (static_cast<int>(in_flight.size()) < max_flight && !executor_broken) {
    // Cut what can run into as many micro-batches as there are free slots, so every slot gets
    // a share: with M slots and 12 sequences, micro-batches of 4.
    const int slots = max_flight - static_cast<int>(in_flight.size());
    const int candidates = scheduler.num_schedulable();
    if (candidates == 0) return;
    InFlight f;
    try {
      f.plan = scheduler.schedule((candidates + slots - 1) / slots);
    } catch (const std::exception& e) {  // a broken invariant: fail what runs rather than spin
      fail_all(std::string("scheduler: ") + e.what());
      return;
    }
    if (metrics) {
      for (size_t i = 0; i < f.plan.preempted.size(); ++i) metrics->count_preemption();
    }
    if (f.plan.empty()) {
      // With steps in flight, what is left waits for them (blocks, its own step). With none, it
      // cannot happen while every request fits the cache alone (submit checks that); failing
      // what is queued beats spinning on it.
      if (in_flight.empty()) fail_all("engine: no request could be scheduled");
      return;
    }
    const std::vector<int> rows = plan_rows(f);
    try {
      if (runner->samples_on_device()) {
        runner->submit_sampled(f.plan, rows, sample_requests(f));
        f.sampled_on_device = true;
      } else {
        runner->submit(f.plan, rows);
      }
    } catch (const ExecutorBroken& e) {
      degrade(e.what());
      return;
    } catch (const std::exception& e) {
      for (const ScheduledSeq& sq : f.plan.seqs) fail(sq.seq_id, std::string("forward pass: ") + e.what());
      continue;
    }
    in_flight.push_back(std::move(f));
  }
}

// Rows whose logits are read: prompt rows for prompt logprobs, then the sampled last row.
std::vector<int> Engine::Impl::plan_rows(InFlight& f) {
  const Clock::time_point now = Clock::now();
  std::vector<int> rows;
  f.first_row.assign(f.plan.seqs.size(), 0);
  f.n_prompt_rows.assign(f.plan.seqs.size(), 0);
  int offset = 0;
  for (size_t i = 0; i < f.plan.seqs.size(); ++i) {
    const ScheduledSeq& s = f.plan.seqs[i];
    Live& l = *live.at(s.seq_id);
    if (!l.scheduled) {
      l.scheduled = true;
      if (metrics) metrics->observe_queue_time(seconds(now - l.req.arrival));
    }
    f.first_row[i] = static_cast<int>(rows.size());
    const int n = static_cast<int>(s.tokens.size());
    if (l.wants_prompt_logprobs()) {
      if (l.prompt_logprobs.empty()) l.prompt_logprobs.push_back({l.req.prompt[0], std::nullopt, {}});
      // Row at position p predicts prompt token p + 1; rows done before a preemption are skipped.
      for (int p = s.start_pos; p < s.start_pos + n; ++p) {
        const int entry = p + 1;
        if (entry < static_cast<int>(l.req.prompt.size()) &&
            entry == static_cast<int>(l.prompt_logprobs.size()) + f.n_prompt_rows[i]) {
          rows.push_back(offset + p - s.start_pos);
          ++f.n_prompt_rows[i];
        }
      }
    }
    if (s.sample) rows.push_back(offset + n - 1);
    offset += n;
  }
  return rows;
}

// The sampled rows, for an executor that samples on its device: each sequence's Sampler draws
// its uniform now, the draw sample() would make once the logits are back (one per token, in the
// same order, so a seed gives the same tokens either way).
std::vector<SampleRequest> Engine::Impl::sample_requests(const InFlight& f) {
  std::vector<SampleRequest> requests;
  for (size_t i = 0; i < f.plan.seqs.size(); ++i) {
    const ScheduledSeq& s = f.plan.seqs[i];
    if (!s.sample) continue;
    requests.push_back(make_sample_request(live.at(s.seq_id)->sampler, scheduler.prompt(s.seq_id),
                                           scheduler.output(s.seq_id), runner->vocab()));
    requests.back().row = f.first_row[i] + f.n_prompt_rows[i];
  }
  return requests;
}

void Engine::Impl::collect_step() {
  InFlight f = std::move(in_flight.front());
  in_flight.pop_front();
  const float* logits = nullptr;
  try {
    logits = runner->collect();
  } catch (const ExecutorBroken& e) {
    degrade(e.what());
    return;
  } catch (const std::exception& e) {
    for (const ScheduledSeq& s : f.plan.seqs) fail(s.seq_id, std::string("forward pass: ") + e.what());
    return;
  }

  const int32_t vocab = runner->vocab();
  const std::vector<SampleResult>* device_samples = f.sampled_on_device ? &runner->samples() : nullptr;
  size_t next_sample = 0;
  std::vector<SeqOutput> outputs;
  std::vector<std::pair<int64_t, RequestUpdate>> updates;
  for (size_t i = 0; i < f.plan.seqs.size(); ++i) {
    const ScheduledSeq& s = f.plan.seqs[i];
    const size_t sample_index = s.sample ? next_sample++ : 0;  // requests were made in plan order
    auto found = live.find(s.seq_id);
    if (found == live.end()) continue;  // cancelled or failed while its step was in flight
    Live& l = *found->second;
    for (int k = 0; k < f.n_prompt_rows[i]; ++k) {
      const int32_t token = l.req.prompt[l.prompt_logprobs.size()];
      RawLogprobs lp = raw_logprobs(logits + static_cast<size_t>(f.first_row[i] + k) * vocab, vocab, token,
                                    l.req.options.prompt_logprobs);
      l.prompt_logprobs.push_back({token, lp.logprob, std::move(lp.top)});
    }
    if (!s.sample) continue;
    SampleResult sampled;
    if (device_samples) {
      sampled = (*device_samples)[sample_index];
    } else {
      const float* row = logits + static_cast<size_t>(f.first_row[i] + f.n_prompt_rows[i]) * vocab;
      sampled = l.sampler.sample(row, vocab, scheduler.prompt(s.seq_id), scheduler.output(s.seq_id));
    }
    SeqOutput out;
    out.seq_id = s.seq_id;
    out.has_token = true;
    out.token = sampled.token;
    RequestUpdate u;
    u.tokens.push_back(l.stream.push(std::move(sampled)));
    u.finished = l.stream.finished();
    u.finish = l.stream.finish();
    out.finished = u.finished;
    outputs.push_back(out);
    updates.emplace_back(s.seq_id, std::move(u));
  }
  scheduler.update(f.plan, outputs);

  const Clock::time_point done = Clock::now();
  for (auto& [seq, u] : updates) {
    Live& l = *live.at(seq);
    if (l.req.options.score_only) {  // the token is dropped: nothing was generated
      if (metrics) metrics->add_prompt_tokens(static_cast<int64_t>(l.req.prompt.size()));
    } else if (l.stream.generated() == 1) {
      l.first_token = done;
      if (metrics) {
        metrics->observe_time_to_first_token(seconds(done - l.req.arrival));
        metrics->add_prompt_tokens(static_cast<int64_t>(l.req.prompt.size()));
      }
    } else if (metrics) {
      metrics->observe_inter_token_latency(seconds(done - l.last_token));
    }
    l.last_token = done;
    if (metrics && !l.req.options.score_only) metrics->add_generation_tokens(1);
    if (u.finished) {
      const std::string label = openai_finish_reason(u.finish);
      finish(seq, std::move(u), label);
    } else {
      deliver(l, u);
    }
  }
}

// Tells the executor which sequences ended since the last call.
void Engine::Impl::release_finished() {
  if (released.empty() || !!executor_broken) return;
  std::vector<int64_t> ids;
  ids.swap(released);
  try {
    runner->release(ids);
  } catch (const ExecutorBroken& e) {
    degrade(e.what());
  }
}

// Sends an update; a callback that throws ends its request (the client is as good as gone).
void Engine::Impl::deliver(Live& l, RequestUpdate& u) {
  u.prompt_tokens = static_cast<int>(l.req.prompt.size());
  u.generated_tokens = l.stream.generated();
  if (l.wants_prompt_logprobs() && !l.prompt_logprobs_sent && l.prompt_logprobs_done()) {
    u.prompt_logprobs = std::move(l.prompt_logprobs);
    l.prompt_logprobs_sent = true;
  }
  try {
    l.on_update(u);
  } catch (...) {
    if (!u.finished) {
      std::lock_guard<std::mutex> lock(mu);
      cancels.push_back(l.seq);
    }
  }
}

void Engine::Impl::finish(int64_t seq, RequestUpdate u, const std::string& reason_label) {
  auto it = live.find(seq);
  if (it == live.end()) return;
  Live& l = *it->second;
  u.finished = true;
  deliver(l, u);
  if (metrics) {
    metrics->count_request_finished(reason_label);
    if (reason_label != "abort" && reason_label != "error") {
      const double e2e = seconds(Clock::now() - l.req.arrival);
      metrics->observe_e2e_latency(e2e);
      const int n = l.stream.generated();
      if (n > 1) metrics->observe_time_per_output_token(seconds(l.last_token - l.first_token) / (n - 1));
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    ids.erase(l.req.id);
  }
  released.push_back(seq);
  live.erase(it);
}

void Engine::Impl::fail(int64_t seq, const std::string& error) {
  scheduler.abort(seq);
  RequestUpdate u;
  u.finish = FinishReason::kCancelled;
  u.error = error;
  finish(seq, std::move(u), "error");
}

// The executor cannot run steps any more: every request fails with `why`, new ones are refused.
void Engine::Impl::degrade(const std::string& why) {
  {
    // Visible in stats() before any request hears of the failure: a client that sees its stream
    // end must find /health already degraded.
    std::lock_guard<std::mutex> lock(mu);
    if (degraded.empty()) degraded = why;
    stats.degraded = degraded;
  }
  executor_broken = true;
  in_flight.clear();  // nothing will come back from a broken executor
  fail_all("engine degraded: " + why);
}

void Engine::Impl::publish() {
  const BlockManager& blocks = scheduler.blocks();
  EngineStats now;
  now.running = scheduler.num_running();
  now.kv_blocks_used = blocks.used_blocks();
  now.kv_blocks_total = blocks.num_blocks();
  now.preemptions = scheduler.preemptions();
  now.prefix_cache_hit_tokens = blocks.cache_hit_tokens();
  {
    std::lock_guard<std::mutex> lock(mu);
    now.waiting = scheduler.num_waiting() + static_cast<int>(incoming.size());
    now.degraded = degraded;
    stats = now;
    if (ids.empty()) idle_cv.notify_all();
  }
  if (metrics) {
    metrics->set_requests_running(now.running);
    metrics->set_requests_waiting(now.waiting);
    metrics->set_kv_cache_usage(static_cast<double>(now.kv_blocks_used) / now.kv_blocks_total);
  }
}

Engine::Engine(const Model& model, const Tokenizer& tokenizer, const EngineConfig& config,
               metrics::ServingMetrics* metrics) {
  const int blocks = config.kv_blocks > 0 ? config.kv_blocks : kv_cache_blocks(model, config);
  impl_ = std::make_unique<Impl>(model, tokenizer, config, metrics, blocks, nullptr);
  impl_->thread = std::thread([this] { impl_->loop(); });
}

Engine::Engine(const Model& model, const Tokenizer& tokenizer, const EngineConfig& config,
               metrics::ServingMetrics* metrics, std::unique_ptr<StepExecutor> executor) {
  if (!executor) throw InvalidArgument("Engine: no step executor");
  if (config.kv_blocks < 1) throw InvalidArgument("Engine: an external step executor needs config.kv_blocks");
  validate(config);
  impl_ = std::make_unique<Impl>(model, tokenizer, config, metrics, config.kv_blocks, std::move(executor));
  impl_->thread = std::thread([this] { impl_->loop(); });
}

Engine::~Engine() { shutdown(std::chrono::milliseconds(0)); }

void Engine::submit(Request request, UpdateCallback on_update) {
  Impl& m = *impl_;
  const RequestOptions& o = request.options;
  if (request.prompt.empty()) throw InvalidArgument("the prompt has no tokens");
  const int32_t vocab = m.model.config().vocab_size;
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= vocab) {
      throw InvalidArgument("prompt token id " + std::to_string(id) + " outside the vocabulary");
    }
  }
  if (o.max_tokens < 1) throw InvalidArgument("max_tokens must be >= 1, got " + std::to_string(o.max_tokens));
  const int64_t needed = static_cast<int64_t>(request.prompt.size()) + o.max_tokens;
  if (needed > m.context_length) {
    throw InvalidArgument("the prompt (" + std::to_string(request.prompt.size()) + " tokens) plus max_tokens (" +
                          std::to_string(o.max_tokens) + ") exceeds the context of " +
                          std::to_string(m.context_length) + " tokens");
  }
  if (o.prompt_logprobs < -1 || o.prompt_logprobs > SamplingParams::kMaxLogprobs) {
    throw InvalidArgument("prompt_logprobs must be in [-1, " + std::to_string(SamplingParams::kMaxLogprobs) +
                          "], got " + std::to_string(o.prompt_logprobs));
  }
  if (!on_update) throw InvalidArgument("submit: no update callback");
  StopConditions stop;
  stop.max_tokens = o.max_tokens;
  stop.stop = o.stop;
  stop.ignore_eos = o.ignore_eos;
  stop.stop_token_ids = o.stop_token_ids;
  stop.include_stop_str = o.include_stop_str_in_output;
  stop.prompt_tokens = static_cast<int>(request.prompt.size());
  stop.context_length = m.context_length;
  const std::string id = request.id;
  // Validates the sampling parameters and the stop strings.
  auto l = std::make_unique<Live>(std::move(request), std::move(on_update), m.tokenizer, stop);

  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stopping) throw EngineStopped("the engine is shutting down");
    if (!m.degraded.empty()) throw EngineStopped("the engine is degraded: " + m.degraded);
    const int waiting = m.stats.waiting + static_cast<int>(m.incoming.size());
    if (waiting >= m.config.max_waiting) {
      throw QueueFull("the waiting queue is full (" + std::to_string(waiting) + " requests)");
    }
    if (m.ids.count(id) != 0) throw InvalidArgument("request id '" + id + "' is already in flight");
    l->seq = m.next_seq++;
    m.ids.emplace(id, l->seq);
    m.incoming.push_back(std::move(l));
  }
  m.work_cv.notify_one();
}

void Engine::cancel(const std::string& request_id) {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    auto it = m.ids.find(request_id);
    if (it == m.ids.end()) return;
    m.cancels.push_back(it->second);
  }
  m.work_cv.notify_one();
}

void Engine::shutdown(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  {
    std::unique_lock<std::mutex> lock(m.mu);
    m.stopping = true;
    m.idle_cv.wait_for(lock, grace, [&] { return m.ids.empty() || m.stop_now; });
    m.stop_now = true;
  }
  m.work_cv.notify_all();
  std::lock_guard<std::mutex> lock(m.join_mu);
  if (m.thread.joinable()) m.thread.join();
}

void Engine::mark_degraded(const std::string& why) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->degraded.empty()) return;
  impl_->degraded = why;
  impl_->stats.degraded = why;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

int Engine::context_length() const { return impl_->context_length; }
const EngineConfig& Engine::config() const { return impl_->config; }

}  // namespace jarvis
