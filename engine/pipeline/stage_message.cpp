#include "engine/pipeline/stage_message.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>

namespace jarvis {
namespace {

// Hidden states are copied as raw float bytes: the wire is little-endian IEEE-754 and so is every
// host we build for; a big-endian port would have to swap here.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "stage messages assume a little-endian host");

constexpr size_t kStepFixedBytes = 20;  // micro_batch, n_tokens, n_seqs, hidden, dtype
constexpr size_t kSeqFixedBytes = 24;   // seq_id, n_tokens, start_pos, n_blocks, want_logits + pad
constexpr int kMaxLayers = 1 << 16;     // bounds a hello's rank list
constexpr size_t kStatsEntryBytes = 16 + 12 * 8;

class Writer {
 public:
  explicit Writer(size_t reserve) { out_.reserve(reserve); }
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void bytes(const void* p, size_t n) {
    if (n == 0) return;  // p may be null then
    const auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  size_t size() const { return out_.size(); }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

// Bounds-checked reads: every read names its field, so a truncated record says where it ended.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), size_(size) {}
  uint8_t u8(const char* what) { return static_cast<uint8_t>(get(1, what)); }
  uint16_t u16(const char* what) { return static_cast<uint16_t>(get(2, what)); }
  uint32_t u32(const char* what) { return static_cast<uint32_t>(get(4, what)); }
  uint64_t u64(const char* what) { return get(8, what); }
  const uint8_t* take(size_t n, const char* what) {
    need(n, what);
    const uint8_t* at = p_ + pos_;
    pos_ += n;
    return at;
  }
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

 private:
  void need(size_t n, const char* what) const {
    if (n > size_ - pos_) {
      throw StageMessageError("stage record truncated at byte " + std::to_string(pos_) + " reading " + what +
                              " (" + std::to_string(n) + " bytes wanted, " + std::to_string(size_ - pos_) +
                              " left)");
    }
  }
  uint64_t get(int n, const char* what) {
    need(static_cast<size_t>(n), what);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p_[pos_ + i]) << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
};

[[noreturn]] void bad(const std::string& what) { throw StageMessageError("stage record: " + what); }

// A count read from the wire, checked against [lo, hi] before anything is sized by it.
int checked_count(uint32_t v, int64_t lo, int64_t hi, const char* what) {
  if (static_cast<int64_t>(v) < lo || static_cast<int64_t>(v) > hi) {
    bad(std::string(what) + " " + std::to_string(v) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
        "]");
  }
  return static_cast<int>(v);
}

void write_header(Writer& w, StageKind kind, uint64_t step_id) {
  w.u32(kStageMagic);
  w.u16(kStageVersion);
  w.u16(static_cast<uint16_t>(kind));
  w.u64(step_id);
}

void decode_step(Reader& r, StageRecord& rec, const StageLimits& lim) {
  rec.micro_batch = r.u32("micro_batch");
  const int n_tokens = checked_count(r.u32("n_tokens"), 1, lim.max_tokens, "n_tokens");
  const int n_seqs = checked_count(r.u32("n_seqs"), 1, std::min(lim.max_seqs, n_tokens), "n_seqs");
  const uint32_t hidden = r.u32("hidden");
  if (static_cast<int64_t>(hidden) != lim.hidden) {
    bad("hidden size " + std::to_string(hidden) + ", this rank's model has " + std::to_string(lim.hidden));
  }
  const uint32_t dtype = r.u32("dtype");
  if (dtype != kStageDtypeF32) bad("dtype " + std::to_string(dtype) + " (only 1 = f32 is known)");
  rec.hidden_size = lim.hidden;

  rec.batch.seqs.resize(static_cast<size_t>(n_seqs));
  int64_t sum = 0;
  for (int i = 0; i < n_seqs; ++i) {
    SequenceSlice& s = rec.batch.seqs[static_cast<size_t>(i)];
    const std::string at = "sequence " + std::to_string(i) + ": ";
    s.seq_id = static_cast<int64_t>(r.u64("seq_id"));
    s.n_tokens = checked_count(r.u32("seq n_tokens"), 1, n_tokens, "seq n_tokens");
    s.start_pos = checked_count(r.u32("start_pos"), 0, lim.max_positions, "start_pos");
    const int64_t end = static_cast<int64_t>(s.start_pos) + s.n_tokens;
    if (end > lim.max_positions) bad(at + "positions end at " + std::to_string(end) + ", over the limit");
    const int max_blocks = std::min(lim.num_blocks, lim.max_positions / std::max(1, lim.page_size) + 1);
    const int n_blocks = checked_count(r.u32("n_blocks"), 0, max_blocks, "n_blocks");
    if (static_cast<int64_t>(n_blocks) * lim.page_size < end) {
      bad(at + std::to_string(n_blocks) + " blocks of " + std::to_string(lim.page_size) + " do not cover position " +
          std::to_string(end - 1));
    }
    const uint8_t want = r.u8("want_logits");
    if (want > 1) bad(at + "want_logits " + std::to_string(want));
    s.want_logits = want == 1;
    const uint8_t* pad = r.take(3, "padding");
    if (pad[0] != 0 || pad[1] != 0 || pad[2] != 0) bad(at + "non-zero padding");
    const uint8_t* ids = r.take(static_cast<size_t>(n_blocks) * 4, "block table");
    s.block_table.resize(static_cast<size_t>(n_blocks));
    for (int b = 0; b < n_blocks; ++b) {
      uint32_t v = 0;
      for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(ids[4 * b + k]) << (8 * k);
      if (v >= static_cast<uint32_t>(lim.num_blocks)) {
        bad(at + "block id " + std::to_string(v) + " outside this rank's " + std::to_string(lim.num_blocks) +
            " blocks");
      }
      s.block_table[static_cast<size_t>(b)] = static_cast<int32_t>(v);
    }
    sum += s.n_tokens;
  }
  if (sum != n_tokens) {
    bad("sequences hold " + std::to_string(sum) + " tokens, header says " + std::to_string(n_tokens));
  }

  const int n_rows = checked_count(r.u32("n_rows"), 0, n_tokens, "n_rows");
  const uint32_t form = r.u32("form");
  if (form > static_cast<uint32_t>(StageForm::kDevice)) bad("step form " + std::to_string(form));
  rec.device_payload = form == static_cast<uint32_t>(StageForm::kDevice);
  if (rec.device_payload && !lim.device_payload) {
    bad("hidden state on a device link, but this rank agreed to none on its input (NCCL hop set up on one end only?)");
  }
  rec.trimmed = form == static_cast<uint32_t>(StageForm::kTrimmed);
  rec.has_logits = form == static_cast<uint32_t>(StageForm::kLogits);
  rec.rows.resize(static_cast<size_t>(n_rows));
  for (int i = 0; i < n_rows; ++i) {
    const int row = checked_count(r.u32("row"), 0, n_tokens - 1, "row");
    if (i > 0 && row <= rec.rows[static_cast<size_t>(i - 1)]) bad("rows not ascending");
    rec.rows[static_cast<size_t>(i)] = row;
  }

  if (rec.has_logits) {
    if (lim.vocab <= 0) bad("logits record, but this rank takes hidden states only (a tail before the last rank?)");
    const uint32_t vocab = r.u32("vocab");
    if (static_cast<int64_t>(vocab) != lim.vocab) {
      bad("logits of vocabulary " + std::to_string(vocab) + ", this rank's model has " + std::to_string(lim.vocab));
    }
    rec.vocab = lim.vocab;
    // Checked against the size before anything is allocated, as for hidden states.
    const size_t logits_bytes = static_cast<size_t>(n_rows) * vocab * sizeof(float);
    if (r.left() != logits_bytes) {
      bad("logits are " + std::to_string(r.left()) + " bytes, [" + std::to_string(n_rows) + ", " +
          std::to_string(vocab) + "] f32 needs " + std::to_string(logits_bytes));
    }
    rec.hidden_offset = r.pos();
    rec.logits.resize(static_cast<size_t>(n_rows) * vocab);
    const uint8_t* src = r.take(logits_bytes, "logits");
    if (logits_bytes > 0) std::memcpy(rec.logits.data(), src, logits_bytes);
    return;
  }
  if (rec.device_payload) {
    if (r.left() != 0) bad("device-form step carries " + std::to_string(r.left()) + " payload bytes");
    rec.hidden_offset = r.pos();
    return;
  }
  const size_t hidden_rows = static_cast<size_t>(rec.trimmed ? n_rows : n_tokens);
  const size_t hidden_bytes = hidden_rows * hidden * sizeof(float);
  if (r.left() != hidden_bytes) {
    bad("hidden state is " + std::to_string(r.left()) + " bytes, [" + std::to_string(hidden_rows) + ", " +
        std::to_string(hidden) + "] f32 needs " + std::to_string(hidden_bytes));
  }
  rec.hidden_offset = r.pos();
  rec.hidden.resize(hidden_rows * hidden);
  const uint8_t* src = r.take(hidden_bytes, "hidden");
  if (hidden_bytes > 0) std::memcpy(rec.hidden.data(), src, hidden_bytes);  // a trimmed step may have no rows
}

// Everything of a kStep up to its payload; the caller appends the payload bytes.
Writer write_step(uint64_t step_id, uint32_t micro_batch, const BatchView& batch, int hidden_size, int page_size,
                  const std::vector<int>& rows, StageForm form, size_t payload_bytes) {
  if (batch.seqs.empty()) throw InvalidArgument("stage step: no sequences");
  if (hidden_size <= 0 || page_size <= 0) throw InvalidArgument("stage step: bad hidden size or page size");
  size_t bytes = kStageHeaderBytes + kStepFixedBytes;
  int64_t n_tokens = 0;
  for (const SequenceSlice& s : batch.seqs) {
    if (s.n_tokens <= 0 || s.start_pos < 0) throw InvalidArgument("stage step: empty slice or negative position");
    if (static_cast<int64_t>(s.block_table.size()) * page_size < static_cast<int64_t>(s.start_pos) + s.n_tokens) {
      throw InvalidArgument("stage step: block table of sequence " + std::to_string(s.seq_id) +
                            " does not cover its tokens");
    }
    for (int32_t b : s.block_table) {
      if (b < 0) throw InvalidArgument("stage step: negative block id");
    }
    n_tokens += s.n_tokens;
    bytes += kSeqFixedBytes + 4 * s.block_table.size();
  }
  if (n_tokens > std::numeric_limits<int32_t>::max()) throw InvalidArgument("stage step: too many tokens");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= n_tokens || (i > 0 && rows[i] <= rows[i - 1])) {
      throw InvalidArgument("stage step: rows must be ascending token indices");
    }
  }
  bytes += 12 + 4 * rows.size();
  Writer w(bytes + payload_bytes);
  write_header(w, StageKind::kStep, step_id);
  w.u32(micro_batch);
  w.u32(static_cast<uint32_t>(n_tokens));
  w.u32(static_cast<uint32_t>(batch.seqs.size()));
  w.u32(static_cast<uint32_t>(hidden_size));
  w.u32(kStageDtypeF32);
  for (const SequenceSlice& s : batch.seqs) {
    w.u64(static_cast<uint64_t>(s.seq_id));
    w.u32(static_cast<uint32_t>(s.n_tokens));
    w.u32(static_cast<uint32_t>(s.start_pos));
    w.u32(static_cast<uint32_t>(s.block_table.size()));
    w.u8(s.want_logits ? 1 : 0);
    w.u8(0);
    w.u8(0);
    w.u8(0);
    for (int32_t b : s.block_table) w.u32(static_cast<uint32_t>(b));
  }
  w.u32(static_cast<uint32_t>(rows.size()));
  w.u32(static_cast<uint32_t>(form));
  for (int row : rows) w.u32(static_cast<uint32_t>(row));
  return w;
}

}  // namespace

