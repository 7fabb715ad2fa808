// Stage records on the wire: every field survives a round trip bit for bit, and a damaged record
// (cut short anywhere, counts or ids out of range, wrong model shape) is refused with
// StageMessageError before anything is sized or indexed by the bad value.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/pipeline/stage_message.h"

namespace jarvis {
namespace {

constexpr int kHidden = 8;
constexpr int kBlocks = 32;
constexpr int kPage = 4;

StageLimits limits() {
  StageLimits l;
  l.hidden = kHidden;
  l.num_blocks = kBlocks;
  l.page_size = kPage;
  return l;
}

BatchView sample_batch() {
  BatchView b;
  b.seqs.push_back({7, 1, 9, {3, 31, 0}, true});          // decode at position 9: 3 blocks cover 12
  b.seqs.push_back({-2, 5, 0, {17, 4}, false});           // prefill chunk, negative id is legal
  b.seqs.push_back({1LL << 40, 2, 4, {5, 6, 8}, true});   // 64-bit id, crosses a page boundary
  return b;
}

std::vector<float> sample_hidden(int n_tokens) {
  std::vector<float> h(static_cast<size_t>(n_tokens) * kHidden);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-3, 3);
  for (float& x : h) x = d(rng);
  h[0] = -0.0f;  // sign of zero and a denormal must survive too
  h[1] = 1e-40f;
  return h;
}

std::vector<uint8_t> sample_record() {
  const BatchView b = sample_batch();
  const std::vector<float> h = sample_hidden(b.total_tokens());
  return encode_stage_step(42, 3, b, h.data(), kHidden, kPage, {0, 5, 7});
}

void put_u32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = static_cast<uint8_t>(x >> (8 * i));
}

// Field offsets of the sample record (stage_message.h gives the layout).
constexpr size_t kNTokens = 20, kNSeqs = 24, kHiddenAt = 28, kDtype = 32;
constexpr size_t kSeq0 = 36;  // seq_id +0, n_tokens +8, start_pos +12, n_blocks +16, want +20, pad +21
constexpr size_t kNRows = 140, kTrimmed = 144, kRows = 148;  // after the three sequences (kTrimmed: form)

TEST(PipelineStageMessage, StepRoundTripKeepsEveryFieldAndBit) {
  const BatchView b = sample_batch();
  const std::vector<float> h = sample_hidden(b.total_tokens());
  const std::vector<uint8_t> bytes = encode_stage_step(42, 3, b, h.data(), kHidden, kPage, {0, 5, 7});
  const StageRecord r = decode_stage_record(bytes, limits());
  EXPECT_EQ(r.rows, (std::vector<int>{0, 5, 7}));
  EXPECT_FALSE(r.trimmed);
  EXPECT_EQ(r.kind, StageKind::kStep);
  EXPECT_EQ(r.step_id, 42u);
  EXPECT_EQ(r.micro_batch, 3u);
  EXPECT_EQ(r.hidden_size, kHidden);
  ASSERT_EQ(r.batch.seqs.size(), b.seqs.size());
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    EXPECT_EQ(r.batch.seqs[i].seq_id, b.seqs[i].seq_id);
    EXPECT_EQ(r.batch.seqs[i].n_tokens, b.seqs[i].n_tokens);
    EXPECT_EQ(r.batch.seqs[i].start_pos, b.seqs[i].start_pos);
    EXPECT_EQ(r.batch.seqs[i].block_table, b.seqs[i].block_table);
    EXPECT_EQ(r.batch.seqs[i].want_logits, b.seqs[i].want_logits);
  }
  ASSERT_EQ(r.hidden.size(), h.size());
  EXPECT_EQ(std::memcmp(r.hidden.data(), h.data(), h.size() * sizeof(float)), 0);
  // The hidden bytes are the record's tail: a worker patches them in place.
  EXPECT_EQ(r.hidden_offset + h.size() * sizeof(float), bytes.size());
  EXPECT_EQ(std::memcmp(bytes.data() + r.hidden_offset, h.data(), h.size() * sizeof(float)), 0);
}

// After the last rank only the logit rows travel: [rows, hidden] instead of [tokens, hidden].
TEST(PipelineStageMessage, TrimmedStepRoundTrip) {
  const BatchView b = sample_batch();
  const std::vector<float> rows_hidden = sample_hidden(2);
  const std::vector<uint8_t> bytes = encode_stage_step(1, 0, b, rows_hidden.data(), kHidden, kPage, {3, 7}, true);
  const StageRecord r = decode_stage_record(bytes, limits());
  EXPECT_TRUE(r.trimmed);
  EXPECT_EQ(r.rows, (std::vector<int>{3, 7}));
  ASSERT_EQ(r.hidden.size(), rows_hidden.size());
  EXPECT_EQ(std::memcmp(r.hidden.data(), rows_hidden.data(), rows_hidden.size() * sizeof(float)), 0);
  const StageRecord none = decode_stage_record(encode_stage_step(1, 0, b, nullptr, kHidden, kPage, {}, true), limits());
  EXPECT_TRUE(none.trimmed && none.rows.empty() && none.hidden.empty());
  EXPECT_THROW(encode_stage_step(1, 0, b, rows_hidden.data(), kHidden, kPage, {7, 3}, true), InvalidArgument);
  EXPECT_THROW(encode_stage_step(1, 0, b, rows_hidden.data(), kHidden, kPage, {3, 8}, true), InvalidArgument);
}

