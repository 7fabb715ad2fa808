// The GPU shard factory of a build without the CUDA backend (csrc/CMakeLists.txt picks this file
// instead of the rest of csrc/cuda/ when JARVIS_CUDA is OFF or nvcc was not found).
#include "csrc/model/device.h"
#include "csrc/util/error.h"

namespace jarvis {

bool cuda_backend_built() { return false; }

void check_cuda_device(int index) {
  throw Error("device cuda:" + std::to_string(index) +
              ": this binary was built without the CUDA backend (configure with -DJARVIS_CUDA=ON on a machine "
              "with the CUDA toolkit)");
}

std::unique_ptr<ShardForward> make_cuda_shard(const Model&, const CudaShardOptions& options) {
  check_cuda_device(options.device);
  return nullptr;  // not reached
}

}  // namespace jarvis
