#include "engine/pipeline/stage_worker.h"

#include <unistd.h>

#include <cstring>
#include <exception>
#include <optional>

#include "csrc/model/cpu_shard.h"
#include "engine/pipeline/ring_stats.h"
#include "transport/rtt.h"

namespace jarvis {

using transport::Link;
using transport::LinkBroken;
using transport::Message;
using transport::MessageType;

StageWorker::StageWorker(const Model& model, int num_blocks, int page_size, int threads)
    : pool_(std::make_unique<cpu::ThreadPool>(threads)),
      owned_(std::make_unique<CpuShard>(model, num_blocks, page_size, *pool_)),
      shard_(*owned_),
      is_last_(model.shard().end_layer == model.config().n_layers),
      is_tail_(model.shard().has_head) {
  check_tail();
  limits_.hidden = model.config().hidden;
  limits_.num_blocks = num_blocks;
  limits_.page_size = page_size;
  init_device();
}

StageWorker::StageWorker(ShardForward& shard)
    : shard_(shard),
      is_last_(shard.shard().end_layer == shard.config().n_layers),
      is_tail_(shard.shard().has_head) {
  check_tail();
  limits_.hidden = shard.config().hidden;
  limits_.num_blocks = shard.num_blocks();
  limits_.page_size = shard.page_size();
  init_device();
}

void StageWorker::init_device() {
  device_.cuda = shard_.has_device_hidden();
  device_.ordinal = device_.cuda ? shard_.device_ordinal() : -1;
  if (device_.cuda) device_.uuid = shard_.device_uuid();
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) device_.host = host;
  set_nccl(nccl_enabled_by_env());  // JARVIS_NCCL=0: the host path, for debugging
}

void StageWorker::setup_input_hop(Link& in, const StageHello& hello) {
  const int position = static_cast<int>(hello.ranges.size());  // this rank's ring position
  const StageDevice& up = hello.devices.at(static_cast<size_t>(position - 1));
  // Rank 0 waits for an answer only when its own entry could take NCCL (PipelineRunner's
  // Rank0DeviceHop); both ends see that entry, so they agree on whether one is sent. A rank 0 on
  // a CPU, or with NCCL off, exchanges nothing more than the hello.
  if (position == 1 && !(up.cuda && up.nccl)) return;
  // The upstream rank waits for this answer (setup_output_hop) before deciding the same way.
  const std::vector<uint8_t> mine = encode_stage_device(device_);
  in.send(MessageType::kData, kDeviceTag, mine.data(), mine.size());
  if (hop_uses_nccl(position - 1, up, device_, false)) {
    try {
      nccl_in_ = make_device_link_(in, 1, device_.ordinal, device_timeout_);
    } catch (const std::exception& e) {
      throw transport::LinkBroken("NCCL link from " + up.str() + " to " + device_.str() + ": " + e.what());
    }
    limits_.device_payload = true;
  }
}

void StageWorker::setup_output_hop(Link& out, int position) {
  if (is_last_) return;  // the next rank is rank 0: host path, and it sends no answer
  const auto deadline = std::chrono::steady_clock::now() + device_timeout_;
  std::optional<StageDevice> down;
  while (!down) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero() || stop_.load()) {
      throw transport::LinkTimeout("the next rank did not state its device after the hello");
    }
    std::optional<Message> m = out.try_recv(std::min<std::chrono::steady_clock::duration>(left, poll_));
    if (!m || m->type != MessageType::kData) continue;  // pongs of the output link's RTT probes
    if (m->tag != kDeviceTag) throw InvalidArgument("unexpected message from the next rank during the hello");
    down = decode_stage_device(m->payload.data(), m->payload.size());
  }
  if (hop_uses_nccl(position, device_, *down, false)) {
    try {
      nccl_out_ = make_device_link_(out, 0, device_.ordinal, device_timeout_);
    } catch (const std::exception& e) {
      throw transport::LinkBroken("NCCL link from " + device_.str() + " to " + down->str() + ": " + e.what());
    }
  }
}

