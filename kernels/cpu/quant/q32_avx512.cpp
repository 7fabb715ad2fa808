// q32 kernels for the avx512 path (compiled with that ISA's flags only; see quant_kernels.h).
#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {

void register_q32_avx512(IsaKernels& k) { (void)k; }  // nothing yet: the driver falls back

}  // namespace jarvis::cpu::quant
