// CPU kernels against plain, independent implementations written here (double precision,
// contiguous memory, no tiling).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/ops.h"

namespace jarvis::cpu {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(ThreadPool, CoversEveryIndexOnceAndRethrows) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1001}) {
      for (int64_t grain : {1, 4}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(0, n, [&](int64_t lo, int64_t hi) {
          EXPECT_TRUE(lo == 0 || lo % grain == 0);
          for (int64_t i = lo; i < hi; ++i) hits[i]++;
        }, grain);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << n << " " << i;
      }
    }
    // Nested calls run inline rather than deadlocking.
    std::atomic<int> inner{0};
    pool.parallel_for(0, 4, [&](int64_t lo, int64_t hi) {
      pool.parallel_for(0, 10, [&](int64_t a, int64_t b) { inner += static_cast<int>(b - a); });
      (void)lo;
      (void)hi;
    });
    EXPECT_EQ(inner.load(), 10 * std::min(threads, 4));
    EXPECT_THROW(pool.parallel_for(0, 100, [](int64_t lo, int64_t) {
      if (lo == 0) throw std::runtime_error("boom");
    }), std::runtime_error);
  }
}

TEST(Matmul, MatchesNaiveOnOddSizes) {
  struct Case { int64_t n, rows, cols; };
  const Case cases[] = {{1, 1, 1}, {1, 7, 13}, {2, 5, 8}, {3, 33, 67}, {5, 4, 16}, {7, 19, 129},
                        {67, 13, 45}, {130, 9, 31}, {1, 576, 577}};
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (const Case& c : cases) {
      const auto x = randn(c.n * c.cols, 1 + c.n);
      const auto w = randn(c.rows * c.cols, 2 + c.rows);
      std::vector<float> y(c.n * c.rows, std::numeric_limits<float>::quiet_NaN());
      matmul(x.data(), w.data(), y.data(), c.n, c.rows, c.cols, pool);
      for (int64_t t = 0; t < c.n; ++t) {
        for (int64_t r = 0; r < c.rows; ++r) {
          double ref = 0, mag = 0;
          for (int64_t k = 0; k < c.cols; ++k) {
            ref += static_cast<double>(x[t * c.cols + k]) * w[r * c.cols + k];
            mag += std::fabs(static_cast<double>(x[t * c.cols + k]) * w[r * c.cols + k]);
          }
          // Float32 summation of `cols` products in any order is within cols * 2^-24 * sum|terms|
          // of the exact sum (standard bound); 2x margin for the FMA/lane-split order.
          const double tol = 2.0 * c.cols * std::ldexp(1.0, -24) * mag + 1e-30;
          ASSERT_NEAR(y[t * c.rows + r], ref, tol)
              << "n=" << c.n << " rows=" << c.rows << " cols=" << c.cols << " t=" << t << " r=" << r;
        }
      }
    }
  }
}

TEST(Rope, MatchesDirectFormula) {
  const int n_heads = 3, head_dim = 16, n = 5;
  const int32_t pos[n] = {0, 1, 7, 100, 8191};
  for (int rope_dim : {16, 8}) {
    for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kNeox}) {
      RopeFreqParams p;
      p.rope_dim = rope_dim;
      p.theta = 10000.0;
      const auto inv = rope_inv_freq(p);
      std::vector<float> cs(n * rope_dim);
      rope_cos_sin(pos, inv, cs.data(), n);
      const auto x0 = randn(n * n_heads * head_dim, 9);
      auto x = x0;
      rope_apply(x.data(), cs.data(), n, n_heads, head_dim, rope_dim, pairing);
      for (int t = 0; t < n; ++t) {
        for (int h = 0; h < n_heads; ++h) {
          const float* a = &x0[(t * n_heads + h) * head_dim];
          const float* b = &x[(t * n_heads + h) * head_dim];
          for (int i = 0; i < rope_dim / 2; ++i) {
            const double angle = pos[t] * std::pow(10000.0, -2.0 * i / rope_dim);
            const int i0 = pairing == RopePairing::kInterleaved ? 2 * i : i;
            const int i1 = pairing == RopePairing::kInterleaved ? 2 * i + 1 : i + rope_dim / 2;
            const double r0 = a[i0] * std::cos(angle) - a[i1] * std::sin(angle);
            const double r1 = a[i0] * std::sin(angle) + a[i1] * std::cos(angle);
            // cos/sin rounded to float and two float products: a few ulps of |a| ~ 1.
            EXPECT_NEAR(b[i0], r0, 2e-6 * (std::fabs(a[i0]) + std::fabs(a[i1])) + 1e-7);
            EXPECT_NEAR(b[i1], r1, 2e-6 * (std::fabs(a[i0]) + std::fabs(a[i1])) + 1e-7);
          }
          for (int d = rope_dim; d < head_dim; ++d) EXPECT_EQ(b[d], a[d]);  // not rotated
        }
      }
    }
  }
}

