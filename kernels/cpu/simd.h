// The one place that chooses a vector width for the CPU kernels: AVX-512, AVX2+FMA, or plain
// scalar code, decided at compile time (-march=native when JARVIS_NATIVE is on). Kernels are
// written once against `VecF` and never test instruction-set macros themselves.
#pragma once

#include <cstdint>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// GCC 12's AVX-512 intrinsics use deliberately undefined values (_mm256_undefined_*) that trip
// -Wuninitialized once inlined (GCC bug 105593); the warnings point into the system header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace jarvis::cpu::simd {

#if defined(__AVX512F__)
struct VecF {
  static constexpr int kWidth = 16;
  __m512 v;
  static VecF zero() { return {_mm512_setzero_ps()}; }
  static VecF load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static VecF broadcast(float x) { return {_mm512_set1_ps(x)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  float sum() const { return _mm512_reduce_add_ps(v); }
};
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF mul(VecF a, VecF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecF add(VecF a, VecF b) { return {_mm512_add_ps(a.v, b.v)}; }
#elif defined(__AVX2__) && defined(__FMA__)
struct VecF {
  static constexpr int kWidth = 8;
  __m256 v;
  static VecF zero() { return {_mm256_setzero_ps()}; }
  static VecF load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static VecF broadcast(float x) { return {_mm256_set1_ps(x)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  float sum() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF mul(VecF a, VecF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecF add(VecF a, VecF b) { return {_mm256_add_ps(a.v, b.v)}; }
#else
// Scalar fallback with the same interface; four lanes let the compiler keep independent sums.
struct VecF {
  static constexpr int kWidth = 4;
  float v[4];
  static VecF zero() { return {{0, 0, 0, 0}}; }
  static VecF load(const float* p) { return {{p[0], p[1], p[2], p[3]}}; }
  static VecF broadcast(float x) { return {{x, x, x, x}}; }
  void store(float* p) const { for (int i = 0; i < 4; ++i) p[i] = v[i]; }
  float sum() const { return (v[0] + v[1]) + (v[2] + v[3]); }
};
inline VecF fma(VecF a, VecF b, VecF c) {
  return {{a.v[0] * b.v[0] + c.v[0], a.v[1] * b.v[1] + c.v[1], a.v[2] * b.v[2] + c.v[2],
           a.v[3] * b.v[3] + c.v[3]}};
}
inline VecF mul(VecF a, VecF b) {
  return {{a.v[0] * b.v[0], a.v[1] * b.v[1], a.v[2] * b.v[2], a.v[3] * b.v[3]}};
}
inline VecF add(VecF a, VecF b) {
  return {{a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2], a.v[3] + b.v[3]}};
}
#endif

// Dot product of two float arrays of length n.
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr int W = VecF::kWidth;
  VecF acc0 = VecF::zero(), acc1 = VecF::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    acc0 = fma(VecF::load(a + i), VecF::load(b + i), acc0);
    acc1 = fma(VecF::load(a + i + W), VecF::load(b + i + W), acc1);
  }
  for (; i + W <= n; i += W) acc0 = fma(VecF::load(a + i), VecF::load(b + i), acc0);
  float s = add(acc0, acc1).sum();
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y[i] += a * x[i]
inline void axpy(float a, const float* x, float* y, int64_t n) {
  constexpr int W = VecF::kWidth;
  const VecF va = VecF::broadcast(a);
  int64_t i = 0;
  for (; i + W <= n; i += W) fma(va, VecF::load(x + i), VecF::load(y + i)).store(y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

// y[i] *= a
inline void scale(float a, float* y, int64_t n) {
  constexpr int W = VecF::kWidth;
  const VecF va = VecF::broadcast(a);
  int64_t i = 0;
  for (; i + W <= n; i += W) mul(va, VecF::load(y + i)).store(y + i);
  for (; i < n; ++i) y[i] *= a;
}

}  // namespace jarvis::cpu::simd
