#include "csrc/model/device.h"

#include <cctype>

#include "csrc/util/error.h"

namespace jarvis {

std::string DeviceSpec::str() const { return is_cuda() ? "cuda:" + std::to_string(index) : "cpu"; }

DeviceSpec parse_device(const std::string& text) {
  DeviceSpec d;
  if (text == "cpu") return d;
  d.kind = DeviceSpec::Kind::kCuda;
  if (text == "cuda") return d;
  const std::string prefix = "cuda:";
  const std::string digits = text.compare(0, prefix.size(), prefix) == 0 ? text.substr(prefix.size()) : "";
  bool ok = !digits.empty() && digits.size() <= 4;
  for (char c : digits) ok = ok && std::isdigit(static_cast<unsigned char>(c));
  if (!ok) throw InvalidArgument("device '" + text + "': expected cpu, cuda or cuda:N");
  d.index = std::stoi(digits);
  return d;
}

GpuDType parse_gpu_dtype(const std::string& text) {
  if (text == "f16" || text == "fp16" || text == "float16") return GpuDType::kF16;
  if (text == "bf16" || text == "bfloat16") return GpuDType::kBF16;
  if (text == "f32" || text == "fp32" || text == "float32") return GpuDType::kF32;
  throw InvalidArgument("GPU dtype '" + text + "': expected f16, bf16 or f32");
}

const char* gpu_dtype_name(GpuDType t) {
  switch (t) {
    case GpuDType::kF16: return "f16";
    case GpuDType::kBF16: return "bf16";
    case GpuDType::kF32: return "f32";
  }
  return "?";
}

}  // namespace jarvis