TEST(Rope, ScalingRules) {
  RopeFreqParams base;
  base.rope_dim = 128;
  base.theta = 500000.0;
  const auto plain = rope_inv_freq(base);
  RopeFreqParams lin = base;
  lin.scaling = RopeFreqParams::Scaling::kLinear;
  lin.factor = 4.0;
  const auto l = rope_inv_freq(lin);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_DOUBLE_EQ(l[i], plain[i] / 4.0);
  // Llama 3.1 (factor 8, low 1, high 4, original 8192): wavelengths under 8192/4 keep their
  // frequency, over 8192/1 are divided by 8, in between interpolate monotonically.
  RopeFreqParams l3 = base;
  l3.scaling = RopeFreqParams::Scaling::kLlama3;
  l3.factor = 8.0;
  l3.low_freq_factor = 1.0;
  l3.high_freq_factor = 4.0;
  l3.original_context = 8192;
  const auto s = rope_inv_freq(l3);
  const double kPi = 3.14159265358979323846;
  int kept = 0, divided = 0, mixed = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * kPi / plain[i];
    if (wavelen < 2048) {
      EXPECT_DOUBLE_EQ(s[i], plain[i]);
      ++kept;
    } else if (wavelen > 8192) {
      EXPECT_NEAR(s[i], plain[i] / 8.0, 1e-15);
      ++divided;
    } else {
      const double smooth = (8192 / wavelen - 1.0) / 3.0;
      EXPECT_NEAR(s[i], (1 - smooth) * plain[i] / 8 + smooth * plain[i], 1e-12);
      EXPECT_LT(s[i], plain[i]);
      EXPECT_GT(s[i], plain[i] / 8);
      ++mixed;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(mixed, 0);
  // Explicit per-pair divisors (GGUF rope_freqs) divide the frequency.
  std::vector<float> div(64, 2.0f);
  RopeFreqParams d = base;
  d.freq_divisors = div.data();
  const auto dv = rope_inv_freq(d);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_NEAR(dv[i], plain[i] / 2.0, 1e-18);
}

TEST(Norm, RmsnormAndActivationsMatchFormulas) {
  ThreadPool pool(2);
  const int n = 20, dim = 37;
  const auto x = randn(n * dim, 3, 3.0f);
  const auto w = randn(dim, 4);
  std::vector<float> y(n * dim);
  rmsnorm(x.data(), w.data(), y.data(), n, dim, 1e-5f, pool);
  for (int i = 0; i < n; ++i) {
    double ss = 0;
    for (int k = 0; k < dim; ++k) ss += double(x[i * dim + k]) * x[i * dim + k];
    const double inv = 1 / std::sqrt(ss / dim + 1e-5);
    for (int k = 0; k < dim; ++k) EXPECT_NEAR(y[i * dim + k], x[i * dim + k] * inv * w[k], 1e-5);
  }
  const auto g = randn(1000, 5, 3.0f), u = randn(1000, 6);
  std::vector<float> o(1000);
  silu_mul(g.data(), u.data(), o.data(), 1000, pool);
  for (int i = 0; i < 1000; ++i) EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-5);
  gelu_tanh_mul(g.data(), u.data(), o.data(), 1000, pool);
  for (int i = 0; i < 1000; ++i) {
    const double gg = g[i];
    const double ref = 0.5 * gg * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (gg + 0.044715 * gg * gg * gg)));
    EXPECT_NEAR(o[i], ref * u[i], 1e-5);
  }
  std::vector<float> sm = {1.0f, 2.0f, 3.0f, -1000.0f, 0.0f, 0.0f};
  softmax(sm.data(), 2, 3);
  const double e = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(sm[0], std::exp(1.0) / e, 1e-7);
  EXPECT_NEAR(sm[2], std::exp(3.0) / e, 1e-7);
  EXPECT_NEAR(sm[3], 0.0, 1e-30);
  EXPECT_NEAR(sm[4], 0.5, 1e-7);
}

// One sequence in the attention test: its full K/V history contiguously, and the new tokens.
struct SeqCase {
  int start_pos;  // cached tokens before this step
  int n_tokens;   // new tokens this step
};