std::vector<uint8_t> encode_stage_step(uint64_t step_id, uint32_t micro_batch, const BatchView& batch,
                                       const float* hidden, int hidden_size, int page_size,
                                       const std::vector<int>& rows, bool trimmed) {
  int64_t n_tokens = 0;
  for (const SequenceSlice& s : batch.seqs) n_tokens += std::max(0, s.n_tokens);
  const size_t hidden_rows = trimmed ? rows.size() : static_cast<size_t>(n_tokens);
  const size_t hidden_bytes = hidden_rows * static_cast<size_t>(std::max(0, hidden_size)) * sizeof(float);
  Writer w = write_step(step_id, micro_batch, batch, hidden_size, page_size, rows,
                        trimmed ? StageForm::kTrimmed : StageForm::kHidden, hidden_bytes);
  w.bytes(hidden, hidden_bytes);
  return w.take();
}

std::vector<uint8_t> encode_stage_logits(uint64_t step_id, uint32_t micro_batch, const BatchView& batch,
                                         int hidden_size, int page_size, const std::vector<int>& rows,
                                         const float* logits, int vocab) {
  if (vocab <= 0) throw InvalidArgument("stage step: bad vocabulary size");
  const size_t logits_bytes = rows.size() * static_cast<size_t>(vocab) * sizeof(float);
  Writer w = write_step(step_id, micro_batch, batch, hidden_size, page_size, rows, StageForm::kLogits,
                        4 + logits_bytes);
  w.u32(static_cast<uint32_t>(vocab));
  w.bytes(logits, logits_bytes);
  return w.take();
}

