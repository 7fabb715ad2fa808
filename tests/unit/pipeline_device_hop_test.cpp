// Which ring hops move hidden states over NCCL (engine/pipeline/device_hop.h), the wire form of
// the devices and of the device-form kStep, and both ends of every hop deciding alike from what
// the hello and the answer carry. The NCCL transfers themselves need GPUs
// (tests/gpu/nccl_stage_worker_test.cpp); pipeline_device_path_test.cpp runs the workers' device
// path over an in-memory stand-in.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "engine/pipeline/device_hop.h"
#include "engine/pipeline/stage_message.h"

namespace jarvis {
namespace {

StageDevice gpu(int ordinal, uint8_t uuid_byte, const std::string& host = "h1") {
  StageDevice d;
  d.cuda = true;
  d.nccl = true;
  d.ordinal = ordinal;
  d.uuid[0] = uuid_byte;
  d.uuid[15] = static_cast<uint8_t>(0xa0 | uuid_byte);
  d.host = host;
  return d;
}

StageDevice cpu(const std::string& host = "h1") {
  StageDevice d;
  d.host = host;
  return d;
}

TEST(PipelineDeviceHop, OnlyForwardHopsBetweenDistinctGpusUseNccl) {
  EXPECT_TRUE(hop_uses_nccl(1, gpu(0, 1), gpu(1, 2), false));
  EXPECT_TRUE(hop_uses_nccl(2, gpu(0, 1, "a"), gpu(0, 2, "b"), false));  // same ordinal, other host
  // Rank 0 -> rank 1 is a forward hop like any other; the return hop to rank 0 keeps UCX
  // whatever the devices (it carries only trimmed rows or logits).
  EXPECT_TRUE(hop_uses_nccl(0, gpu(0, 1), gpu(1, 2), false));
  EXPECT_FALSE(hop_uses_nccl(3, gpu(0, 1), gpu(1, 2), true));
  EXPECT_FALSE(hop_uses_nccl(1, gpu(1, 2), gpu(0, 1), true));  // a two-rank ring's way back
  EXPECT_FALSE(hop_uses_nccl(-1, gpu(0, 1), gpu(1, 2), false));
  // Rank 0's rows of the table: CPU on either end, one GPU twice, NCCL off on either end.
  EXPECT_FALSE(hop_uses_nccl(0, cpu(), gpu(1, 2), false));
  EXPECT_FALSE(hop_uses_nccl(0, gpu(0, 1), cpu(), false));
  EXPECT_FALSE(hop_uses_nccl(0, gpu(0, 7, "a"), gpu(1, 7, "a"), false));
  StageDevice r0_off = gpu(0, 1), r1_off = gpu(1, 2);
  r0_off.nccl = false;
  r1_off.nccl = false;
  EXPECT_FALSE(hop_uses_nccl(0, r0_off, gpu(1, 2), false));
  EXPECT_FALSE(hop_uses_nccl(0, gpu(0, 1), r1_off, false));
  EXPECT_TRUE(hop_uses_nccl(0, gpu(3, 1, "a"), gpu(3, 2, "b"), false));  // same ordinal, two hosts
  // A CPU on either end.
  EXPECT_FALSE(hop_uses_nccl(1, cpu(), gpu(1, 2), false));
  EXPECT_FALSE(hop_uses_nccl(1, gpu(0, 1), cpu(), false));
  EXPECT_FALSE(hop_uses_nccl(1, cpu(), cpu(), false));
  // One GPU twice (NCCL refuses it): by UUID, whatever the hosts say ...
  EXPECT_FALSE(hop_uses_nccl(1, gpu(0, 7, "a"), gpu(3, 7, "b"), false));
  // ... or, with no UUID known, by host and ordinal.
  StageDevice a = gpu(2, 0), b = gpu(2, 0);
  a.uuid.fill(0);
  b.uuid.fill(0);
  EXPECT_FALSE(hop_uses_nccl(1, a, b, false));
  b.ordinal = 3;
  EXPECT_TRUE(hop_uses_nccl(1, a, b, false));
  b.host = "h2";
  b.ordinal = 2;
  EXPECT_TRUE(hop_uses_nccl(1, a, b, false));
  // Either end unable or unwilling (no NCCL in its build, JARVIS_NCCL=0).
  StageDevice off = gpu(1, 2);
  off.nccl = false;
  EXPECT_FALSE(hop_uses_nccl(1, gpu(0, 1), off, false));
  EXPECT_FALSE(hop_uses_nccl(1, off, gpu(0, 1), false));
}

TEST(PipelineDeviceHop, EnvironmentForcesTheHostPath) {
  const char* saved = std::getenv("JARVIS_NCCL");
  const std::string keep = saved ? saved : "";
  unsetenv("JARVIS_NCCL");
  EXPECT_TRUE(nccl_enabled_by_env());
  for (const char* v : {"0", "off", "OFF", "false", "no"}) {
    setenv("JARVIS_NCCL", v, 1);
    EXPECT_FALSE(nccl_enabled_by_env()) << v;
  }
  setenv("JARVIS_NCCL", "1", 1);
  EXPECT_TRUE(nccl_enabled_by_env());
  if (saved) setenv("JARVIS_NCCL", keep.c_str(), 1);
  else unsetenv("JARVIS_NCCL");
}

TEST(PipelineDeviceHop, DeviceEntryRoundTripsAndDamageIsRejected) {
  for (const StageDevice& d : {gpu(5, 9, "node-17.cluster"), cpu("x"), cpu(""), gpu(0, 1, std::string(255, 'h'))}) {
    const std::vector<uint8_t> w = encode_stage_device(d);
    EXPECT_EQ(decode_stage_device(w.data(), w.size()), d) << d.str();
    for (size_t n = 0; n < w.size(); ++n) EXPECT_THROW(decode_stage_device(w.data(), n), StageMessageError) << n;
    std::vector<uint8_t> longer = w;
    longer.push_back(0);
    EXPECT_THROW(decode_stage_device(longer.data(), longer.size()), StageMessageError);
  }
  const std::vector<uint8_t> good = encode_stage_device(gpu(1, 2));
  auto damaged = [&](size_t at, uint8_t v) {
    std::vector<uint8_t> w = good;
    w[at] = v;
    return w;
  };
  for (const auto& w : {damaged(0, 4), damaged(0, 2) /* NCCL without CUDA */, damaged(1, 1), damaged(3, 1),
                        damaged(7, 0x80) /* negative ordinal */, damaged(24, 1) /* host length past the end */,
                        damaged(25, 1) /* host longer than 255 */}) {
    EXPECT_THROW(decode_stage_device(w.data(), w.size()), StageMessageError);
  }
  // A host entry names no ordinal.
  std::vector<uint8_t> h = encode_stage_device(cpu());
  h[4] = 0;
  h[5] = h[6] = h[7] = 0;
  EXPECT_THROW(decode_stage_device(h.data(), h.size()), StageMessageError);
}

StageLimits limits() {
  StageLimits l;
  l.hidden = 8;
  l.num_blocks = 16;
  l.page_size = 4;
  return l;
}

BatchView batch() {
  BatchView b;
  b.seqs.push_back({3, 2, 5, {1, 2}, true});
  b.seqs.push_back({9, 3, 0, {7}, false});
  return b;
}

TEST(PipelineDeviceHop, HelloCarriesOneDevicePerRankRankZeroAsHost) {
  StageHello h;
  h.n_layers = 30;
  h.hidden = 8;
  h.num_blocks = 16;
  h.page_size = 4;
  h.ranges = {{0, 10}};  // rank 0 states no device, as PipelineRunner
  StageRecord r = decode_stage_record(encode_stage_hello(1, h), limits());
  ASSERT_EQ(r.hello.devices.size(), 1u);
  EXPECT_EQ(r.hello.devices[0], StageDevice{});
  r.hello.ranges.emplace_back(10, 20);
  r.hello.devices.push_back(gpu(0, 1, "a"));
  r.hello.ranges.emplace_back(20, 30);
  r.hello.devices.push_back(gpu(1, 2, "b"));
  const std::vector<uint8_t> w = encode_stage_hello(2, r.hello);
  const StageRecord back = decode_stage_record(w, limits());
  EXPECT_EQ(back.hello.ranges, r.hello.ranges);
  EXPECT_EQ(back.hello.devices, r.hello.devices);
  for (size_t n = 0; n < w.size(); ++n) EXPECT_THROW(decode_stage_record(w.data(), n, limits()), StageMessageError);
  std::vector<uint8_t> bad = w;
  bad[w.size() - 29] = 9;  // flags of the last entry (28 fixed bytes, then host "b")
  EXPECT_THROW(decode_stage_record(bad, limits()), StageMessageError);
  StageHello too_many = r.hello;
  too_many.devices.push_back(cpu());
  EXPECT_THROW(encode_stage_hello(3, too_many), InvalidArgument);
}

TEST(PipelineDeviceHop, DeviceFormStepRoundTripsOnlyWhereAgreed) {
  const BatchView b = batch();
  const std::vector<uint8_t> w = encode_stage_step_device(77, 4, b, 8, 4, {1, 4});
  StageLimits agreed = limits();
  agreed.device_payload = true;
  const StageRecord r = decode_stage_record(w, agreed);
  EXPECT_EQ(r.kind, StageKind::kStep);
  EXPECT_TRUE(r.device_payload);
  EXPECT_FALSE(r.trimmed);
  EXPECT_FALSE(r.has_logits);
  EXPECT_EQ(r.step_id, 77u);
  EXPECT_EQ(r.micro_batch, 4u);
  EXPECT_TRUE(r.hidden.empty());
  EXPECT_EQ(r.rows, (std::vector<int>{1, 4}));
  ASSERT_EQ(r.batch.seqs.size(), 2u);
  EXPECT_EQ(r.batch.seqs[1].block_table, std::vector<int32_t>{7});
  EXPECT_EQ(r.hidden_offset, w.size());
  // A rank with no NCCL on its input (rank 0, a host hop) refuses it rather than wait for rows.
  EXPECT_THROW(decode_stage_record(w, limits()), StageMessageError);
  // Rows in the record as well: refused; so is an unknown form.
  std::vector<uint8_t> extra = w;
  extra.insert(extra.end(), 4 * 8, 0);
  EXPECT_THROW(decode_stage_record(extra, agreed), StageMessageError);
  const size_t form_at = w.size() - 4 * 2 - 4;  // form u32, then the two rows
  ASSERT_EQ(w[form_at], 3);
  std::vector<uint8_t> unknown = w;
  unknown[form_at] = 4;
  EXPECT_THROW(decode_stage_record(unknown, agreed), StageMessageError);
  // The host form of the same step is still accepted where NCCL was agreed (it never mixes, but
  // the check is on the form, not the hop).
  std::vector<float> hidden(5 * 8, 1.5f);
  EXPECT_FALSE(decode_stage_record(encode_stage_step(1, 0, b, hidden.data(), 8, 4), agreed).device_payload);
}

// Both ends of every hop decide from the same two entries, each read off the wire: the
// receiving end from the hello (its upstream's entry), the sending end from the answer.
TEST(PipelineDeviceHop, BothEndsOfEveryHopAgree) {
  std::mt19937 rng(5);
  std::vector<StageDevice> pool = {cpu("a"), cpu("b"), gpu(0, 1, "a"), gpu(1, 2, "a"), gpu(0, 3, "b"),
                                   gpu(0, 1, "a"), gpu(1, 2, "a")};  // repeats: ranks sharing a GPU
  pool[6].nccl = false;
  int nccl_hops = 0, host_hops = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int workers = 1 + static_cast<int>(rng() % 5);
    // devs[0] is rank 0's (PipelineRunner states it in the hello), devs[p] worker p's.
    std::vector<StageDevice> devs;
    for (int i = 0; i <= workers; ++i) devs.push_back(pool[rng() % pool.size()]);
    StageHello h;
    h.n_layers = 30;
    h.hidden = 8;
    h.num_blocks = 16;
    h.page_size = 4;
    h.ranges = {{0, 1}};
    h.devices = {devs[0]};
    std::vector<uint8_t> wire = encode_stage_hello(0, h);
    // receiver_says[p]: worker p's decision for its input hop (p - 1 -> p), from the hello.
    std::vector<bool> receiver_says(workers + 1, false);
    std::vector<bool> answered(workers + 1, false);
    for (int p = 1; p <= workers; ++p) {
      StageRecord r = decode_stage_record(wire, limits());
      const StageDevice& up = r.hello.devices[p - 1];
      // Rank 1 answers only an NCCL-able rank 0 (stage_worker.cpp); later workers always.
      answered[p] = p >= 2 || (up.cuda && up.nccl);
      if (answered[p]) receiver_says[p] = hop_uses_nccl(p - 1, up, devs[p], false);
      r.hello.ranges.emplace_back(p, p + 1);
      r.hello.devices.push_back(devs[p]);
      wire = encode_stage_hello(0, r.hello);
    }
    for (int p = 1; p <= workers; ++p) {
      const bool expected = devs[p - 1].cuda && devs[p].cuda && devs[p - 1].nccl && devs[p].nccl &&
                            devs[p - 1].uuid != devs[p].uuid;
      // The sending end decides from the answer; with none (rank 0 not NCCL-able) it keeps the host.
      bool sender = false;
      if (answered[p]) {
        const std::vector<uint8_t> answer = encode_stage_device(devs[p]);
        sender = hop_uses_nccl(p - 1, devs[p - 1], decode_stage_device(answer.data(), answer.size()), false);
      }
      EXPECT_EQ(sender, receiver_says[p]) << "hop " << p - 1 << " -> " << p;
      EXPECT_EQ(sender, expected) << "hop " << p - 1 << " -> " << p;
      (sender ? nccl_hops : host_hops)++;
    }
  }
  EXPECT_GT(nccl_hops, 10);  // the trials cover both outcomes
  EXPECT_GT(host_hops, 10);
}

}  // namespace
}  // namespace jarvis
