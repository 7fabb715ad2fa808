#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/thread_pool.h"

namespace jarvis::cpu {
namespace {

// Keys scored per step of the running softmax: one max/rescale per tile instead of per key.
constexpr int kKeyTile = 32;

struct Scratch {
  std::vector<float> acc;     // [group, head_dim]
  std::vector<float> scores;  // [group, kKeyTile]
  std::vector<float> m, l;    // [group]
};

// All query heads of one token that share kv head `kvh`: K and V rows are loaded once for the group.
void attend_group(const float* q, const float* k_pages, const float* v_pages,
                  const PagedSequence& seq, int t, int kvh, float* out, const AttentionShape& s,
                  Scratch& sc) {
  const int group = s.n_heads / s.n_kv_heads;
  const int hd = s.head_dim;
  const int64_t row_stride = static_cast<int64_t>(s.n_kv_heads) * hd;  // one token slot
  const int64_t page_stride = row_stride * s.page_size;
  const int n_keys = seq.start_pos + t + 1;  // causal: positions 0 .. pos(t)
  const float* qt = q + (seq.token_offset + t) * s.n_heads * hd + static_cast<int64_t>(kvh) * group * hd;
  float* ot = out + (seq.token_offset + t) * s.n_heads * hd + static_cast<int64_t>(kvh) * group * hd;

  std::fill(sc.acc.begin(), sc.acc.end(), 0.0f);
  std::fill(sc.m.begin(), sc.m.end(), -std::numeric_limits<float>::infinity());
  std::fill(sc.l.begin(), sc.l.end(), 0.0f);
  auto key_row = [&](const float* pages, int j) {
    const int64_t page = seq.block_table[j / s.page_size];
    return pages + page * page_stride + static_cast<int64_t>(j % s.page_size) * row_stride +
           static_cast<int64_t>(kvh) * hd;
  };

  for (int j0 = 0; j0 < n_keys; j0 += kKeyTile) {
    const int jn = std::min(kKeyTile, n_keys - j0);
    for (int jj = 0; jj < jn; ++jj) {
      const float* kr = key_row(k_pages, j0 + jj);
      for (int h = 0; h < group; ++h)
        sc.scores[h * kKeyTile + jj] = simd::dot(qt + h * hd, kr, hd) * s.scale;
    }
    for (int h = 0; h < group; ++h) {
      float* sh = &sc.scores[h * kKeyTile];
      const float tile_max = *std::max_element(sh, sh + jn);
      const float new_m = std::max(sc.m[h], tile_max);
      const float corr = std::exp(sc.m[h] - new_m);  // 0 on the first tile (m = -inf)
      if (corr != 1.0f) {
        simd::scale(corr, &sc.acc[h * hd], hd);
        sc.l[h] *= corr;
      }
      float sum = 0;
      for (int jj = 0; jj < jn; ++jj) {
        sh[jj] = std::exp(sh[jj] - new_m);
        sum += sh[jj];
      }
      sc.l[h] += sum;
      sc.m[h] = new_m;
    }
    for (int jj = 0; jj < jn; ++jj) {
      const float* vr = key_row(v_pages, j0 + jj);
      for (int h = 0; h < group; ++h) simd::axpy(sc.scores[h * kKeyTile + jj], vr, &sc.acc[h * hd], hd);
    }
  }
  for (int h = 0; h < group; ++h) {
    const float inv = 1.0f / sc.l[h];
    for (int d = 0; d < hd; ++d) ot[h * hd + d] = sc.acc[h * hd + d] * inv;
  }
}

}  // namespace

void write_kv_pages(const float* k, const float* v, const PagedSequence& seq,
                    const AttentionShape& s, float* k_pages, float* v_pages) {
  const int64_t row = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
  for (int t = 0; t < seq.n_tokens; ++t) {
    const int pos = seq.start_pos + t;
    const int64_t slot =
        static_cast<int64_t>(seq.block_table[pos / s.page_size]) * s.page_size + pos % s.page_size;
    std::memcpy(k_pages + slot * row, k + t * row, row * sizeof(float));
    std::memcpy(v_pages + slot * row, v + t * row, row * sizeof(float));
  }
}

bool paged_attention(const float* q, const float* k_pages, const float* v_pages,
                     const PagedSequence* seqs, int n_seqs, float* out, const AttentionShape& s,
                     ThreadPool& pool) {
  if (s.n_heads <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.page_size <= 0 ||
      s.n_heads % s.n_kv_heads != 0 || n_seqs < 0) {
    return false;
  }
  const int group = s.n_heads / s.n_kv_heads;
  // Work items are (sequence token, kv head); items are numbered per sequence in seqs order.
  int64_t total_items = 0;
  for (int i = 0; i < n_seqs; ++i) total_items += static_cast<int64_t>(seqs[i].n_tokens) * s.n_kv_heads;

  pool.parallel_for(0, total_items, [&](int64_t lo, int64_t hi) {
    // Per thread and kept: decode steps call this for every layer, and should not allocate.
    thread_local Scratch sc;
    sc.acc.resize(static_cast<size_t>(group) * s.head_dim);
    sc.scores.resize(static_cast<size_t>(group) * kKeyTile);
    sc.m.resize(group);
    sc.l.resize(group);
    int seq = 0;
    int64_t seq_first = 0;  // first item of `seq`
    for (int64_t item = lo; item < hi; ++item) {
      while (item >= seq_first + static_cast<int64_t>(seqs[seq].n_tokens) * s.n_kv_heads) {
        seq_first += static_cast<int64_t>(seqs[seq].n_tokens) * s.n_kv_heads;
        ++seq;
      }
      const int64_t local = item - seq_first;
      attend_group(q, k_pages, v_pages, seqs[seq], static_cast<int>(local / s.n_kv_heads),
                   static_cast<int>(local % s.n_kv_heads), out, s, sc);
    }
  });
  return true;
}

}  // namespace jarvis::cpu