bool StageWorker::run_step(StageRecord& rec, Message& m, StageWorkerResult& res) {
  if (rec.trimmed) throw InvalidArgument("a trimmed step (rows only) reached a rank with layers to run");
  const int n = rec.batch.total_tokens();
  const size_t h = static_cast<size_t>(rec.hidden_size);
  const size_t bytes = static_cast<size_t>(n) * h * sizeof(float);
  // The hidden state is on the device when it came over NCCL or will leave over NCCL.
  const bool on_device = rec.device_payload || nccl_out_ != nullptr;
  if (rec.device_payload) {
    nccl_in_->recv(shard_.device_hidden(n), bytes);  // decode refused the form unless nccl_in_ is set
  } else if (on_device) {
    shard_.hidden_to_device(rec.hidden.data(), n);
  }
  const auto t_layers = std::chrono::steady_clock::now();
  if (on_device) {
    shard_.forward_layers_device(rec.batch);
  } else {
    shard_.forward_layers(rec.batch, rec.hidden.data());
  }
  res.stats.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_layers).count();
  ++res.stats.steps;
  res.stats.tokens += static_cast<uint64_t>(n);
  if (on_device && !nccl_out_) {
    rec.hidden.resize(static_cast<size_t>(n) * h);
    shard_.hidden_to_host(rec.hidden.data(), n);
  }
  if (is_last_) {
    // Rank 0 reads only the rows it needs logits for: send back just those (or, holding the
    // tail, their logits; rank 0 samples from them).
    selected_.resize(rec.rows.size() * h);
    for (size_t i = 0; i < rec.rows.size(); ++i) {
      std::memcpy(selected_.data() + i * h, rec.hidden.data() + static_cast<size_t>(rec.rows[i]) * h,
                  h * sizeof(float));
    }
    if (is_tail_) {
      const int vocab = shard_.config().vocab_size;
      logits_.resize(rec.rows.size() * static_cast<size_t>(vocab));
      const auto t1 = std::chrono::steady_clock::now();
      if (!rec.rows.empty()) shard_.compute_logits(selected_.data(), static_cast<int>(rec.rows.size()), logits_.data());
      res.stats.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      m.payload = encode_stage_logits(rec.step_id, rec.micro_batch, rec.batch, rec.hidden_size, limits_.page_size,
                                      rec.rows, logits_.data(), vocab);
    } else {
      m.payload = encode_stage_step(rec.step_id, rec.micro_batch, rec.batch, selected_.data(), rec.hidden_size,
                                    limits_.page_size, rec.rows, true);
    }
    return false;
  }
  if (nccl_out_) {
    m.payload = encode_stage_step_device(rec.step_id, rec.micro_batch, rec.batch, rec.hidden_size,
                                         limits_.page_size, rec.rows);
    return true;
  }
  if (rec.device_payload) {
    m.payload = encode_stage_step(rec.step_id, rec.micro_batch, rec.batch, rec.hidden.data(), rec.hidden_size,
                                  limits_.page_size, rec.rows, false);
  } else {
    // Only the hidden bytes change: patch them into the received record and pass it on.
    std::memcpy(m.payload.data() + rec.hidden_offset, rec.hidden.data(), bytes);
  }
  return false;
}

void StageWorker::check_tail() const {
  if (shard_.shard().has_embedding) {
    throw InvalidArgument("a pipeline worker cannot hold the embedding (the head stays on rank 0)");
  }
  if (is_tail_ && !is_last_) {
    throw InvalidArgument("the tail (final norm + lm_head) may only be on the last rank; this rank ends at layer " +
                          std::to_string(shard_.shard().end_layer) + " of " +
                          std::to_string(shard_.config().n_layers));
  }
}

void StageWorker::check_hello(const StageHello& h) const {
  // Rank 0 holding the tail is the default (the ring returns to it); a worker before this one
  // holding it is not (its logits would pass through more layers), and two tails are one too many.
  if (h.tail_rank > 0) {
    throw InvalidArgument("ring position " + std::to_string(h.tail_rank) +
                          " holds the tail but is not the last rank (layers follow it here)");
  }
  if (h.tail_rank == 0 && is_tail_) {
    throw InvalidArgument("rank 0 holds the tail too: only one rank may (rank 0, or the last rank alone)");
  }
  const ModelConfig& c = shard_.config();
  if (h.n_layers != c.n_layers || h.hidden != c.hidden) {
    throw InvalidArgument("model mismatch: the ring's model has " + std::to_string(h.n_layers) + " layers of width " +
                          std::to_string(h.hidden) + ", this rank's " + std::to_string(c.n_layers) + " of " +
                          std::to_string(c.hidden));
  }
  if (h.num_blocks != limits_.num_blocks || h.page_size != limits_.page_size) {
    throw InvalidArgument("KV layout mismatch: rank 0 has " + std::to_string(h.num_blocks) + " blocks of " +
                          std::to_string(h.page_size) + " tokens, this rank " + std::to_string(limits_.num_blocks) +
                          " of " + std::to_string(limits_.page_size) + " (--kv-blocks and --page-size must match)");
  }
  if (h.ranges.back().second != shard_.shard().first_layer) {
    throw InvalidArgument("layers do not follow on: the previous rank ends at layer " +
                          std::to_string(h.ranges.back().second) + ", this rank starts at " +
                          std::to_string(shard_.shard().first_layer));
  }
}