TEST(PipelineStageMessage, FreeAndErrorRoundTrip) {
  const std::vector<int64_t> ids = {1, -5, 1LL << 50};
  StageRecord f = decode_stage_record(encode_stage_free(9, ids), limits());
  EXPECT_EQ(f.kind, StageKind::kFree);
  EXPECT_EQ(f.step_id, 9u);
  EXPECT_EQ(f.seq_ids, ids);
  EXPECT_TRUE(decode_stage_record(encode_stage_free(10, {}), limits()).seq_ids.empty());
  StageRecord e = decode_stage_record(encode_stage_error(11, "layers [10, 20): boom"), limits());
  EXPECT_EQ(e.kind, StageKind::kError);
  EXPECT_EQ(e.error, "layers [10, 20): boom");
}

StageHello sample_hello() {
  StageHello h;
  h.n_layers = 30;
  h.hidden = 576;
  h.num_blocks = 1000;
  h.page_size = 16;
  h.ranges = {{0, 10}, {10, 30}};
  return h;
}

TEST(PipelineStageMessage, HelloRoundTripAndDamage) {
  const StageRecord r = decode_stage_record(encode_stage_hello(5, sample_hello()), limits());
  EXPECT_EQ(r.kind, StageKind::kHello);
  EXPECT_EQ(r.step_id, 5u);
  EXPECT_EQ(r.hello.n_layers, 30);
  EXPECT_EQ(r.hello.hidden, 576);
  EXPECT_EQ(r.hello.num_blocks, 1000);
  EXPECT_EQ(r.hello.page_size, 16);
  EXPECT_EQ(r.hello.ranges, sample_hello().ranges);
  EXPECT_EQ(r.hello.tail_rank, -1);
  // Layout: header 16, n_layers 16, hidden 20, num_blocks 24, page_size 28, tail 32, count 36,
  // ranges 40. Contiguity is the ranks' judgement (stage_worker), not the decoder's: only shape is
  // damaged here. A tail beyond the ranks passed so far (3 of 2) is refused.
  const std::pair<size_t, uint32_t> damage[] = {{16, 0},  {36, 0},  {36, 3}, {36, 0xffffffffu}, {32, 3},
                                                {32, 0xffffffffu}, {40, 31}, {52, 5}, {52, 31}};
  for (const auto& [at, value] : damage) {
    std::vector<uint8_t> bytes = encode_stage_hello(5, sample_hello());
    put_u32(bytes, at, value);
    EXPECT_THROW(decode_stage_record(bytes, limits()), StageMessageError) << "offset " << at << " = " << value;
  }
}

TEST(PipelineStageMessage, EveryTruncationAndAnyTrailingByteIsRejected) {
  for (const std::vector<uint8_t>& full : {sample_record(), encode_stage_free(1, {4, 5}), encode_stage_error(2, "text"),
                                           encode_stage_hello(3, sample_hello())}) {
    for (size_t n = 0; n < full.size(); ++n) {
      EXPECT_THROW(decode_stage_record(full.data(), n, limits()), StageMessageError) << "cut at " << n;
    }
    std::vector<uint8_t> longer = full;
    longer.push_back(0);
    EXPECT_THROW(decode_stage_record(longer, limits()), StageMessageError);
  }
}

