#include "kernels/cpu/cpu_isa.h"

namespace jarvis::cpu {
namespace {
Isa g_active = Isa::kScalar;
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

// Interim: only the scalar path exists until the per-ISA kernels land.
std::vector<Isa> available_isas() { return {Isa::kScalar}; }
Isa active_isa() { return g_active; }
void set_active_isa(Isa isa) { g_active = isa; }

}  // namespace jarvis::cpu