std::vector<uint8_t> encode_stage_step_device(uint64_t step_id, uint32_t micro_batch, const BatchView& batch,
                                              int hidden_size, int page_size, const std::vector<int>& rows) {
  return write_step(step_id, micro_batch, batch, hidden_size, page_size, rows, StageForm::kDevice, 0).take();
}

std::vector<uint8_t> encode_stage_free(uint64_t step_id, const std::vector<int64_t>& seq_ids) {
  Writer w(kStageHeaderBytes + 4 + 8 * seq_ids.size());
  write_header(w, StageKind::kFree, step_id);
  w.u32(static_cast<uint32_t>(seq_ids.size()));
  for (int64_t id : seq_ids) w.u64(static_cast<uint64_t>(id));
  return w.take();
}

std::vector<uint8_t> encode_stage_error(uint64_t step_id, const std::string& text) {
  const std::string t = text.substr(0, 4096);  // a message, not a dump: keeps it under any limit
  Writer w(kStageHeaderBytes + 4 + t.size());
  write_header(w, StageKind::kError, step_id);
  w.u32(static_cast<uint32_t>(t.size()));
  w.bytes(t.data(), t.size());
  return w.take();
}

std::vector<uint8_t> encode_stage_hello(uint64_t step_id, const StageHello& h) {
  Writer w(kStageHeaderBytes + 24 + 8 * h.ranges.size());
  write_header(w, StageKind::kHello, step_id);
  w.u32(static_cast<uint32_t>(h.n_layers));
  w.u32(static_cast<uint32_t>(h.hidden));
  w.u32(static_cast<uint32_t>(h.num_blocks));
  w.u32(static_cast<uint32_t>(h.page_size));
  w.u32(static_cast<uint32_t>(h.tail_rank < 0 ? 0 : h.tail_rank + 1));
  w.u32(static_cast<uint32_t>(h.ranges.size()));
  for (const auto& [first, end] : h.ranges) {
    w.u32(static_cast<uint32_t>(first));
    w.u32(static_cast<uint32_t>(end));
  }
  if (h.devices.size() > h.ranges.size()) throw InvalidArgument("stage hello: more devices than ranks");
  std::vector<uint8_t> devices;
  for (size_t i = 0; i < h.ranges.size(); ++i) {
    append_stage_device(devices, i < h.devices.size() ? h.devices[i] : StageDevice{});
  }
  w.bytes(devices.data(), devices.size());
  return w.take();
}