TEST(PipelineStageMessage, CorruptFieldsAreRejected) {
  struct Case {
    const char* what;
    size_t at;
    uint32_t value;
  };
  const Case cases[] = {
      {"magic", 0, 0x12345678},
      {"n_tokens zero", kNTokens, 0},
      {"n_tokens one more", kNTokens, 9},
      {"n_tokens one fewer", kNTokens, 7},
      {"n_tokens huge", kNTokens, 0xffffffffu},
      {"n_seqs zero", kNSeqs, 0},
      {"n_seqs one more", kNSeqs, 4},
      {"n_seqs huge", kNSeqs, 0x7fffffffu},
      {"hidden size of another model", kHiddenAt, kHidden * 2},
      {"dtype", kDtype, 2},
      {"seq n_tokens zero", kSeq0 + 8, 0},
      {"seq n_tokens huge", kSeq0 + 8, 0xfffffff0u},
      {"start_pos past the block table", kSeq0 + 12, 12},
      {"start_pos huge (overflow bait)", kSeq0 + 12, 0x7fffffffu},
      {"n_blocks too few to cover", kSeq0 + 16, 2},
      {"n_blocks huge", kSeq0 + 16, 0xffffffffu},
      {"block id = num_blocks", kSeq0 + 24, kBlocks},
      {"block id negative", kSeq0 + 28, 0xffffffffu},
      {"n_rows over n_tokens", kNRows, 9},
      {"n_rows huge", kNRows, 0xffffffffu},
      {"n_rows one fewer (hidden size then wrong)", kNRows, 2},
      {"form 2 (logits) at a rank that takes none", kTrimmed, 2},
      {"form 3", kTrimmed, 3},
      {"trimmed without hidden to match", kTrimmed, 1},
      {"row = n_tokens", kRows + 8, 8},
      {"rows not ascending", kRows + 4, 0},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> bytes = sample_record();
    put_u32(bytes, c.at, c.value);
    EXPECT_THROW(decode_stage_record(bytes, limits()), StageMessageError) << c.what;
  }
  std::vector<uint8_t> bytes = sample_record();
  bytes[4] = static_cast<uint8_t>(kStageVersion + 1);  // version
  EXPECT_THROW(decode_stage_record(bytes, limits()), StageMessageError);
  bytes = sample_record();
  bytes[6] = 9;  // kind
  EXPECT_THROW(decode_stage_record(bytes, limits()), StageMessageError);
  bytes = sample_record();
  bytes[kSeq0 + 20] = 2;  // want_logits is a bool
  EXPECT_THROW(decode_stage_record(bytes, limits()), StageMessageError);
  bytes = sample_record();
  bytes[kSeq0 + 22] = 1;  // padding
  EXPECT_THROW(decode_stage_record(bytes, limits()), StageMessageError);
  std::vector<uint8_t> free_rec = encode_stage_free(1, {4, 5});
  put_u32(free_rec, 16, 0xffffffffu);
  EXPECT_THROW(decode_stage_record(free_rec, limits()), StageMessageError);
  std::vector<uint8_t> err_rec = encode_stage_error(1, "abc");
  put_u32(err_rec, 16, 4);
  EXPECT_THROW(decode_stage_record(err_rec, limits()), StageMessageError);
}

// Random damage to the header and metadata: whatever decodes must still be self-consistent and
// inside the limits (a worker indexes its cache with it); everything else is a StageMessageError.
TEST(PipelineStageMessage, RandomDamageNeverYieldsAnOutOfRangeRecord) {
  const std::vector<uint8_t> good = sample_record();
  const size_t meta = good.size() - static_cast<size_t>(sample_batch().total_tokens()) * kHidden * sizeof(float);
  std::mt19937 rng(7);
  int accepted = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) bytes[rng() % meta] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const StageRecord r = decode_stage_record(bytes, limits());
      ++accepted;
      ASSERT_EQ(r.kind, StageKind::kStep);
      int64_t total = 0;
      for (const SequenceSlice& s : r.batch.seqs) {
        ASSERT_GT(s.n_tokens, 0);
        ASSERT_GE(s.start_pos, 0);
        ASSERT_GE(static_cast<int64_t>(s.block_table.size()) * kPage, int64_t{s.start_pos} + s.n_tokens);
        for (int32_t b : s.block_table) ASSERT_TRUE(b >= 0 && b < kBlocks);
        total += s.n_tokens;
      }
      for (size_t i = 0; i < r.rows.size(); ++i) {
        ASSERT_TRUE(r.rows[i] >= 0 && r.rows[i] < total && (i == 0 || r.rows[i] > r.rows[i - 1]));
      }
      ASSERT_EQ((r.trimmed ? r.rows.size() : static_cast<size_t>(total)) * kHidden, r.hidden.size());
    } catch (const StageMessageError&) {
    }
  }
  // Flips of ids, positions or block ids that stay in range are legal records: some must pass,
  // or the check above tested nothing.
  EXPECT_GT(accepted, 0);
}

TEST(PipelineStageMessage, EncoderRefusesAnInconsistentBatch) {
  BatchView b = sample_batch();
  const std::vector<float> h = sample_hidden(b.total_tokens());
  b.seqs[0].block_table = {3, 31};  // 8 slots, the token sits at position 9
  EXPECT_THROW(encode_stage_step(1, 0, b, h.data(), kHidden, kPage), InvalidArgument);
  EXPECT_THROW(encode_stage_step(1, 0, BatchView{}, h.data(), kHidden, kPage), InvalidArgument);
}

// The logits form (a last rank holding the tail): rows and every logit bit survive; rank 0 checks
// the vocabulary, the row count against the bytes, and a rank that takes no logits refuses them.
constexpr int kVocab = 11;