void run_attention_case(int n_kv_heads, int group, int head_dim, int page_size,
                        const std::vector<SeqCase>& cases, int threads, uint32_t seed) {
  const int n_heads = n_kv_heads * group;
  const int64_t kv_row = int64_t(n_kv_heads) * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  std::mt19937 rng(seed);

  // Page pool: every sequence's pages, plus spares, handed out in shuffled order.
  int total_pages = 3;
  for (const SeqCase& c : cases) total_pages += (c.start_pos + c.n_tokens + page_size - 1) / page_size;
  std::vector<int32_t> order(total_pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> k_pages(total_pages * page_size * kv_row, nan), v_pages = k_pages;
  std::vector<float> k_written = k_pages, v_written = k_pages;  // filled by write_kv_pages

  std::vector<std::vector<int32_t>> tables;
  std::vector<std::vector<float>> ks, vs;  // contiguous [len, n_kv, hd] per sequence
  std::vector<PagedSequence> seqs;
  int next_page = 0;
  int64_t total_tokens = 0;
  for (size_t s = 0; s < cases.size(); ++s) {
    const int len = cases[s].start_pos + cases[s].n_tokens;
    tables.emplace_back();
    for (int p = 0; p < (len + page_size - 1) / page_size; ++p) tables.back().push_back(order[next_page++]);
    ks.push_back(randn(len * kv_row, seed * 31 + s));
    vs.push_back(randn(len * kv_row, seed * 37 + s));
    for (int j = 0; j < len; ++j) {  // plain scatter of the whole history
      const int64_t slot = int64_t(tables[s][j / page_size]) * page_size + j % page_size;
      std::copy_n(&ks[s][j * kv_row], kv_row, &k_pages[slot * kv_row]);
      std::copy_n(&vs[s][j * kv_row], kv_row, &v_pages[slot * kv_row]);
    }
    PagedSequence ps;
    ps.token_offset = total_tokens;
    ps.n_tokens = cases[s].n_tokens;
    ps.start_pos = cases[s].start_pos;
    total_tokens += cases[s].n_tokens;
    seqs.push_back(ps);
  }
  for (size_t s = 0; s < cases.size(); ++s) seqs[s].block_table = tables[s].data();

  AttentionShape shape;
  shape.n_heads = n_heads;
  shape.n_kv_heads = n_kv_heads;
  shape.head_dim = head_dim;
  shape.page_size = page_size;
  shape.scale = scale;

  // write_kv_pages puts the new tokens exactly where the plain scatter did.
  for (size_t s = 0; s < cases.size(); ++s) {
    const int64_t first = cases[s].start_pos * kv_row;
    write_kv_pages(&ks[s][first], &vs[s][first], seqs[s], shape, k_written.data(), v_written.data());
    for (int j = cases[s].start_pos; j < cases[s].start_pos + cases[s].n_tokens; ++j) {
      const int64_t slot = int64_t(tables[s][j / page_size]) * page_size + j % page_size;
      for (int64_t e = 0; e < kv_row; ++e) {
        ASSERT_EQ(k_written[slot * kv_row + e], k_pages[slot * kv_row + e]);
        ASSERT_EQ(v_written[slot * kv_row + e], v_pages[slot * kv_row + e]);
      }
    }
  }

  const auto q = randn(total_tokens * n_heads * head_dim, seed + 5);
  std::vector<float> out(q.size(), nan);
  ThreadPool pool(threads);
  ASSERT_TRUE(paged_attention(q.data(), k_pages.data(), v_pages.data(), seqs.data(), int(seqs.size()),
                              out.data(), shape, pool));

  for (size_t s = 0; s < cases.size(); ++s) {
    for (int t = 0; t < cases[s].n_tokens; ++t) {
      const int pos = cases[s].start_pos + t;
      const int64_t row = seqs[s].token_offset + t;
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = h / group;
        const float* qh = &q[(row * n_heads + h) * head_dim];
        std::vector<double> sc(pos + 1);
        double mx = -1e300;
        for (int j = 0; j <= pos; ++j) {
          double d = 0;
          for (int e = 0; e < head_dim; ++e) d += double(qh[e]) * ks[s][j * kv_row + kvh * head_dim + e];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - mx));
        for (int e = 0; e < head_dim; ++e) {
          double ref = 0;
          for (int j = 0; j <= pos; ++j) ref += sc[j] / sum * vs[s][j * kv_row + kvh * head_dim + e];
          // Output is a convex combination of N(0,1) values; float32 scores (head_dim-term dots
          // of ~1e0 magnitude) and float accumulation over <= 64 keys stay below ~1e-5.
          ASSERT_NEAR(out[(row * n_heads + h) * head_dim + e], ref, 2e-5)
              << "seq " << s << " pos " << pos << " head " << h << " dim " << e << " group " << group
              << " page " << page_size;
        }
      }
    }
  }
}

TEST(PagedAttention, MatchesContiguousAcrossGqaPagesAndLengths) {
  // Sequences mix prefill from empty, chunked prefill over a cache, and single-token decode;
  // lengths straddle page boundaries (15/16/17, 33, 50).
  const std::vector<SeqCase> cases = {{0, 1}, {0, 17}, {15, 1}, {16, 1}, {20, 13}, {49, 1}, {3, 30}};
  for (int group : {1, 3, 4, 8}) {
    for (int page_size : {1, 16}) {
      for (int threads : {1, 2}) {
        SCOPED_TRACE(testing::Message() << "group " << group << " page " << page_size << " threads " << threads);
        run_attention_case(/*n_kv_heads=*/2, group, /*head_dim=*/64, page_size, cases, threads, 11 + group);
      }
    }
  }
  run_attention_case(1, 8, 32, 5, {{0, 9}, {6, 4}}, 2, 3);   // page size not a power of two
  run_attention_case(3, 3, 80, 16, {{0, 40}}, 3, 4);        // head_dim not a multiple of 16
}

TEST(PagedAttention, RejectsInconsistentShape) {
  ThreadPool pool(1);
  AttentionShape s;
  s.n_heads = 6;
  s.n_kv_heads = 4;
  s.head_dim = 8;
  s.page_size = 4;
  EXPECT_FALSE(paged_attention(nullptr, nullptr, nullptr, nullptr, 0, nullptr, s, pool));
}

}  // namespace
}  // namespace jarvis::cpu
