// Tensor storage types as GGUF numbers them (ggml's enum ggml_type), with block geometry.
// Shared by the loader (to size tensors) and by the CPU/CUDA kernels (to decode blocks).
#pragma once

#include <cstddef>
#include <cstdint>

namespace jarvis {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct GgmlTypeTraits {
  const char* name;
  int64_t block_elems;  // elements per block (1 for plain float types)
  size_t block_bytes;   // bytes per block
  bool supported;       // we can dequantize it
};

// Traits for a raw type number from a file; nullptr when the number is unknown.
const GgmlTypeTraits* ggml_type_traits(uint32_t raw_type);

inline constexpr int64_t kQK_K = 256;  // super-block size of the K-quants

}  // namespace jarvis