std::vector<uint8_t> encode_stage_stats(uint64_t step_id, const std::vector<StageRankStats>& stats) {
  Writer w(kStageHeaderBytes + 4 + kStatsEntryBytes * stats.size());
  write_header(w, StageKind::kStats, step_id);
  w.u32(static_cast<uint32_t>(stats.size()));
  for (const StageRankStats& s : stats) {
    if (s.first_layer > s.end_layer) throw InvalidArgument("stage stats: first_layer after end_layer");
    w.u32(s.rank);
    w.u32(s.first_layer);
    w.u32(s.end_layer);
    w.u32(0);
    for (uint64_t v : {s.steps, s.tokens, s.busy_ns, s.wall_ns, s.sent_messages, s.sent_bytes, s.received_messages,
                       s.received_bytes, s.rtt_samples, s.rtt_last_ns, s.rtt_min_ns, s.rtt_smoothed_ns}) {
      w.u64(v);
    }
  }
  return w.take();
}

bool StageRankStats::operator==(const StageRankStats& o) const {
  return rank == o.rank && first_layer == o.first_layer && end_layer == o.end_layer && steps == o.steps &&
         tokens == o.tokens && busy_ns == o.busy_ns && wall_ns == o.wall_ns && sent_messages == o.sent_messages &&
         sent_bytes == o.sent_bytes && received_messages == o.received_messages &&
         received_bytes == o.received_bytes && rtt_samples == o.rtt_samples && rtt_last_ns == o.rtt_last_ns &&
         rtt_min_ns == o.rtt_min_ns && rtt_smoothed_ns == o.rtt_smoothed_ns;
}