StageWorkerResult StageWorker::run(Link& in, Link& out) {
  StageWorkerResult res;
  const auto started = std::chrono::steady_clock::now();
  // Reports a failure downstream so it reaches rank 0 with its cause; the send may itself fail
  // when the downstream link is what broke, which changes nothing about the outcome.
  auto fail = [&](uint64_t step_id, const std::string& why) {
    res.ok = false;
    res.reason = why;
    try {
      out.send(encode_stage_error(step_id, "layers [" + std::to_string(shard_.shard().first_layer) + ", " +
                                               std::to_string(shard_.shard().end_layer) + "): " + why));
    } catch (const std::exception&) {
    }
    return res;
  };

  while (!stop_.load()) {
    std::optional<Message> m;
    try {
      m = in.try_recv(poll_);
    } catch (const LinkBroken& e) {
      res.reason = std::string("upstream closed: ") + e.what();
      return res;
    } catch (const std::exception& e) {
      return fail(0, std::string("input link: ") + e.what());
    }
    if (!m) continue;
    if (m->type != MessageType::kData) {
      try {
        transport::answer_ping(in, *m);  // per-link RTT probes from upstream; anything else is ignored
      } catch (const std::exception&) {
      }
      continue;
    }
    uint64_t step_id = 0;
    bool rows_follow = false;       // a device-form kStep: its rows go on nccl_out_ after the record
    int follow_tokens = 0;
    bool setup_downstream = false;  // a hello: set the output hop up once it is forwarded
    int position = 0;
    try {
      StageRecord rec = decode_stage_record(m->payload, limits_);
      step_id = rec.step_id;
      if (rec.kind == StageKind::kStep) {
        rows_follow = run_step(rec, *m, res);
        follow_tokens = rec.batch.total_tokens();
      } else if (rec.kind == StageKind::kFree) {
        res.stats.frees += rec.seq_ids.size();
      } else if (rec.kind == StageKind::kStats) {
        // This rank's position is its place in the round: rank 0 sent it empty, workers append.
        const auto busy = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(res.stats.compute_seconds));
        rec.stats.push_back(make_rank_stats(static_cast<uint32_t>(rec.stats.size() + 1), shard_.shard().first_layer,
                                            shard_.shard().end_layer, res.stats.steps, res.stats.tokens, busy,
                                            std::chrono::steady_clock::now() - started, &in, &out));
        m->payload = encode_stage_stats(rec.step_id, rec.stats);
      } else if (rec.kind == StageKind::kHello) {
        check_hello(rec.hello);
        // A new hello sets the hops up afresh, on both ends alike.
        nccl_in_.reset();
        nccl_out_.reset();
        limits_.device_payload = false;
        position = static_cast<int>(rec.hello.ranges.size());
        setup_input_hop(in, rec.hello);
        if (is_tail_) rec.hello.tail_rank = position;
        rec.hello.ranges.emplace_back(shard_.shard().first_layer, shard_.shard().end_layer);
        rec.hello.devices.resize(static_cast<size_t>(position));  // rank 0's, as decoded
        rec.hello.devices.push_back(device_);
        m->payload = encode_stage_hello(rec.step_id, rec.hello);
        setup_downstream = true;
      }
      // kError from upstream travels on unchanged; the upstream rank then closes, ending this loop.
    } catch (const std::exception& e) {
      return fail(step_id, e.what());
    }
    try {
      out.send(MessageType::kData, m->tag, m->payload.data(), m->payload.size());
    } catch (const std::exception& e) {
      res.ok = false;
      res.reason = std::string("downstream link: ") + e.what();
      return res;
    }
    try {
      if (rows_follow) {
        nccl_out_->send(shard_.device_hidden(follow_tokens),
                        static_cast<size_t>(follow_tokens) * limits_.hidden * sizeof(float));
      }
      if (setup_downstream) setup_output_hop(out, position);
    } catch (const std::exception& e) {
      return fail(step_id, std::string("downstream link: ") + e.what());
    }
  }
  res.reason = "stopped";
  return res;
}

}  // namespace jarvis
