// CUDA paged attention, fused RoPE + KV write and embedding gather against the CPU kernels on the
// same (dtype-rounded) inputs. Built to find bugs: block tables are shuffled, every unused page
// slot and every block-table pad points at NaN (an out-of-bounds read poisons the output), lengths
// cross page boundaries, and prefill chunks and decode tokens share a batch. Tests that need a
// device skip, saying so, where none is found; the argument checks run everywhere.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/rope.h"
#include "tests/gpu/gpu_test_util.h"

namespace jarvis {
namespace {

using cuda::DType;
using namespace gpu_test;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Seq {
  int start_pos;
  int n_tokens;
};

struct AttnCase {
  DType dtype;
  int head_dim, n_heads, n_kv_heads, page_size;
  std::vector<Seq> seqs;
};

std::string describe(const AttnCase& c, int num_sms) {
  return std::string(dtype_name(c.dtype)) + " d=" + std::to_string(c.head_dim) + " heads=" +
         std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + " page=" +
         std::to_string(c.page_size) + " sms=" + std::to_string(num_sms);
}

// Runs one batch through cpu::paged_attention and cuda::paged_attention. num_sms steers the plan:
// 0 never splits the key range, a large value splits it as far as the plan allows.
// q_scale sharpens the softmax (scores ~ q_scale standard deviations): the running maximum then
// moves by large steps between tiles and splits, which exercises every rescale.
void check_attention(const AttnCase& c, int num_sms, uint32_t seed, bool expect_split = false,
                     float q_scale = 1.0f) {
  SCOPED_TRACE(describe(c, num_sms));
  const DType t = c.dtype;
  const int hd = c.head_dim, n = static_cast<int>(c.seqs.size());
  const int64_t row = static_cast<int64_t>(c.n_kv_heads) * hd;  // one token slot
  const int64_t page_elems = row * c.page_size;

  // Pages: each sequence's blocks, shuffled over the pool, plus one NaN page the table pads use.
  std::vector<int> n_blocks(n);
  int total_blocks = 0, max_blocks = 1;
  for (int s = 0; s < n; ++s) {
    n_blocks[s] = (c.seqs[s].start_pos + c.seqs[s].n_tokens + c.page_size - 1) / c.page_size;
    total_blocks += n_blocks[s];
    max_blocks = std::max(max_blocks, n_blocks[s] + 1);  // + 1: every table has a pad entry
  }
  const int num_pages = total_blocks + 1, nan_page = total_blocks;
  std::vector<int32_t> perm(total_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  std::vector<int32_t> tables(static_cast<size_t>(n) * max_blocks, nan_page);
  for (int s = 0, next = 0; s < n; ++s) {
    for (int b = 0; b < n_blocks[s]; ++b) tables[static_cast<size_t>(s) * max_blocks + b] = perm[next++];
  }

  std::vector<float> k_pages(num_pages * page_elems, kNaN), v_pages(num_pages * page_elems, kNaN);
  std::mt19937 rng(seed + 1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int s = 0; s < n; ++s) {
    for (int pos = 0; pos < c.seqs[s].start_pos + c.seqs[s].n_tokens; ++pos) {
      const int64_t at = (tables[static_cast<size_t>(s) * max_blocks + pos / c.page_size] * c.page_size +
                          pos % c.page_size) * row;
      for (int64_t e = 0; e < row; ++e) {
        k_pages[at + e] = dist(rng);
        v_pages[at + e] = dist(rng);
      }
    }
  }
  k_pages = round_to(k_pages, t);
  v_pages = round_to(v_pages, t);

  std::vector<int32_t> offsets(n), n_tokens(n), start_pos(n);
  int64_t total_tokens = 0;
  for (int s = 0; s < n; ++s) {
    offsets[s] = static_cast<int32_t>(total_tokens);
    n_tokens[s] = c.seqs[s].n_tokens;
    start_pos[s] = c.seqs[s].start_pos;
    total_tokens += c.seqs[s].n_tokens;
  }
  const int64_t q_elems = total_tokens * c.n_heads * hd;
  auto q = random_values(q_elems, seed + 2);
  for (float& x : q) x *= q_scale;
  q = round_to(q, t);

  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<cpu::PagedSequence> cpu_seqs(n);
  for (int s = 0; s < n; ++s) {
    cpu_seqs[s] = {offsets[s], n_tokens[s], start_pos[s], &tables[static_cast<size_t>(s) * max_blocks]};
  }
  cpu::AttentionShape shape{c.n_heads, c.n_kv_heads, hd, c.page_size, scale};
  cpu::ThreadPool pool(4);
  std::vector<float> want(q_elems);
  ASSERT_TRUE(cpu::paged_attention(q.data(), k_pages.data(), v_pages.data(), cpu_seqs.data(), n, want.data(),
                                   shape, pool));
  want = round_to(want, t);  // the GPU rounds its fp32 result to the dtype once, at the store

  auto qb = encode(q, t), kb = encode(k_pages, t), vb = encode(v_pages, t);
  DeviceBuffer dq(qb.size()), dk(kb.size()), dv(vb.size()), dout(qb.size());
  DeviceBuffer doff(n * 4), dnt(n * 4), dsp(n * 4), dtab(tables.size() * 4);
  upload(dq, qb.data(), qb.size());
  upload(dk, kb.data(), kb.size());
  upload(dv, vb.data(), vb.size());
  upload(doff, offsets.data(), n * 4);
  upload(dnt, n_tokens.data(), n * 4);
  upload(dsp, start_pos.data(), n * 4);
  upload(dtab, tables.data(), tables.size() * 4);
  // Output starts as NaN: a row the kernel forgets to write fails the comparison.
  auto nan_out = encode(std::vector<float>(q_elems, kNaN), t);
  upload(dout, nan_out.data(), nan_out.size());

  cuda::PagedAttentionParams p;
  p.dtype = t;
  p.n_heads = c.n_heads;
  p.n_kv_heads = c.n_kv_heads;
  p.head_dim = hd;
  p.page_size = c.page_size;
  p.scale = scale;
  p.n_seqs = n;
  p.total_tokens = total_tokens;
  p.q = dq.ptr;
  p.k_pages = dk.ptr;
  p.v_pages = dv.ptr;
  p.out = dout.ptr;
  p.token_offset = doff.as<int32_t>();
  p.n_tokens = dnt.as<int32_t>();
  p.start_pos = dsp.as<int32_t>();
  p.block_tables = dtab.as<int32_t>();
  p.max_blocks_per_seq = max_blocks;
  p.plan = cuda::plan_paged_attention(n_tokens.data(), start_pos.data(), n, c.n_heads, c.n_kv_heads, num_sms);
  if (expect_split) {
    EXPECT_GT(p.plan.max_splits, 1);
  }
  const size_t ws_bytes = cuda::attention_workspace_bytes(p.plan, total_tokens, c.n_heads, hd);
  DeviceBuffer dws(ws_bytes);
  p.workspace = dws.as<float>();
  ASSERT_EQ(cuda::paged_attention(p, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // Scores are dot products of length head_dim in fp32, summed in different orders on the two
  // sides: their error grows with |q| (~ sqrt(D) * 2^-24 * |partial sums|, about 1e-6 per unit of
  // q_scale at D = 128), and the output error follows the score error. 2e-5 per unit above 1 is
  // ~20x that estimate, which leaves room for the maximum over ~1e5 outputs.
  const float tol = tolerance(t) + (q_scale > 1.0f ? 2e-5f * q_scale : 0.0f);
  expect_close(decode(download(dout, qb.size()), t), want, tol);
}

class CudaAttention : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!have_cuda_device()) GTEST_SKIP() << "no CUDA device found: GPU test skipped";
  }
};

// Decode tokens at page edges (positions 0, 15, 16, 17), a longer context, a fresh prefill and a
// prefill chunk continuing a cached prefix, all in one batch.
const std::vector<Seq> kMixedBatch = {{0, 1}, {15, 1}, {16, 1}, {17, 1}, {300, 1}, {0, 37}, {20, 13}};

TEST_P(CudaAttention, MixedBatchMatchesCpuAcrossShapes) {
  uint32_t seed = 10;
  for (int hd : {64, 128, 256}) {
    for (int group : {1, 4, 8}) {
      for (int page : {1, 16}) {
        AttnCase c{GetParam(), hd, 2 * group, 2, page, kMixedBatch};
        check_attention(c, /*num_sms=*/0, ++seed);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(CudaAttention, SplitKvMatchesCpu) {
  // A page size that divides nothing (7): split edges (multiples of the 32-key tile) fall mid-page.
  AttnCase c{GetParam(), 128, 8, 2, 7, {{530, 1}, {0, 1}, {255, 1}, {256, 1}, {700, 3}, {40, 20}}};
  check_attention(c, /*num_sms=*/4096, 20, /*expect_split=*/true);
  c.page_size = 16;
  c.head_dim = 64;
  check_attention(c, 4096, 21, true);
  check_attention(c, 4096, 22, true, /*q_scale=*/12.0f);
  check_attention(c, 0, 23, false, 12.0f);
}

TEST_P(CudaAttention, SmolLmShapeLongDecode) {
  // 9 query heads over 3 kv heads (group 3, not a power of two), head_dim 64, as the default model;
  // a small batch over long contexts is the case split-KV exists for.
  AttnCase c{GetParam(), 64, 9, 3, 16, {{4000, 1}, {2500, 1}, {1, 1}}};
  check_attention(c, 132, 30, true);
  check_attention(c, 0, 31);
}

TEST_P(CudaAttention, LongPrefillChunk) {
  // Row tiles of 32 (token, head) pairs cut across tokens; later tiles see longer key ranges.
  AttnCase c{GetParam(), 128, 32, 8, 16, {{100, 200}, {0, 1}}};
  check_attention(c, 0, 40);
}

void check_rope_write(DType t, int hd, int rope_dim, cuda::RopePairing pairing, uint32_t seed) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " d=" + std::to_string(hd) + " rope=" + std::to_string(rope_dim) +
               (pairing == cuda::RopePairing::kNeox ? " neox" : " interleaved"));
  const int n_heads = 8, n_kv = 2, page_size = 16, num_pages = 4;
  const int64_t n = 9;
  const int64_t row = static_cast<int64_t>(n_kv) * hd;
  std::vector<int32_t> positions = {0, 1, 15, 16, 17, 255, 4095, 8191, 131071};
  // Slots scattered over pages; token 3 is padding (-1) and must store nothing.
  std::vector<int64_t> slots = {5, 6, 20, -1, 63, 0, 33, 47, 18};

  cpu::RopeFreqParams fp;
  fp.rope_dim = rope_dim;
  fp.theta = 500000.0;
  const auto inv_freq = cpu::rope_inv_freq(fp);
  const int half = rope_dim / 2;
  std::vector<float> cs_want(n * half * 2);
  cpu::rope_cos_sin(positions.data(), inv_freq, cs_want.data(), n);

  auto q = round_to(random_values(n * n_heads * hd, seed), t);
  auto k = round_to(random_values(n * row, seed + 1), t);
  auto v = round_to(random_values(n * row, seed + 2), t);
  auto q_want = q, k_rot = k;
  const auto cpu_pairing =
      pairing == cuda::RopePairing::kNeox ? cpu::RopePairing::kNeox : cpu::RopePairing::kInterleaved;
  cpu::rope_apply(q_want.data(), cs_want.data(), n, n_heads, hd, rope_dim, cpu_pairing);
  cpu::rope_apply(k_rot.data(), cs_want.data(), n, n_kv, hd, rope_dim, cpu_pairing);
  q_want = round_to(q_want, t);
  k_rot = round_to(k_rot, t);
  std::vector<float> k_pages_want(num_pages * page_size * row, kNaN), v_pages_want = k_pages_want;
  for (int64_t i = 0; i < n; ++i) {
    if (slots[i] < 0) continue;
    std::copy(k_rot.begin() + i * row, k_rot.begin() + (i + 1) * row, k_pages_want.begin() + slots[i] * row);
    std::copy(v.begin() + i * row, v.begin() + (i + 1) * row, v_pages_want.begin() + slots[i] * row);
  }

  DeviceBuffer dpos(n * 4), dinv(half * 8), dcs(n * half * 8), dslots(n * 8);
  upload(dpos, positions.data(), n * 4);
  upload(dinv, inv_freq.data(), half * 8);
  upload(dslots, slots.data(), n * 8);
  ASSERT_EQ(cuda::rope_cos_sin(dpos.as<int32_t>(), dinv.as<double>(), dcs.as<float>(), n, half, nullptr),
            cudaSuccess);
  std::vector<float> cs_got(n * half * 2);
  ASSERT_EQ(cudaMemcpy(cs_got.data(), dcs.ptr, cs_got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  // Both sides form the angle and its cos/sin in double and round once to float; libm and the
  // CUDA math library may differ by an ulp of double, which moves the float by at most one ulp.
  for (size_t i = 0; i < cs_got.size(); ++i) ASSERT_NEAR(cs_got[i], cs_want[i], 1.2e-7f) << "at " << i;

  auto qb = encode(q, t), kb = encode(k, t), vb = encode(v, t);
  auto nan_pages = encode(std::vector<float>(num_pages * page_size * row, kNaN), t);
  DeviceBuffer dq(qb.size()), dk(kb.size()), dv(vb.size()), dkp(nan_pages.size()), dvp(nan_pages.size());
  upload(dq, qb.data(), qb.size());
  upload(dk, kb.data(), kb.size());
  upload(dv, vb.data(), vb.size());
  upload(dkp, nan_pages.data(), nan_pages.size());
  upload(dvp, nan_pages.data(), nan_pages.size());
  cuda::RopeKvWriteParams p;
  p.dtype = t;
  p.n_tokens = n;
  p.n_heads = n_heads;
  p.n_kv_heads = n_kv;
  p.head_dim = hd;
  p.rope_dim = rope_dim;
  p.pairing = pairing;
  p.q = dq.ptr;
  p.k = dk.ptr;
  p.v = dv.ptr;
  p.cos_sin = dcs.as<float>();
  p.slot_mapping = dslots.as<int64_t>();
  p.k_pages = dkp.ptr;
  p.v_pages = dvp.ptr;
  ASSERT_EQ(cuda::rope_write_kv(p, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  // Rotation in fp32 on both sides (FMA contraction may differ), then one rounding to the dtype.
  expect_close(decode(download(dq, qb.size()), t), q_want, tolerance(t));
  const auto k_got = decode(download(dkp, nan_pages.size()), t);
  const auto v_got = decode(download(dvp, nan_pages.size()), t);
  for (size_t i = 0; i < k_got.size(); ++i) {
    if (std::isnan(k_pages_want[i])) {  // slots no token maps to stay untouched
      ASSERT_TRUE(std::isnan(k_got[i]) && std::isnan(v_got[i])) << "slot element " << i << " written";
      continue;
    }
    ASSERT_NEAR(k_got[i], k_pages_want[i], tolerance(t) * (1.0f + std::fabs(k_pages_want[i]))) << "at " << i;
    ASSERT_EQ(v_got[i], v_pages_want[i]) << "at " << i;  // a plain copy
  }
}

TEST_P(CudaAttention, RopeWriteKvMatchesCpu) {
  uint32_t seed = 50;
  for (auto pairing : {cuda::RopePairing::kInterleaved, cuda::RopePairing::kNeox}) {
    for (int hd : {64, 128}) {
      for (int rope_dim : {hd, hd / 2}) {  // full and partial rotary
        check_rope_write(GetParam(), hd, rope_dim, pairing, ++seed);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(CudaAttention, EmbeddingGatherCopiesRows) {
  const DType t = GetParam();
  const int64_t vocab = 100, hidden = 576;
  auto table = round_to(random_values(vocab * hidden, 60), t);
  std::vector<int32_t> ids = {0, 99, 42, 42, -1, 100, 7};  // repeats and two out-of-range ids
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> want(n * hidden, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] >= 0 && ids[i] < vocab) {
      std::copy(table.begin() + ids[i] * hidden, table.begin() + (ids[i] + 1) * hidden, want.begin() + i * hidden);
    }
  }
  auto tb = encode(table, t);
  DeviceBuffer dt(tb.size()), dids(n * 4), dout(n * hidden * elem_size(t));
  upload(dt, tb.data(), tb.size());
  upload(dids, ids.data(), n * 4);
  ASSERT_EQ(cuda::embedding_gather(t, dt.ptr, dids.as<int32_t>(), dout.ptr, n, hidden, vocab, nullptr), cudaSuccess);
  const auto got = decode(download(dout, n * hidden * elem_size(t)), t);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "at " << i;
}

TEST_P(CudaAttention, RopeWriteThenAttendMatchesCpuStep) {
  // One engine step as the GPU path will run it: rotate q and k, store k and v through the slot
  // mapping, then attend over the pages. Sequence 0 decodes one token after a 29-token prefix
  // already in the cache; sequence 1 prefills 12 tokens from position 0.
  const DType t = GetParam();
  const int hd = 64, n_heads = 9, n_kv = 3, page = 16, rope_dim = 64;
  const int64_t row = static_cast<int64_t>(n_kv) * hd;
  const std::vector<int32_t> table0 = {3, 0}, table1 = {2};  // page 1 stays NaN: nobody owns it
  const int num_pages = 4, max_blocks = 2;
  std::vector<int32_t> tables = {3, 0, 2, 1};  // sequence 1 pads with the NaN page
  const std::vector<int32_t> positions = {29, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  std::vector<int64_t> slots;
  for (size_t i = 0; i < positions.size(); ++i) {
    const auto& tab = i == 0 ? table0 : table1;
    slots.push_back(static_cast<int64_t>(tab[positions[i] / page]) * page + positions[i] % page);
  }
  const int64_t n = static_cast<int64_t>(positions.size());

  std::vector<float> k_pages(num_pages * page * row, kNaN), v_pages = k_pages;
  auto prefix_k = round_to(random_values(29 * row, 70), t), prefix_v = round_to(random_values(29 * row, 71), t);
  for (int pos = 0; pos < 29; ++pos) {
    const int64_t slot = static_cast<int64_t>(table0[pos / page]) * page + pos % page;
    std::copy(prefix_k.begin() + pos * row, prefix_k.begin() + (pos + 1) * row, k_pages.begin() + slot * row);
    std::copy(prefix_v.begin() + pos * row, prefix_v.begin() + (pos + 1) * row, v_pages.begin() + slot * row);
  }
  auto q = round_to(random_values(n * n_heads * hd, 72), t);
  auto k = round_to(random_values(n * row, 73), t), v = round_to(random_values(n * row, 74), t);

  // CPU step: the same ops, with rotated q and k rounded to the dtype as the GPU stores them.
  cpu::RopeFreqParams fp;
  fp.rope_dim = rope_dim;
  const auto inv_freq = cpu::rope_inv_freq(fp);
  std::vector<float> cs(n * rope_dim);
  cpu::rope_cos_sin(positions.data(), inv_freq, cs.data(), n);
  auto q_rot = q, k_rot = k;
  cpu::rope_apply(q_rot.data(), cs.data(), n, n_heads, hd, rope_dim, cpu::RopePairing::kNeox);
  cpu::rope_apply(k_rot.data(), cs.data(), n, n_kv, hd, rope_dim, cpu::RopePairing::kNeox);
  q_rot = round_to(q_rot, t);
  k_rot = round_to(k_rot, t);
  auto k_cpu = k_pages, v_cpu = v_pages;
  const cpu::AttentionShape shape{n_heads, n_kv, hd, page, 0.125f};
  std::vector<cpu::PagedSequence> seqs = {{0, 1, 29, table0.data()}, {1, 12, 0, table1.data()}};
  cpu::write_kv_pages(k_rot.data(), v.data(), seqs[0], shape, k_cpu.data(), v_cpu.data());
  cpu::write_kv_pages(k_rot.data() + row, v.data() + row, seqs[1], shape, k_cpu.data(), v_cpu.data());
  cpu::ThreadPool pool(2);
  std::vector<float> want(q.size());
  ASSERT_TRUE(cpu::paged_attention(q_rot.data(), k_cpu.data(), v_cpu.data(), seqs.data(), 2, want.data(), shape, pool));
  want = round_to(want, t);

  auto qb = encode(q, t), kb = encode(k, t), vb = encode(v, t), kpb = encode(k_pages, t), vpb = encode(v_pages, t);
  DeviceBuffer dq(qb.size()), dk(kb.size()), dv(vb.size()), dkp(kpb.size()), dvp(vpb.size()), dout(qb.size());
  DeviceBuffer dpos(n * 4), dinv(inv_freq.size() * 8), dcs(cs.size() * 4), dslots(n * 8), dmeta(10 * 4);
  upload(dq, qb.data(), qb.size());
  upload(dk, kb.data(), kb.size());
  upload(dv, vb.data(), vb.size());
  upload(dkp, kpb.data(), kpb.size());
  upload(dvp, vpb.data(), vpb.size());
  upload(dpos, positions.data(), n * 4);
  upload(dinv, inv_freq.data(), inv_freq.size() * 8);
  upload(dslots, slots.data(), n * 8);
  const std::vector<int32_t> meta = {0, 1, 1, 12, 29, 0, tables[0], tables[1], tables[2], tables[3]};
  upload(dmeta, meta.data(), meta.size() * 4);
  ASSERT_EQ(cuda::rope_cos_sin(dpos.as<int32_t>(), dinv.as<double>(), dcs.as<float>(), n, rope_dim / 2, nullptr),
            cudaSuccess);
  cuda::RopeKvWriteParams r;
  r.dtype = t;
  r.n_tokens = n;
  r.n_heads = n_heads;
  r.n_kv_heads = n_kv;
  r.head_dim = hd;
  r.rope_dim = rope_dim;
  r.pairing = cuda::RopePairing::kNeox;
  r.q = dq.ptr;
  r.k = dk.ptr;
  r.v = dv.ptr;
  r.cos_sin = dcs.as<float>();
  r.slot_mapping = dslots.as<int64_t>();
  r.k_pages = dkp.ptr;
  r.v_pages = dvp.ptr;
  ASSERT_EQ(cuda::rope_write_kv(r, nullptr), cudaSuccess);

  std::vector<int32_t> n_tok = {1, 12}, start = {29, 0};
  cuda::PagedAttentionParams p;
  p.dtype = t;
  p.n_heads = n_heads;
  p.n_kv_heads = n_kv;
  p.head_dim = hd;
  p.page_size = page;
  p.scale = 0.125f;
  p.n_seqs = 2;
  p.total_tokens = n;
  p.q = dq.ptr;
  p.k_pages = dkp.ptr;
  p.v_pages = dvp.ptr;
  p.out = dout.ptr;
  p.token_offset = dmeta.as<int32_t>();
  p.n_tokens = dmeta.as<int32_t>() + 2;
  p.start_pos = dmeta.as<int32_t>() + 4;
  p.block_tables = dmeta.as<int32_t>() + 6;
  p.max_blocks_per_seq = max_blocks;
  p.plan = cuda::plan_paged_attention(n_tok.data(), start.data(), 2, n_heads, n_kv, 0);
  ASSERT_EQ(cuda::paged_attention(p, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // Inputs to attention agree to one dtype rounding of the rotation (see RopeWriteKvMatchesCpu);
  // attention is a convex combination of V with softmax weights, so that error passes through
  // roughly unamplified: twice the per-dtype tolerance covers it.
  expect_close(decode(download(dout, qb.size()), t), want, 2 * tolerance(t));
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CudaAttention, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Argument checks return before any CUDA call, so they run without a device too.
TEST(CudaAttentionArgs, RejectsUnsupportedShapes) {
  alignas(16) static char fake[64];  // never dereferenced on the host: launchers fail first
  cuda::PagedAttentionParams p;
  p.dtype = DType::kF16;
  p.n_heads = 8;
  p.n_kv_heads = 2;
  p.head_dim = 128;
  p.page_size = 16;
  p.scale = 0.1f;
  p.n_seqs = 1;
  p.total_tokens = 1;
  p.q = p.k_pages = p.v_pages = fake;
  p.out = fake;
  p.token_offset = p.n_tokens = p.start_pos = p.block_tables = reinterpret_cast<const int32_t*>(fake);
  p.max_blocks_per_seq = 1;
  p.plan = {1, 1, 32, 1};

  auto with = [&](auto edit) {
    cuda::PagedAttentionParams q = p;
    edit(q);
    return cuda::paged_attention(q, nullptr);
  };
  EXPECT_EQ(with([](auto& q) { q.head_dim = 96; }), cudaErrorInvalidValue);
  EXPECT_EQ(with([](auto& q) { q.head_dim = 512; }), cudaErrorInvalidValue);
  EXPECT_EQ(with([](auto& q) { q.n_kv_heads = 3; }), cudaErrorInvalidValue);
  EXPECT_EQ(with([](auto& q) { q.page_size = 0; }), cudaErrorInvalidValue);
  EXPECT_EQ(with([](auto& q) { q.q = fake + 2; }), cudaErrorInvalidValue);  // misaligned rows
  EXPECT_EQ(with([](auto& q) { q.out = nullptr; }), cudaErrorInvalidValue);
  EXPECT_EQ(with([](auto& q) { q.dtype = static_cast<DType>(7); }), cudaErrorInvalidValue);
  EXPECT_EQ(with([](auto& q) {
              q.plan.max_splits = 2;
              q.workspace = nullptr;
            }),
            cudaErrorInvalidValue);

  cuda::RopeKvWriteParams r;
  r.n_tokens = 1;
  r.n_heads = 8;
  r.n_kv_heads = 2;
  r.head_dim = 64;
  r.rope_dim = 63;  // odd
  EXPECT_EQ(cuda::rope_write_kv(r, nullptr), cudaErrorInvalidValue);
  r.rope_dim = 128;  // wider than the head
  EXPECT_EQ(cuda::rope_write_kv(r, nullptr), cudaErrorInvalidValue);
  r.rope_dim = 64;  // valid shape, null pointers
  EXPECT_EQ(cuda::rope_write_kv(r, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::embedding_gather(DType::kF16, nullptr, nullptr, nullptr, 1, 0, 10, nullptr), cudaErrorInvalidValue);
}

TEST(CudaAttentionArgs, PlanSplitsOnlySmallBatchesOverLongContexts) {
  // Pure host logic: the split plan from lengths and the SM count.
  std::vector<int32_t> n_tok = {1, 1}, start = {4000, 10};
  auto plan = cuda::plan_paged_attention(n_tok.data(), start.data(), 2, 32, 8, 132);
  EXPECT_GT(plan.max_splits, 1);
  EXPECT_EQ(plan.kv_chunk % cuda::kAttentionKeyTile, 0);
  EXPECT_GE(static_cast<int64_t>(plan.kv_chunk) * plan.max_splits, 4001);  // covers every key
  EXPECT_EQ(plan.max_row_tiles, 1);
  EXPECT_EQ(plan.max_tokens, 1);
  // Many sequences fill the device without a split; a short context never splits.
  std::vector<int32_t> many_tok(512, 1), many_start(512, 4000);
  EXPECT_EQ(cuda::plan_paged_attention(many_tok.data(), many_start.data(), 512, 32, 8, 132).max_splits, 1);
  std::vector<int32_t> short_start = {10, 20};
  EXPECT_EQ(cuda::plan_paged_attention(n_tok.data(), short_start.data(), 2, 32, 8, 132).max_splits, 1);
  EXPECT_GT(cuda::attention_workspace_bytes(plan, 2, 32, 128), 0u);
}

}  // namespace
}  // namespace jarvis
