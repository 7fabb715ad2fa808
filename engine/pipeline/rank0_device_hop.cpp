#include "engine/pipeline/rank0_device_hop.h"

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <string>

namespace jarvis {

using transport::Link;
using transport::Message;
using transport::MessageType;

Rank0DeviceHop::Rank0DeviceHop(const ShardForward& shard) {
  device_.cuda = shard.has_device_hidden();
  device_.ordinal = device_.cuda ? shard.device_ordinal() : -1;
  if (device_.cuda) device_.uuid = shard.device_uuid();
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) device_.host = host;
  set_nccl(nccl_enabled_by_env());  // JARVIS_NCCL=0: the host path, for debugging
}

namespace {

// A data record where rank 1's answer was expected: the only one that can come is a worker's
// kError (it refused the hello, so it never answers); say what it says.
[[noreturn]] void unexpected_record(const Message& m, const StageLimits& limits, const char* where) {
  std::string what;
  try {
    const StageRecord rec = decode_stage_record(m.payload, limits);
    if (rec.kind == StageKind::kError) throw InvalidArgument("a rank failed: " + rec.error);
    what = "record of kind " + std::to_string(static_cast<int>(rec.kind));
  } catch (const StageMessageError& e) {
    what = std::string("malformed record (") + e.what() + ")";
  }
  throw InvalidArgument(std::string("unexpected ") + what + " " + where +
                        " while rank 1 was to state its device after the hello");
}

}  // namespace

void Rank0DeviceHop::setup(Link& to_next, Link& from_last, const StageLimits& limits) {
  link_.reset();
  if (!(device_.cuda && device_.nccl)) return;  // rank 1 sends no answer (stage_worker.cpp)
  const bool one_link = &to_next == &from_last;  // a two-rank ring over one bidirectional link
  const auto slice = std::chrono::milliseconds(20);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::optional<StageDevice> answer;
  while (!answer) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      throw transport::LinkTimeout("rank 1 did not state its device within " + std::to_string(timeout_.count()) +
                                   " ms after the hello (rank 0 is " + device_.str() + ")");
    }
    std::optional<Message> m;
    try {
      m = to_next.try_recv(std::min<std::chrono::steady_clock::duration>(left, slice));
    } catch (const std::exception& e) {
      // Rank 1 failed and closed its input: its kError (the cause) is on its way round the ring.
      const std::string closed = e.what();
      const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!one_link && std::chrono::steady_clock::now() < grace) {
        std::optional<Message> back;
        try {
          back = from_last.try_recv(std::chrono::milliseconds(20));
        } catch (const std::exception&) {
          break;
        }
        if (back && back->type == MessageType::kData) unexpected_record(*back, limits, "from the last rank");
      }
      throw transport::LinkBroken("the link to rank 1 failed while it was to state its device: " + closed);
    }
    if (m && m->type == MessageType::kData) {
      if (m->tag != kDeviceTag) unexpected_record(*m, limits, "from rank 1");
      answer = decode_stage_device(m->payload.data(), m->payload.size());
      break;
    }
    // A worker that refused the hello sends a kError on round the ring instead of answering.
    if (!one_link) {
      std::optional<Message> back = from_last.try_recv(std::chrono::milliseconds(1));
      if (back && back->type == MessageType::kData) unexpected_record(*back, limits, "from the last rank");
    }
  }
  next_ = *answer;
  if (!hop_uses_nccl(0, device_, next_, false)) return;
  try {
    link_ = make_link_(to_next, 0, device_.ordinal, timeout_);
  } catch (const std::exception& e) {
    throw transport::LinkBroken("NCCL link from rank 0 (" + device_.str() + ") to rank 1 (" + next_.str() +
                                "): " + e.what());
  }
}

void Rank0DeviceHop::send_rows(const void* device_rows, size_t bytes) {
  if (!link_) throw InvalidArgument("rank 0: no NCCL link to rank 1");
  try {
    link_->send(device_rows, bytes);
  } catch (const std::exception& e) {
    link_.reset();  // unusable after a failed transfer
    throw transport::LinkBroken("NCCL transfer to rank 1 (" + next_.str() + "): " + e.what());
  }
}

}  // namespace jarvis
