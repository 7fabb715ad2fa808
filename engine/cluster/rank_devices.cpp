#include "engine/cluster/rank_devices.h"

#include <set>

#include "csrc/util/error.h"

namespace jarvis {

std::vector<DeviceSpec> parse_rank_devices(const std::string& text, int n_ranks) {
  if (n_ranks < 1) throw InvalidArgument("--device: the ring needs at least one rank");
  std::vector<DeviceSpec> out;
  size_t at = 0;
  for (;;) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    try {
      out.push_back(parse_device(item));
    } catch (const InvalidArgument& e) {
      throw InvalidArgument("--device '" + text + "': item " + std::to_string(out.size()) + ": " + e.what());
    }
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (out.size() == 1) {
    out.resize(static_cast<size_t>(n_ranks));  // the workers: DeviceSpec{} is the CPU
    return out;
  }
  if (static_cast<int>(out.size()) != n_ranks) {
    throw InvalidArgument("--device '" + text + "' lists " + std::to_string(out.size()) + " devices for " +
                          std::to_string(n_ranks) + " ranks: give one device (rank 0's) or one per rank");
  }
  return out;
}

std::string rank_devices_str(const std::vector<DeviceSpec>& devices) {
  std::string s;
  for (const DeviceSpec& d : devices) s += (s.empty() ? "" : ",") + d.str();
  return s;
}

void check_rank_devices(const std::vector<DeviceSpec>& devices) {
  for (size_t r = 0; r < devices.size(); ++r) {
    if (!devices[r].is_cuda()) continue;
    try {
      check_cuda_device(devices[r].index);
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(r) + ": " + e.what());
    }
  }
}

bool kv_blocks_from_rank0_gpu(const std::vector<DeviceSpec>& devices) {
  std::set<int> gpus;
  for (const DeviceSpec& d : devices) {
    if (!d.is_cuda() || !gpus.insert(d.index).second) return false;
  }
  return !devices.empty();
}

}  // namespace jarvis
