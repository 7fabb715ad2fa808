#include "engine/pipeline/stage_worker.h"

#include <cstring>
#include <exception>
#include <optional>

#include "transport/rtt.h"

namespace jarvis {

using transport::Link;
using transport::LinkBroken;
using transport::Message;
using transport::MessageType;

StageWorker::StageWorker(const Model& model, int num_blocks, int page_size, int threads)
    : model_(model), pool_(threads), kv_(model.make_kv_cache(num_blocks, page_size)) {
  limits_.hidden = model.config().hidden;
  limits_.num_blocks = num_blocks;
  limits_.page_size = page_size;
}

StageWorkerResult StageWorker::run(Link& in, Link& out) {
  StageWorkerResult res;
  // Reports a failure downstream so it reaches rank 0 with its cause; the send may itself fail
  // when the downstream link is what broke, which changes nothing about the outcome.
  auto fail = [&](uint64_t step_id, const std::string& why) {
    res.ok = false;
    res.reason = why;
    try {
      out.send(encode_stage_error(step_id, "layers [" + std::to_string(model_.shard().first_layer) + ", " +
                                               std::to_string(model_.shard().end_layer) + "): " + why));
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
        const auto t0 = std::chrono::steady_clock::now();
        model_.forward_layers(rec.batch, rec.hidden.data(), kv_, pool_);
        res.stats.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        // Only the hidden bytes change: patch them into the received record and pass it on.
        std::memcpy(m->payload.data() + rec.hidden_offset, rec.hidden.data(), rec.hidden.size() * sizeof(float));
        ++res.stats.steps;
        res.stats.tokens += rec.hidden.size() / static_cast<size_t>(rec.hidden_size);
      } else if (rec.kind == StageKind::kFree) {
        res.stats.frees += rec.seq_ids.size();
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
