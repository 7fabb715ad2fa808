// kStats records (stage_message.h): every counter survives a round trip, each layout field sits
// where the header comment says, and a damaged record (cut short, a count that lies, a reserved
// field set, layers out of order, too many entries) is refused before anything is sized by it.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/pipeline/stage_message.h"

namespace jarvis {
namespace {

StageLimits limits() {
  StageLimits l;
  l.hidden = 8;
  l.num_blocks = 32;
  l.page_size = 4;
  return l;
}

std::vector<StageRankStats> sample_stats() {
  std::vector<StageRankStats> v(3);
  uint64_t x = 0x0102030405060708ull;
  for (size_t i = 0; i < v.size(); ++i) {
    StageRankStats& s = v[i];
    s.rank = static_cast<uint32_t>(i + 1);
    s.first_layer = static_cast<uint32_t>(10 * i);
    s.end_layer = static_cast<uint32_t>(10 * i + 10);
    for (uint64_t* f : {&s.steps, &s.tokens, &s.busy_ns, &s.wall_ns, &s.sent_messages, &s.sent_bytes,
                        &s.received_messages, &s.received_bytes, &s.rtt_samples, &s.rtt_last_ns, &s.rtt_min_ns,
                        &s.rtt_smoothed_ns}) {
      *f = x;  // distinct values in every byte, so a swapped or shifted field shows
      x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
  }
  v[2].steps = ~0ull;  // the full range of a counter
  return v;
}

uint64_t get_u64(const std::vector<uint8_t>& v, size_t at) {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(v[at + i]) << (8 * i);
  return x;
}
void put_u32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = static_cast<uint8_t>(x >> (8 * i));
}

constexpr size_t kCount = 16, kEntry0 = 20, kEntryBytes = 112;

TEST(PipelineStageStats, RoundTripKeepsEveryCounter) {
  const std::vector<StageRankStats> in = sample_stats();
  const std::vector<uint8_t> bytes = encode_stage_stats(77, in);
  ASSERT_EQ(bytes.size(), kStageHeaderBytes + 4 + in.size() * kEntryBytes);
  const StageRecord r = decode_stage_record(bytes, limits());
  EXPECT_EQ(r.kind, StageKind::kStats);
  EXPECT_EQ(r.step_id, 77u);
  EXPECT_EQ(r.stats, in);
  // The layout of stage_message.h: entry 1's busy_ns is the third u64 after its 16-byte head.
  EXPECT_EQ(get_u64(bytes, kEntry0 + kEntryBytes + 16 + 2 * 8), in[1].busy_ns);
  EXPECT_EQ(get_u64(bytes, kEntry0 + 2 * kEntryBytes + 16 + 11 * 8), in[2].rtt_smoothed_ns);

  const StageRecord empty = decode_stage_record(encode_stage_stats(5, {}), limits());
  EXPECT_EQ(empty.kind, StageKind::kStats);
  EXPECT_TRUE(empty.stats.empty());
}

TEST(PipelineStageStats, EveryTruncationAndTrailingByteIsRejected) {
  const std::vector<uint8_t> bytes = encode_stage_stats(1, sample_stats());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(decode_stage_record(bytes.data(), n, limits()), StageMessageError) << n;
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  EXPECT_THROW(decode_stage_record(longer, limits()), StageMessageError);
}

TEST(PipelineStageStats, CorruptFieldsAreRejected) {
  const std::vector<uint8_t> good = encode_stage_stats(1, sample_stats());
  auto expect_bad = [&](size_t at, uint32_t value, const char* what) {
    std::vector<uint8_t> b = good;
    put_u32(b, at, value);
    EXPECT_THROW(decode_stage_record(b, limits()), StageMessageError) << what;
  };
  expect_bad(kCount, 2, "count smaller than the entries");
  expect_bad(kCount, 4, "count larger than the entries");
  expect_bad(kCount, 0xffffffffu, "count that would ask for gigabytes");
  expect_bad(kEntry0 + 4, 11, "first_layer after end_layer");
  expect_bad(kEntry0 + 12, 1, "reserved field set");
  expect_bad(kEntry0 + kEntryBytes, 0x7fffffffu, "rank out of range");
  StageLimits few = limits();
  few.max_stats_ranks = 2;
  EXPECT_THROW(decode_stage_record(good, few), StageMessageError);
  std::vector<StageRankStats> backwards = sample_stats();
  backwards[0].first_layer = 20;
  backwards[0].end_layer = 10;
  EXPECT_THROW(encode_stage_stats(1, backwards), InvalidArgument);
}

// Random byte damage: either refused, or a record whose entries keep their invariants.
TEST(PipelineStageStats, RandomDamageNeverYieldsAnInconsistentRecord) {
  const std::vector<uint8_t> good = encode_stage_stats(1, sample_stats());
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    try {
      const StageRecord r = decode_stage_record(b, limits());
      if (r.kind != StageKind::kStats) continue;  // damage may turn it into another valid kind
      ASSERT_LE(r.stats.size(), static_cast<size_t>(limits().max_stats_ranks));
      for (const StageRankStats& s : r.stats) ASSERT_LE(s.first_layer, s.end_layer);
    } catch (const StageMessageError&) {
    }
  }
}

}  // namespace
}  // namespace jarvis
