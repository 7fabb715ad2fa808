// Which device each rank of a ring runs its shard on, and the checks made before any weight loads.
// Local rings: `jarvis-serve --ranks N --device D` gives rank 0's device (the workers stay on the
// CPU), `--device D0,D1,...` one per rank (rank 0 first). Cluster files: every node's "device"
// (RankSetup::device), which a rank's own --device overrides.
#pragma once

#include <string>
#include <vector>

#include "csrc/model/device.h"

namespace jarvis {

// One device (rank 0's; the other ranks on "cpu") or a comma list of exactly n_ranks devices.
// InvalidArgument naming the bad item, or the list's length against n_ranks.
std::vector<DeviceSpec> parse_rank_devices(const std::string& text, int n_ranks);

// "cuda:0,cpu,cpu"
std::string rank_devices_str(const std::vector<DeviceSpec>& devices);

// check_cuda_device for every CUDA rank (cheap: no model is touched); the first unusable one is
// rethrown as an Error starting "rank R: device cuda:N: ..." so the user sees which rank it is.
void check_rank_devices(const std::vector<DeviceSpec>& devices);

// Whether rank 0's KV block count may come from its own GPU budget (as one-rank serving does):
// only when every rank is on a GPU of its own. A CPU rank, or a GPU shared by two ranks, would have
// to hold as many blocks as rank 0's budget allows, so there the block count is the host budget's
// (EngineConfig kv_cache_*), which every GPU rank then reserves exactly.
bool kv_blocks_from_rank0_gpu(const std::vector<DeviceSpec>& devices);

}  // namespace jarvis