StageLimits logit_limits() {
  StageLimits l = limits();
  l.vocab = kVocab;
  return l;
}

std::vector<float> sample_logits(size_t rows) {
  std::vector<float> v(rows * kVocab);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-30, 30);
  for (float& x : v) x = d(rng);
  v[0] = -0.0f;
  v[1] = 1e-40f;
  return v;
}

TEST(PipelineStageMessage, LogitsRoundTripKeepsEveryBit) {
  const BatchView b = sample_batch();
  const std::vector<int> rows = {0, 5, 7};
  const std::vector<float> lg = sample_logits(rows.size());
  const std::vector<uint8_t> bytes = encode_stage_logits(42, 3, b, kHidden, kPage, rows, lg.data(), kVocab);
  const StageRecord r = decode_stage_record(bytes, logit_limits());
  EXPECT_EQ(r.kind, StageKind::kStep);
  EXPECT_EQ(r.step_id, 42u);
  EXPECT_EQ(r.micro_batch, 3u);
  EXPECT_TRUE(r.has_logits);
  EXPECT_FALSE(r.trimmed);
  EXPECT_EQ(r.vocab, kVocab);
  EXPECT_EQ(r.rows, rows);
  EXPECT_TRUE(r.hidden.empty());
  ASSERT_EQ(r.logits.size(), lg.size());
  EXPECT_EQ(std::memcmp(r.logits.data(), lg.data(), lg.size() * sizeof(float)), 0);
  ASSERT_EQ(r.batch.seqs.size(), b.seqs.size());
  EXPECT_EQ(r.batch.seqs[2].block_table, b.seqs[2].block_table);
  // No rows (a step nobody samples from) is a legal, empty logits record.
  const StageRecord e = decode_stage_record(encode_stage_logits(1, 0, b, kHidden, kPage, {}, nullptr, kVocab),
                                            logit_limits());
  EXPECT_TRUE(e.has_logits);
  EXPECT_TRUE(e.logits.empty());
}

TEST(PipelineStageMessage, MalformedLogitsAreRejected) {
  const BatchView b = sample_batch();
  const std::vector<int> rows = {0, 5, 7};
  const std::vector<float> lg = sample_logits(rows.size());
  const std::vector<uint8_t> good = encode_stage_logits(42, 3, b, kHidden, kPage, rows, lg.data(), kVocab);
  const size_t vocab_at = kRows + 4 * rows.size();
  // Another model's vocabulary, on the wire or in the receiver's limits.
  std::vector<uint8_t> bytes = good;
  put_u32(bytes, vocab_at, kVocab + 1);
  EXPECT_THROW(decode_stage_record(bytes, logit_limits()), StageMessageError);
  StageLimits other = logit_limits();
  other.vocab = kVocab - 1;
  EXPECT_THROW(decode_stage_record(good, other), StageMessageError);
  // A rank that takes hidden states only (a worker) refuses logits.
  EXPECT_THROW(decode_stage_record(good, limits()), StageMessageError);
  // Row count that does not match the logits bytes: one row fewer (the last row index then reads
  // as the vocabulary, and the bytes are a row too many), or one more.
  bytes = good;
  put_u32(bytes, kNRows, 2);
  EXPECT_THROW(decode_stage_record(bytes, logit_limits()), StageMessageError);
  std::vector<uint8_t> short_by_a_row(good.begin(), good.end() - kVocab * sizeof(float));
  EXPECT_THROW(decode_stage_record(short_by_a_row, logit_limits()), StageMessageError);
  // Logits for rows the record does not list (the encoder's row count is the payload's).
  const std::vector<float> four = sample_logits(4);
  std::vector<uint8_t> extra = good;
  extra.insert(extra.end(), reinterpret_cast<const uint8_t*>(four.data()),
               reinterpret_cast<const uint8_t*>(four.data()) + kVocab * sizeof(float));
  EXPECT_THROW(decode_stage_record(extra, logit_limits()), StageMessageError);
  // Every truncation.
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(decode_stage_record(good.data(), n, logit_limits()), StageMessageError) << "cut at " << n;
  }
  EXPECT_THROW(encode_stage_logits(1, 0, b, kHidden, kPage, rows, lg.data(), 0), InvalidArgument);
  EXPECT_THROW(encode_stage_logits(1, 0, b, kHidden, kPage, {5, 0}, lg.data(), kVocab), InvalidArgument);
}

TEST(PipelineStageMessage, HelloCarriesTheTail) {
  StageHello h = sample_hello();
  h.tail_rank = 1;
  const StageRecord r = decode_stage_record(encode_stage_hello(5, h), limits());
  EXPECT_EQ(r.hello.tail_rank, 1);
  h.tail_rank = 0;
  EXPECT_EQ(decode_stage_record(encode_stage_hello(5, h), limits()).hello.tail_rank, 0);
}

}  // namespace
}  // namespace jarvis
