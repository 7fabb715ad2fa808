// The records that travel around the pipeline ring, and their wire form.
//
// Rank 0 cuts a step into its own layers and sends a kStep record (the step's BatchView plus the
// hidden state after its layers) to rank 1; every worker runs its layers over the hidden state and
// passes the record on; the last worker sends it back to rank 0, which computes logits (or, when
// the last rank holds the tail -- final norm and lm_head, `jarvis-serve --tail last` -- the last
// rank computes the logits of the record's rows and sends those back instead). kFree tells
// the ranks that sequences finished (their block ids may be handed out again), kError carries a
// worker's failure to rank 0 so the user sees the cause, not just a broken link. kHello goes round
// once before the first step: each rank checks that it fits the ring (same model shape and KV
// layout, its layers follow the previous rank's) and appends its layer range. kStats collects the
// per-rank metrics: rank 0 sends it empty (at most about once a second), every worker appends its
// own counters (engine/pipeline/ring_stats.h) as the record passes. Every record makes the full
// round, so rank 0 sees its own records come back in the order it sent them.
//
// Wire form, little-endian, no padding between fields:
//   common header (16 B): magic u32 "JPSM", version u16, kind u16, step_id u64
//   kStep:  micro_batch u32, n_tokens u32, n_seqs u32, hidden u32, dtype u32 (1 = f32), then per
//           sequence: seq_id i64, n_tokens u32, start_pos u32, n_blocks u32, want_logits u8,
//           3 zero bytes, block ids i32[n_blocks]; then n_rows u32, trimmed u32 (0 or 1), rows
//           u32[n_rows] (ascending token indices whose logits rank 0 needs); then by form:
//             0 (hidden): hidden f32[n_tokens, hidden] -- on its way through the layers;
//             1 (trimmed): hidden f32[n_rows, hidden] -- back from the last rank: rank 0 needs
//               only those rows, and a prefill chunk is mostly rows nobody reads;
//             2 (logits): vocab u32, then logits f32[n_rows, vocab] -- back from a last rank that
//               holds the tail; vocab must equal the receiver's (StageLimits::vocab, 0 = the
//               receiver takes no logits, so a logits record reaching a worker is an error);
//             3 (device): nothing -- hidden f32[n_tokens, hidden] follows on this hop's NCCL
//               link (device_hop.h), device to device; only a rank that agreed to NCCL on its
//               input link accepts it (StageLimits::device_payload).
//           (The u32 after n_rows was a 0/1 `trimmed` flag before version 3.)
//   kFree:  count u32, seq ids i64[count]
//   kError: length u32, UTF-8 text[length]
//   kHello: n_layers u32, hidden u32, num_blocks u32, page_size u32, tail u32 (ring position + 1
//           of the rank holding the tail so far, 0 = none yet), count u32,
//           then count x (first_layer u32, end_layer u32): the ranks passed so far, in ring order,
//           then count x a device entry (device_hop.h: flags, ordinal, uuid, host), same order
//   kStats: count u32, then count x 112-byte entries, one per worker passed so far in ring order:
//           rank u32, first_layer u32, end_layer u32, reserved u32 (0), then u64 each: steps,
//           tokens, busy_ns, wall_ns, sent_messages, sent_bytes (output link), received_messages,
//           received_bytes (input link), rtt_samples, rtt_last_ns, rtt_min_ns, rtt_smoothed_ns
//           (output link). Version 2 added kStats; version 3 the logits form of kStep and the
//           hello's tail field, version 4 the device form of kStep and the hello's devices.
// The record fills its message exactly: trailing bytes are an error like missing ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "csrc/model/kv_cache.h"
#include "csrc/util/error.h"
#include "engine/pipeline/device_hop.h"

