// kquant kernels for the scalar path (compiled with that ISA's flags only; see quant_kernels.h).
#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {

void register_kquant_scalar(IsaKernels& k) { (void)k; }  // nothing yet: the driver falls back

}  // namespace jarvis::cpu::quant
