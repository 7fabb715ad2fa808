// A linear layer's weight matrix held the way its file stores it (a GGUF block type), and the
// products over it. Activations are quantized once per input row to an 8-bit block format and
// multiplied with integer dot products; the instruction set is chosen at run time (cpu_isa.h).
//
// The layout inside a QuantMatrix belongs to the kernels (they may repack rows at load so a tile
// of rows is read with few loads); everything outside reads it through rows(), dequantize_rows()
// and bytes() only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/ggml_types.h"

namespace jarvis::cpu {

class ThreadPool;

// How finely the products quantize their input rows. 1 (the default): one 8-bit block pass, the
// scheme llama.cpp uses; it moves this file's logits by up to ~1.6 and flips greedy choices where
// the float path is unsure. 2: the rounding residual of each row is quantized by the same rule
// and multiplied too (x ~ d1 q1 + d2 q2, about 15 bits per input): the float path's accuracy for
// about twice the integer work per weight block (weights are still read once). Read from
// JARVIS_ACT_PASSES=1|2 at first use; set_activation_passes changes it for the following calls
// (not thread-safe against running products).
int activation_passes();
void set_activation_passes(int passes);

class QuantMatrix {
 public:
  QuantMatrix() = default;
  // Copies `rows` rows of `cols` elements stored back to back in `type`'s GGUF blocks (GGUF's
  // layout: row r starts at r * row_bytes(type, cols)). InvalidArgument-free: returns an empty
  // matrix and sets *error when the type is not supported or cols is not a whole number of blocks.
  static QuantMatrix from_blocks(GgmlType type, const void* data, int64_t rows, int64_t cols,
                                 const char** error = nullptr);
  // From float32 rows (the `--weights f32` reference path, HF checkpoints, tests).
  static QuantMatrix from_f32(const float* data, int64_t rows, int64_t cols);
  // Bytes one row takes in `type`'s blocks; 0 when cols is not a whole number of blocks.
  static size_t row_bytes(GgmlType type, int64_t cols);
  // True when the kernels multiply this type (every type the loader accepts).
  static bool supported(GgmlType type);

  bool empty() const { return rows_ == 0; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  GgmlType type() const { return type_; }
  size_t bytes() const { return bytes_; }  // what this matrix holds in memory

  // Decodes rows [r0, r0 + n) to float32, [n, cols] row-major (embedding lookup, GPU upload).
  void dequantize_rows(int64_t r0, int64_t n, float* out) const;

  // Kernel-side access to the held blocks (layout private to kernels/cpu).
  const uint8_t* data() const { return data_.get(); }

 private:
  struct FreeAligned {
    void operator()(uint8_t* p) const;
  };
  int64_t rows_ = 0, cols_ = 0;
  GgmlType type_ = GgmlType::F32;
  size_t bytes_ = 0;
  std::shared_ptr<uint8_t> data_;  // shared: copies of a model's weights (tests, shards) are cheap
};

// y[t, r] = sum_c x[t, c] * W[r, c] for t < n, r < W.rows()   (y = x W^T, y is [n, W.rows()]);
// with `accumulate`, y += x W^T (the residual add folded into the product).
void qmatmul(const float* x, int64_t n, const QuantMatrix& w, float* y, ThreadPool& pool,
             bool accumulate = false);

// Several products over the same input rows in one parallel pass (one synchronisation instead of
// one per matrix): the Q, K and V projections. x is quantized once per activation format.
struct QMatmulTarget {
  const QuantMatrix* w;
  float* y;  // [n, w->rows()]
};
void qmatmul_multi(const float* x, int64_t n, const QMatmulTarget* targets, int n_targets, ThreadPool& pool);

// y[t, r] = act(x W_gate^T)[t, r] * (x W_up^T)[t, r] in one pass: each thread computes the gate
// and up rows of the same range and applies the activation while both are in registers or L1.
enum class GateActivation { kSilu, kGeluTanh };
void qmatmul_gated(const float* x, int64_t n, const QuantMatrix& gate, const QuantMatrix& up,
                   GateActivation act, float* y, ThreadPool& pool);

}  // namespace jarvis::cpu