StageRecord decode_stage_record(const uint8_t* data, size_t size, const StageLimits& lim) {
  if (lim.hidden <= 0 || lim.num_blocks <= 0 || lim.page_size <= 0) {
    throw InvalidArgument("stage limits need hidden, num_blocks and page_size");
  }
  Reader r(data, size);
  const uint32_t magic = r.u32("magic");
  if (magic != kStageMagic) bad("bad magic (not a stage record)");
  const uint16_t version = r.u16("version");
  if (version != kStageVersion) {
    bad("version " + std::to_string(version) + ", this build speaks " + std::to_string(kStageVersion));
  }
  const uint16_t kind = r.u16("kind");
  StageRecord rec;
  rec.step_id = r.u64("step_id");
  switch (kind) {
    case static_cast<uint16_t>(StageKind::kStep):
      rec.kind = StageKind::kStep;
      decode_step(r, rec, lim);
      break;
    case static_cast<uint16_t>(StageKind::kFree): {
      rec.kind = StageKind::kFree;
      const int n = checked_count(r.u32("count"), 0, lim.max_free_ids, "free count");
      const uint8_t* ids = r.take(static_cast<size_t>(n) * 8, "seq ids");
      rec.seq_ids.resize(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        uint64_t v = 0;
        for (int k = 0; k < 8; ++k) v |= static_cast<uint64_t>(ids[8 * i + k]) << (8 * k);
        rec.seq_ids[static_cast<size_t>(i)] = static_cast<int64_t>(v);
      }
      break;
    }
    case static_cast<uint16_t>(StageKind::kError): {
      rec.kind = StageKind::kError;
      const int n = checked_count(r.u32("length"), 0, lim.max_error_bytes, "error length");
      const uint8_t* text = r.take(static_cast<size_t>(n), "error text");
      rec.error.assign(reinterpret_cast<const char*>(text), static_cast<size_t>(n));
      break;
    }
    case static_cast<uint16_t>(StageKind::kHello): {
      // Only self-consistency here: whether the ring fits this rank is the rank's judgement.
      rec.kind = StageKind::kHello;
      StageHello& h = rec.hello;
      h.n_layers = checked_count(r.u32("n_layers"), 1, kMaxLayers, "n_layers");
      h.hidden = checked_count(r.u32("hidden"), 1, std::numeric_limits<int32_t>::max(), "hidden");
      h.num_blocks = checked_count(r.u32("num_blocks"), 1, std::numeric_limits<int32_t>::max(), "num_blocks");
      h.page_size = checked_count(r.u32("page_size"), 1, std::numeric_limits<int32_t>::max(), "page_size");
      const int tail = checked_count(r.u32("tail"), 0, kMaxLayers, "tail");
      const int n = checked_count(r.u32("count"), 1, kMaxLayers, "rank count");
      if (tail > n) bad("tail at ring position " + std::to_string(tail - 1) + " of " + std::to_string(n) + " ranks");
      h.tail_rank = tail - 1;
      for (int i = 0; i < n; ++i) {
        const int first = checked_count(r.u32("first_layer"), 0, h.n_layers, "first_layer");
        const int end = checked_count(r.u32("end_layer"), first, h.n_layers, "end_layer");
        h.ranges.emplace_back(first, end);
      }
      size_t pos = r.pos();
      for (int i = 0; i < n; ++i) h.devices.push_back(read_stage_device(data, size, &pos));
      r.take(pos - r.pos(), "devices");
      break;
    }
    case static_cast<uint16_t>(StageKind::kStats): {
      rec.kind = StageKind::kStats;
      const int n = checked_count(r.u32("count"), 0, lim.max_stats_ranks, "stats count");
      // The size is known from the count: check it before reserving, so a lying count asks for nothing.
      if (r.left() != static_cast<size_t>(n) * kStatsEntryBytes) {
        bad("stats record holds " + std::to_string(r.left()) + " bytes for " + std::to_string(n) + " entries of " +
            std::to_string(kStatsEntryBytes));
      }
      rec.stats.resize(static_cast<size_t>(n));
      for (StageRankStats& s : rec.stats) {
        s.rank = static_cast<uint32_t>(checked_count(r.u32("rank"), 0, kMaxLayers, "rank"));
        s.first_layer = static_cast<uint32_t>(checked_count(r.u32("first_layer"), 0, kMaxLayers, "first_layer"));
        s.end_layer =
            static_cast<uint32_t>(checked_count(r.u32("end_layer"), s.first_layer, kMaxLayers, "end_layer"));
        if (r.u32("reserved") != 0) bad("non-zero reserved field in a stats entry");
        for (uint64_t* v : {&s.steps, &s.tokens, &s.busy_ns, &s.wall_ns, &s.sent_messages, &s.sent_bytes,
                            &s.received_messages, &s.received_bytes, &s.rtt_samples, &s.rtt_last_ns, &s.rtt_min_ns,
                            &s.rtt_smoothed_ns}) {
          *v = r.u64("stats counter");
        }
      }
      break;
    }
    default:
      bad("unknown kind " + std::to_string(kind));
  }
  if (r.left() != 0) bad(std::to_string(r.left()) + " trailing bytes");
  return rec;
}

}  // namespace jarvis
