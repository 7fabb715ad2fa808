#include "engine/pipeline/device_hop.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include "engine/pipeline/stage_message.h"

namespace jarvis {
namespace {

constexpr size_t kFixedBytes = 4 + 4 + 16 + 4;  // flags + pad, ordinal, uuid, host length

[[noreturn]] void bad(const std::string& what) { throw StageMessageError("device entry: " + what); }

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

bool all_zero(const std::array<uint8_t, 16>& u) {
  return std::all_of(u.begin(), u.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

std::string StageDevice::str() const {
  return (cuda ? "cuda:" + std::to_string(ordinal) : std::string("cpu")) + "@" + (host.empty() ? "?" : host);
}

bool same_gpu(const StageDevice& a, const StageDevice& b) {
  if (!a.cuda || !b.cuda) return false;
  if (!all_zero(a.uuid) && !all_zero(b.uuid)) return a.uuid == b.uuid;
  return a.host == b.host && a.ordinal == b.ordinal;
}

bool hop_uses_nccl(int from_position, const StageDevice& from, const StageDevice& to, bool to_is_rank0) {
  if (from_position < 0 || to_is_rank0) return false;  // the return hop to rank 0 keeps the host path
  if (!from.cuda || !to.cuda || !from.nccl || !to.nccl) return false;
  return !same_gpu(from, to);
}

bool nccl_enabled_by_env() {
  const char* v = std::getenv("JARVIS_NCCL");
  if (v == nullptr) return true;
  std::string s(v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return !(s == "0" || s == "off" || s == "false" || s == "no");
}

void append_stage_device(std::vector<uint8_t>& out, const StageDevice& d) {
  const std::string host = d.host.substr(0, kMaxHostBytes);
  out.push_back(static_cast<uint8_t>((d.cuda ? 1 : 0) | (d.nccl ? 2 : 0)));
  out.insert(out.end(), 3, 0);
  put_u32(out, static_cast<uint32_t>(d.ordinal));
  out.insert(out.end(), d.uuid.begin(), d.uuid.end());
  put_u32(out, static_cast<uint32_t>(host.size()));
  out.insert(out.end(), host.begin(), host.end());
}

std::vector<uint8_t> encode_stage_device(const StageDevice& d) {
  std::vector<uint8_t> out;
  append_stage_device(out, d);
  return out;
}

StageDevice read_stage_device(const uint8_t* data, size_t size, size_t* pos) {
  if (*pos > size || size - *pos < kFixedBytes) bad("truncated");
  const uint8_t* p = data + *pos;
  StageDevice d;
  if (p[0] > 3) bad("unknown flags " + std::to_string(p[0]));
  if (p[1] != 0 || p[2] != 0 || p[3] != 0) bad("non-zero padding");
  d.cuda = (p[0] & 1) != 0;
  d.nccl = (p[0] & 2) != 0;
  if (d.nccl && !d.cuda) bad("NCCL without a CUDA device");
  const auto ordinal = static_cast<int32_t>(get_u32(p + 4));
  if (d.cuda ? ordinal < 0 : ordinal != -1) bad("ordinal " + std::to_string(ordinal));
  d.ordinal = ordinal;
  std::memcpy(d.uuid.data(), p + 8, 16);
  const uint32_t n = get_u32(p + 24);
  if (n > kMaxHostBytes) bad("host name of " + std::to_string(n) + " bytes");
  if (size - *pos - kFixedBytes < n) bad("truncated host name");
  d.host.assign(reinterpret_cast<const char*>(p + kFixedBytes), n);
  *pos += kFixedBytes + n;
  return d;
}

StageDevice decode_stage_device(const uint8_t* data, size_t size) {
  size_t pos = 0;
  StageDevice d = read_stage_device(data, size, &pos);
  if (pos != size) bad(std::to_string(size - pos) + " trailing bytes");
  return d;
}

}  // namespace jarvis
