// Which instruction set the quantized CPU kernels run with. Chosen once from CPUID (the best the
// CPU and the build have), so one binary runs on any x86-64; `JARVIS_CPU_ISA=scalar|avx2|avx512`
// forces a path (an unknown or unavailable name is an error at first use, not a silent fallback),
// which is how tests run every path on one machine. On other architectures only `scalar` exists.
#pragma once

#include <vector>

namespace jarvis::cpu {

enum class Isa {
  kScalar,  // portable C++
  kAvx2,    // AVX2 + FMA + F16C
  kAvx512,  // AVX-512 F/BW/VL/DQ + VNNI
};

const char* isa_name(Isa isa);
// The paths this CPU and this build can run, scalar first.
std::vector<Isa> available_isas();
// The path called `name` ("scalar", "avx2", "avx512"); throws std::invalid_argument naming the
// available ones when the name is unknown or this CPU/build cannot run it.
Isa isa_from_name(const char* name);
// The path in use: JARVIS_CPU_ISA when set (through isa_from_name, so a bad value throws on first
// use), else the last of available_isas().
Isa active_isa();
// Tests only: switch the path for the following calls (not thread-safe against running kernels).
void set_active_isa(Isa isa);

}  // namespace jarvis::cpu
