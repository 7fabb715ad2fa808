// The GPU shard factory of a build without the CUDA backend (csrc/CMakeLists.txt picks this file
// instead of the rest of csrc/cuda/ when JARVIS_CUDA is OFF or nvcc was not found).
#include "csrc/model/device.h"
#include "csrc/util/error.h"

namespace jarvis {

bool cuda_backend_built() { return false; }

std::unique_ptr<ShardForward> make_cuda_shard(const Model&, const CudaShardOptions& options) {
  throw Error("device cuda:" + std::to_string(options.device) +
              ": this binary was built without the CUDA backend (configure with -DJARVIS_CUDA=ON on a machine "
              "with the CUDA toolkit)");
}

}  // namespace jarvis
