// The kernel table of an instruction set (quant_kernels.h), built on first use.
#pragma once

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quant/quant_kernels.h"

namespace jarvis::cpu::quant {

const IsaKernels& isa_kernels(Isa isa);

}  // namespace jarvis::cpu::quant
