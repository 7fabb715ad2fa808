// The contract between the QuantMatrix driver (quant_matrix.cpp: threads, tiles, activation
// quantization) and the per-instruction-set kernels. Each ISA is a table of function pointers
// filled by per-family files compiled with that ISA's flags (`<family>_<isa>.cpp`; the flags are
// set per file in kernels/CMakeLists.txt, so nothing outside those files needs AVX-512 to build).
// A null entry means the family has no kernel for that ISA yet: the driver then uses the scalar one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_types.h"

namespace jarvis::cpu::quant {

// The formats input rows are quantized to, chosen by the weight type they meet:
//   F32/F16/BF16 weights: kF32 (the row as it is)       Q8_0/Q4_0/Q5_0: kQ8_0
//   Q4_1/Q5_1: kQ8_1 (its stored sum makes a block's min term one multiply-add)
//   Q4_K/Q5_K/Q6_K: kQ8_K (256-element super-blocks with 16-element sums for the K-quant mins)
enum class ActFormat { kF32, kQ8_0, kQ8_1, kQ8_K, kCount };

// Every path quantizes the same way, so all ISAs produce identical bytes and differ only in the
// order of float additions: over a block, amax = max |x|, d = amax / 127, and d = 0 when that is
// below FLT_MIN (a subnormal d would make 1 / d overflow), id = d ? 1 / d : 0,
// q = nearbyint(x * id) (round to nearest even).
struct BlockQ8_0 {
  float d;
  int8_t qs[32];
};
struct BlockQ8_1 {
  float d;
  float s;  // d * sum(qs)
  int8_t qs[32];
};
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // bsums[j] = sum of qs[16 j .. 16 j + 15]
};

ActFormat act_format(GgmlType weight_type);
// Bytes of one quantized row of `cols` elements (cols a multiple of the format's block).
size_t act_row_bytes(ActFormat f, int64_t cols);

inline constexpr int kTileRows = 4;    // weight rows per tile call, at most
inline constexpr int kTileTokens = 4;  // activation rows per tile call, at most

// for r < nr, t < nt:  v = dot(weight row r, activation row t);
//                      y[t * ldy + r] = accumulate ? y[t * ldy + r] + v : v
// w: the first weight row's GGUF blocks, rows w_stride bytes apart. x: the first activation row in
// act_format(type), rows x_stride bytes apart (kF32: float rows). cols: elements per row.
using TileFn = void (*)(const uint8_t* w, size_t w_stride, int nr, const uint8_t* x, size_t x_stride, int nt,
                        int64_t cols, float* y, int64_t ldy, bool accumulate);
using QuantizeFn = void (*)(const float* x, void* out, int64_t cols);

// out[i] = act(gate[i]) * up[i] for i < n (the gated feed-forward's epilogue; out may alias gate).
// Both activations are g / (1 + exp(-a)): a = g for SiLU, a = 2 sqrt(2/pi) (g + 0.044715 g^3)
// for GELU-tanh (0.5 (1 + tanh z) = 1 / (1 + exp(-2 z))).
using GateFn = void (*)(const float* gate, const float* up, float* out, int64_t n);
enum class GateKind { kSilu, kGeluTanh, kCount };

struct IsaKernels {
  TileFn tile[64] = {};                                           // indexed by GgmlType's number
  QuantizeFn quantize[static_cast<int>(ActFormat::kCount)] = {};  // indexed by ActFormat
  GateFn gate[static_cast<int>(GateKind::kCount)] = {};           // indexed by GateKind (q32 fills it)
};

// Family registrations, one per (family, ISA) file. q32: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1 and the kQ8_0/kQ8_1 quantizers; kquant: Q4_K, Q5_K, Q6_K and the kQ8_K quantizer.
void register_q32_scalar(IsaKernels& k);
void register_kquant_scalar(IsaKernels& k);
#if defined(__x86_64__) || defined(_M_X64)
void register_q32_avx2(IsaKernels& k);
void register_kquant_avx2(IsaKernels& k);
void register_q32_avx512(IsaKernels& k);
void register_kquant_avx512(IsaKernels& k);
#endif

}  // namespace jarvis::cpu::quant
