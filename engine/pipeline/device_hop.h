// Which hops of the pipeline ring move hidden states device to device over NCCL, and how the two
// ends of a hop come to the same answer.
//
// Each rank knows only its own device. The kHello record (stage_message.h) collects one
// StageDevice per rank as it goes round; the receiving end of a hop finds its upstream's entry
// there, and answers it with its own (kDeviceTag on the same link, in reverse) so the sending
// end knows both too. Both then call hop_uses_nccl on the same two entries: the decision is a pure
// function of them, so the ends cannot disagree.
//
// NCCL on the forward hops only (ring position p to p + 1, rank 0's hop to rank 1 included),
// both ends on CUDA devices, both able and willing (a build with NCCL, not forced to the host path
// by JARVIS_NCCL=0), and on different GPUs: NCCL refuses one GPU twice in a communicator, and two
// shards on one GPU gain nothing from it. The return hop (last rank -> rank 0) keeps the host path:
// it carries only the trimmed rows or their logits, a few KB, and rank 0 reads them on the host.
// Everything else uses the host path: hidden rows as floats inside the record on the ring link.
// Rank 0 states its device in the hello; rank 1 answers it (kDeviceTag) only when rank 0's entry
// is NCCL-able, so a rank 0 on a CPU (or with NCCL off) exchanges nothing more than before.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace jarvis {

// One rank's device as the hello carries it.
struct StageDevice {
  bool cuda = false;   // the shard runs on a CUDA device
  bool nccl = false;   // and this rank will move hidden states over NCCL (built with it, not disabled)
  int ordinal = -1;    // cuda:N on its host (for messages and as a fallback identity)
  std::array<uint8_t, 16> uuid{};  // the GPU's UUID (cudaDeviceProp::uuid); all zero when unknown
  std::string host;    // hostname, for messages and the fallback identity

  bool operator==(const StageDevice& o) const {
    return cuda == o.cuda && nccl == o.nccl && ordinal == o.ordinal && uuid == o.uuid && host == o.host;
  }
  std::string str() const;  // "cpu@host", "cuda:1@host"
};

// Tag of the device answer a worker sends upstream on its input link after the hello.
inline constexpr uint32_t kDeviceTag = 0x56454444u;  // "DDEV" little-endian

// True when the two devices are the same GPU: same UUID when both are known, else same host
// and ordinal.
bool same_gpu(const StageDevice& a, const StageDevice& b);

// The decision for the hop from ring position `from_position` (device `from`; 0 is rank 0) to the
// next rank (device `to`, ring position from_position + 1, or 0 when `to_is_rank0`).
bool hop_uses_nccl(int from_position, const StageDevice& from, const StageDevice& to, bool to_is_rank0);

// False when the environment forces the host path: JARVIS_NCCL set to 0, off, false or no.
bool nccl_enabled_by_env();

// Wire form of one StageDevice (also inside kHello): flags u8 (bit 0 cuda, bit 1 nccl), 3 zero
// bytes, ordinal i32, uuid[16], host length u32, host bytes (at most kMaxHostBytes).
inline constexpr size_t kMaxHostBytes = 255;
void append_stage_device(std::vector<uint8_t>& out, const StageDevice& d);
std::vector<uint8_t> encode_stage_device(const StageDevice& d);
// Reads one entry at data[*pos], advancing *pos; throws StageMessageError when malformed.
StageDevice read_stage_device(const uint8_t* data, size_t size, size_t* pos);
// A whole message of exactly one entry.
StageDevice decode_stage_device(const uint8_t* data, size_t size);

}  // namespace jarvis
