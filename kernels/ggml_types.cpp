#include "kernels/ggml_types.h"

namespace jarvis {

const GgmlTypeTraits* ggml_type_traits(uint32_t raw_type) {
  // Block sizes follow ggml's block_* structs; the K-quants use 256-element super-blocks.
  static const GgmlTypeTraits kF32{"F32", 1, 4, true};
  static const GgmlTypeTraits kF16{"F16", 1, 2, true};
  static const GgmlTypeTraits kBF16{"BF16", 1, 2, true};
  static const GgmlTypeTraits kQ4_0{"Q4_0", 32, 2 + 16, true};
  static const GgmlTypeTraits kQ4_1{"Q4_1", 32, 2 + 2 + 16, true};
  static const GgmlTypeTraits kQ5_0{"Q5_0", 32, 2 + 4 + 16, true};
  static const GgmlTypeTraits kQ5_1{"Q5_1", 32, 2 + 2 + 4 + 16, true};
  static const GgmlTypeTraits kQ8_0{"Q8_0", 32, 2 + 32, true};
  static const GgmlTypeTraits kQ8_1{"Q8_1", 32, 4 + 32, false};
  static const GgmlTypeTraits kQ2_K{"Q2_K", kQK_K, 16 + 64 + 2 + 2, false};
  static const GgmlTypeTraits kQ3_K{"Q3_K", kQK_K, 32 + 64 + 12 + 2, false};
  static const GgmlTypeTraits kQ4_K{"Q4_K", kQK_K, 2 + 2 + 12 + 128, true};
  static const GgmlTypeTraits kQ5_K{"Q5_K", kQK_K, 2 + 2 + 12 + 32 + 128, true};
  static const GgmlTypeTraits kQ6_K{"Q6_K", kQK_K, 128 + 64 + 16 + 2, true};
  static const GgmlTypeTraits kQ8_K{"Q8_K", kQK_K, 4 + 256 + 32, false};
  switch (static_cast<GgmlType>(raw_type)) {
    case GgmlType::F32: return &kF32;
    case GgmlType::F16: return &kF16;
    case GgmlType::BF16: return &kBF16;
    case GgmlType::Q4_0: return &kQ4_0;
    case GgmlType::Q4_1: return &kQ4_1;
    case GgmlType::Q5_0: return &kQ5_0;
    case GgmlType::Q5_1: return &kQ5_1;
    case GgmlType::Q8_0: return &kQ8_0;
    case GgmlType::Q8_1: return &kQ8_1;
    case GgmlType::Q2_K: return &kQ2_K;
    case GgmlType::Q3_K: return &kQ3_K;
    case GgmlType::Q4_K: return &kQ4_K;
    case GgmlType::Q5_K: return &kQ5_K;
    case GgmlType::Q6_K: return &kQ6_K;
    case GgmlType::Q8_K: return &kQ8_K;
  }
  return nullptr;
}

}  // namespace jarvis
