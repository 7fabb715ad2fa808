#include "engine/pipeline/stage_worker.h"

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
}

StageWorker::StageWorker(ShardForward& shard)
    : shard_(shard),
      is_last_(shard.shard().end_layer == shard.config().n_layers),
      is_tail_(shard.shard().has_head) {
  check_tail();
  limits_.hidden = shard.config().hidden;
  limits_.num_blocks = shard.num_blocks();
  limits_.page_size = shard.page_size();
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
    try {
      StageRecord rec = decode_stage_record(m->payload, limits_);
      step_id = rec.step_id;
      if (rec.kind == StageKind::kStep) {
        if (rec.trimmed) throw InvalidArgument("a trimmed step (rows only) reached a rank with layers to run");
        const auto t0 = std::chrono::steady_clock::now();
        shard_.forward_layers(rec.batch, rec.hidden.data());
        res.stats.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++res.stats.steps;
        res.stats.tokens += rec.hidden.size() / static_cast<size_t>(rec.hidden_size);
        if (is_last_) {
          // Rank 0 reads only the rows it needs logits for: send back just those (or, holding the
          // tail, their logits; rank 0 samples from them).
          const size_t h = static_cast<size_t>(rec.hidden_size);
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
            m->payload = encode_stage_logits(rec.step_id, rec.micro_batch, rec.batch, rec.hidden_size,
                                             limits_.page_size, rec.rows, logits_.data(), vocab);
          } else {
            m->payload = encode_stage_step(rec.step_id, rec.micro_batch, rec.batch, selected_.data(),
                                           rec.hidden_size, limits_.page_size, rec.rows, true);
          }
        } else {
          // Only the hidden bytes change: patch them into the received record and pass it on.
          std::memcpy(m->payload.data() + rec.hidden_offset, rec.hidden.data(), rec.hidden.size() * sizeof(float));
        }
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
        if (is_tail_) rec.hello.tail_rank = static_cast<int>(rec.hello.ranges.size());
        rec.hello.ranges.emplace_back(shard_.shard().first_layer, shard_.shard().end_layer);
        m->payload = encode_stage_hello(rec.step_id, rec.hello);
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
  }
  res.reason = "stopped";
  return res;
}

}  // namespace jarvis