namespace jarvis {

inline constexpr uint32_t kStageMagic = 0x4d53504au;  // "JPSM" read as little-endian bytes
inline constexpr uint16_t kStageVersion = 4;
inline constexpr uint32_t kStageDtypeF32 = 1;
inline constexpr size_t kStageHeaderBytes = 16;

enum class StageKind : uint16_t { kStep = 1, kFree = 2, kError = 3, kHello = 4, kStats = 5 };

// A record that fails any check of decode_stage_record: names the field and the bad value.
class StageMessageError : public Error {
 public:
  using Error::Error;
};

// What a receiving rank accepts. hidden, num_blocks and page_size must match the ring's model
// and KV layout exactly; the rest bound allocations a corrupt count could otherwise ask for.
struct StageLimits {
  int hidden = 0;
  int num_blocks = 0;
  int page_size = 0;
  int max_tokens = 1 << 16;     // per step
  int max_seqs = 1 << 12;       // per step
  int max_positions = 1 << 20;  // start_pos + n_tokens of any sequence
  int max_free_ids = 1 << 16;
  int max_error_bytes = 1 << 16;
  int max_stats_ranks = 1 << 12;  // entries in a kStats record
  int vocab = 0;  // a kStep in logits form must have exactly this vocabulary; 0: none is accepted
  bool device_payload = false;  // a kStep in device form is accepted (this rank has NCCL on its input)
};

// What a kStep record's payload holds (the u32 after n_rows on the wire).
enum class StageForm : uint32_t { kHidden = 0, kTrimmed = 1, kLogits = 2, kDevice = 3 };

// The ring's shape as a kHello record has seen it so far.
struct StageHello {
  int n_layers = 0;
  int hidden = 0;
  int num_blocks = 0;
  int page_size = 0;
  int tail_rank = -1;  // ring position of the rank holding the tail (final norm + lm_head); -1: none yet
  std::vector<std::pair<int, int>> ranges;  // [first_layer, end_layer) per rank, ring order
  // Per rank, ring order. May be shorter than `ranges` when encoding (rank 0 states none): the
  // missing entries at the end are sent as host devices. Decoded: exactly one per range.
  std::vector<StageDevice> devices;
};

// One rank's counters in a kStats record, all cumulative since the rank started serving steps.
// busy = time in its layers plus, where the rank holds them, the embedding and the head (logits);
// wall = time since it started, so wall - busy is the time the stage was idle (waiting for input, moving records).
// Link counters are those of transport::link_stats(): sent_* and rtt_* on the rank's output
// link, received_* on its input link (zeros for an unmeasured link).
struct StageRankStats {
  uint32_t rank = 0;  // ring position: 0 is rank 0
  uint32_t first_layer = 0, end_layer = 0;
  uint64_t steps = 0, tokens = 0;
  uint64_t busy_ns = 0, wall_ns = 0;
  uint64_t sent_messages = 0, sent_bytes = 0;
  uint64_t received_messages = 0, received_bytes = 0;
  uint64_t rtt_samples = 0, rtt_last_ns = 0, rtt_min_ns = 0, rtt_smoothed_ns = 0;
  bool operator==(const StageRankStats& o) const;
};

struct StageRecord {
  StageKind kind = StageKind::kStep;
  uint64_t step_id = 0;
  // kStep
  uint32_t micro_batch = 0;
  int hidden_size = 0;
  BatchView batch;
  std::vector<int> rows;       // token indices rank 0 computes logits for, ascending
  bool trimmed = false;        // hidden holds only `rows` (after the last rank)
  bool has_logits = false;     // logits form: `logits` holds [rows.size(), vocab], `hidden` is empty
  bool device_payload = false; // device form: the hidden state comes over NCCL, `hidden` is empty
  int vocab = 0;
  std::vector<float> hidden;   // [trimmed ? rows.size() : batch.total_tokens(), hidden_size]
  std::vector<float> logits;   // [rows.size(), vocab] when has_logits
  size_t hidden_offset = 0;    // where the hidden bytes start in the encoded record
  // kFree
  std::vector<int64_t> seq_ids;
  // kError
  std::string error;
  // kHello
  StageHello hello;
  // kStats
  std::vector<StageRankStats> stats;
};

// Encoders check the batch against itself (counts, non-negative values, block table coverage at
// page_size) and throw InvalidArgument for a step no rank could accept.
// `hidden` holds [trimmed ? rows.size() : batch.total_tokens(), hidden_size] floats.
std::vector<uint8_t> encode_stage_step(uint64_t step_id, uint32_t micro_batch, const BatchView& batch,
                                       const float* hidden, int hidden_size, int page_size,
                                       const std::vector<int>& rows = {}, bool trimmed = false);
// The logits form: what a last rank holding the tail sends back. `logits` holds
// [rows.size(), vocab] floats; hidden_size is the ring's (the receiver checks it as for any step).
std::vector<uint8_t> encode_stage_logits(uint64_t step_id, uint32_t micro_batch, const BatchView& batch,
                                         int hidden_size, int page_size, const std::vector<int>& rows,
                                         const float* logits, int vocab);
// The device form: a kStep whose [batch.total_tokens(), hidden_size] hidden state the sender
// passes over the hop's NCCL link right after this record.
std::vector<uint8_t> encode_stage_step_device(uint64_t step_id, uint32_t micro_batch, const BatchView& batch,
                                              int hidden_size, int page_size, const std::vector<int>& rows);
std::vector<uint8_t> encode_stage_free(uint64_t step_id, const std::vector<int64_t>& seq_ids);
std::vector<uint8_t> encode_stage_error(uint64_t step_id, const std::string& text);
std::vector<uint8_t> encode_stage_hello(uint64_t step_id, const StageHello& hello);
std::vector<uint8_t> encode_stage_stats(uint64_t step_id, const std::vector<StageRankStats>& stats);

// Parses and validates one record; throws StageMessageError for anything malformed or beyond
// `limits`, without reading outside [data, data + size).
StageRecord decode_stage_record(const uint8_t* data, size_t size, const StageLimits& limits);
inline StageRecord decode_stage_record(const std::vector<uint8_t>& bytes, const StageLimits& limits) {
  return decode_stage_record(bytes.data(), bytes.size(), limits);
}

}  // namespace jarvis
