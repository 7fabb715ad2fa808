#include "kernels/cpu/cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace jarvis::cpu {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
// __builtin_cpu_supports reads CPUID once (libgcc) and also requires the OS to save the wider
// registers (XGETBV), so a feature reported here is usable, not merely present.
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}
#endif

// The path from JARVIS_CPU_ISA, or the best available; a forced path silently replaced by
// another would test the wrong code, so a bad name throws.
Isa choose_isa() {
  const char* env = std::getenv("JARVIS_CPU_ISA");
  if (env == nullptr || *env == '\0') return available_isas().back();
  try {
    return isa_from_name(env);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("JARVIS_CPU_ISA=") + e.what());
  }
}

// -1 until first use: the choice is made lazily so a bad JARVIS_CPU_ISA is reported by the first
// kernel call (as an exception the caller can turn into a message), not at static initialisation.
std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

std::vector<Isa> available_isas() {
  std::vector<Isa> isas{Isa::kScalar};
#if defined(__x86_64__) || defined(_M_X64)
  if (cpu_has_avx2()) isas.push_back(Isa::kAvx2);
  if (cpu_has_avx512()) isas.push_back(Isa::kAvx512);
#endif
  return isas;
}

Isa isa_from_name(const char* name) {
  const std::vector<Isa> avail = available_isas();
  std::string names;
  for (Isa isa : avail) {
    if (std::strcmp(name, isa_name(isa)) == 0) return isa;
    names += names.empty() ? "" : ", ";
    names += isa_name(isa);
  }
  const bool known = !std::strcmp(name, "scalar") || !std::strcmp(name, "avx2") || !std::strcmp(name, "avx512");
  throw std::invalid_argument(std::string(name) +
                              (known ? ": this CPU or build cannot run it" : ": unknown instruction set") +
                              " (available: " + names + ")");
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(choose_isa());
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) { g_active.store(static_cast<int>(isa), std::memory_order_relaxed); }

}  // namespace jarvis::cpu
