// One kernel table per instruction set, filled once from the family files.
#include "kernels/cpu/quant/isa_tables.h"

namespace jarvis::cpu::quant {

const IsaKernels& isa_kernels(Isa isa) {
  static const IsaKernels kScalar = [] {
    IsaKernels k;
    register_q32_scalar(k);
    register_kquant_scalar(k);
    return k;
  }();
#if defined(__x86_64__) || defined(_M_X64)
  static const IsaKernels kAvx2 = [] {
    IsaKernels k;
    register_q32_avx2(k);
    register_kquant_avx2(k);
    return k;
  }();
  static const IsaKernels kAvx512 = [] {
    IsaKernels k;
    register_q32_avx512(k);
    register_kquant_avx512(k);
    return k;
  }();
  if (isa == Isa::kAvx2) return kAvx2;
  if (isa == Isa::kAvx512) return kAvx512;
#endif
  (void)isa;
  return kScalar;
}

}  // namespace jarvis::cpu::quant
